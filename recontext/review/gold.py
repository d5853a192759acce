"""Gold items: review items whose right answer is known, to check the raters.

`make_gold(runs, run_id)` saves a new item from a run's own outputs: every output as it
was, except one, which is replaced by a degraded copy of another (the *reference*). The
gold answer is that the reference beats its degraded copy (a pairwise vote for it; a
Likert rating that scores it higher). Nothing in the item shows the source photo's
pixels as an output, and its `run.json` reads like any other run (same task, prompts,
methods, no gold mark), so a rater or a bot cannot tell a gold item from the outputs or
from the run's record.

The degradation is calibrated: Gaussian noise whose σ is searched (bisection) so that the
PSNR of the degraded copy against the reference is `GOLD_PSNR` dB (20 dB, ±0.2: clearly
visible noise at any size), then clipped to 0–255; the PSNR reached is stored with the
answer.

The answers live apart from `runs/`, in the data folder's `gold.json`
(`{item_id: {"top", "bottom", "made_from", "psnr_db"}}`): deleting runs never turns a
gold item back into an ordinary one, so its ratings never join a method's scores and the
checks already made stay. `summary.gold_checks` scores each rater's first decision per
gold item; a rater is flagged only after `summary.GOLD_MIN_CHECKS` checks.
"""

from __future__ import annotations

import json
import os
import secrets

import numpy as np
from PIL import Image

from ..locks import lock_for, replace_json
from ..runs import Output

ANSWERS = "gold.json"
GOLD_PSNR = 20.0  # dB of the degraded copy against the reference it copies
TOLERANCE = 0.2
# gold items made by version 0.x: {"top": "gold:identical", "bottom": "gold:degraded"} in run.json
TOP, BOTTOM = "gold:identical", "gold:degraded"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def degrade(image: Image.Image, seed: int | None = None, target_db: float = GOLD_PSNR) -> tuple[Image.Image, float]:
    """A copy of `image` with Gaussian noise at `target_db` PSNR against it (see the
    module's text): (degraded image, PSNR reached)."""
    x = np.asarray(image.convert("RGB"), dtype=np.float64)
    noise = np.random.default_rng(seed if seed is not None else secrets.randbits(64)).standard_normal(x.shape)
    lo, hi = 0.0, 255.0
    for _ in range(40):  # more noise, lower PSNR (clipping makes it only roughly σ-linear)
        sigma = (lo + hi) / 2
        out = np.clip(np.round(x + sigma * noise), 0, 255)
        if psnr(out, x) > target_db:
            lo = sigma
        else:
            hi = sigma
    out = np.clip(np.round(x + hi * noise), 0, 255).astype(np.uint8)
    return Image.fromarray(out), psnr(out, x)


def answers_path(runs=None, root: str | None = None) -> str:
    """`gold.json` in the data folder: beside `runs/`, never inside it."""
    root = root or os.path.dirname(os.path.abspath(runs.root))
    return os.path.join(root, ANSWERS)


def read_answers(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"the gold answers file {os.path.basename(path)} cannot be read ({e})") from e
    return {k: v for k, v in data.items() if isinstance(v, dict) and {"top", "bottom"} <= set(v)}


def answers_for(runs=None, root: str | None = None) -> dict[str, dict]:
    """{item_id: {"top": method, "bottom": method, ...}}: the data folder's gold answers,
    with gold items an earlier version marked in their run.json."""
    if runs is None and root is None:
        return {}
    out = {}
    if runs is not None:
        out = {r["run_id"]: r["gold"] for r in runs.items() if r.get("gold")}
    return {**out, **read_answers(answers_path(runs, root))}


def _write_answers(path: str, item_id: str, answer: dict) -> None:
    with lock_for(path):
        data = read_answers(path)
        data[item_id] = answer
        replace_json(path, data)


def make_gold(runs, run_id: str, seed: int | None = None) -> str:
    """A gold item made from run `run_id`'s own outputs (see the module's text); returns
    the new item's id. The reference and the output it replaces are drawn at random."""
    record = runs.get(run_id)
    outputs = record["outputs"]
    if len(outputs) < 2:
        raise ValueError(f"run {run_id!r} has {len(outputs)} output; a gold item needs a run with two or more")
    rng = np.random.default_rng(seed if seed is not None else secrets.randbits(64))
    ref, replaced = (int(i) for i in rng.choice(len(outputs), size=2, replace=False))
    images = []
    for o in outputs:
        with Image.open(os.path.join(record["dir"], o["image"])) as im:
            images.append(im.convert("RGB"))
    bad, reached = degrade(images[ref], seed=int(rng.integers(2 ** 63)))
    new = [Output(o["method"], bad if k == replaced else images[k], o.get("metrics") or {}, o.get("seconds"))
           for k, o in enumerate(outputs)]
    source = None
    if record.get("source"):
        with Image.open(os.path.join(record["dir"], record["source"])) as im:
            source = im.convert("RGB")
    gold_id = runs.save(record["task"], record.get("preset", ""), new, source=source,
                        prompts=record.get("prompts", {}), params=record.get("params", {}),
                        seed=record.get("seed"), timings=record.get("timings"))
    _write_answers(answers_path(runs), gold_id, {
        "top": outputs[ref]["method"], "bottom": outputs[replaced]["method"], "made_from": run_id,
        "psnr_db": round(reached, 3), "target_db": GOLD_PSNR})
    return gold_id
