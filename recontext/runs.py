"""Runs: every generation saved with what made it, so it can be looked at and rated later.

A run is a folder `runs/<run_id>/` under the data folder (`RECONTEXT_DATA_DIR`, default
`./data`) holding `run.json` (task, preset, prompts, params, seed, one entry per output
with its method, metrics and seconds, timings, created time, app version), `source.png`
and `output-<i>.png`. A run is written to a temporary folder and renamed into place, so a
reader never sees half of one. Runs with two or more outputs are review items.
Imports neither torch nor gradio.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from PIL import Image

from .errors import StorageError

RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}")
MAX_OUTPUTS = 12  # most outputs a run may have (a 12-scale sweep); the review page shows this many

def data_dir() -> str:
    return os.environ.get("RECONTEXT_DATA_DIR") or os.path.join(os.getcwd(), "data")


@dataclass
class Output:
    method: str
    image: Image.Image
    metrics: dict = field(default_factory=dict)
    seconds: float | None = None


def plain(value):
    """JSON-safe: NaN (no value) becomes None, infinities the strings "inf" / "-inf",
    tuples lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class RunStore:
    """`RunStore(root)`: the runs folder. `lock` is held while a run is moved into place
    (a Hub CommitScheduler's lock on Spaces, so a push never sees half a run)."""

    def __init__(self, root: str | None = None, lock=None):
        self.root = os.fspath(root or os.path.join(data_dir(), "runs"))
        self.lock = lock or contextlib.nullcontext()
        self._cache: dict[str, dict] = {}

    def save(self, task: str, preset: str, outputs: list[Output], source: Image.Image | None = None,
             prompts: dict | None = None, params: dict | None = None, seed: int | None = None,
             timings: dict | None = None, gold: dict | None = None, job=None) -> str:
        """Save one run; `gold` ({"top": method, "bottom": method}) marks a gold item, whose
        right answer is known (see `review.gold`). `job` (a `jobs` dataclass): written as
        `job.json` beside its inputs' bytes (`input-<field>.<ext>`), so `python -m recontext
        run <run>/job.json` replays it. The review serves neither (only run.json's outputs)."""
        from . import __version__

        if not outputs:
            raise ValueError("a run needs at least one output")
        if len(outputs) > MAX_OUTPUTS:
            raise ValueError(f"a run holds at most {MAX_OUTPUTS} outputs, got {len(outputs)}")
        created = datetime.now(timezone.utc)
        run_id = f"{created:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
        record = {
            "run_id": run_id, "task": task, "preset": preset,
            "created": created.isoformat(timespec="seconds"), "app_version": __version__,
            "prompts": prompts or {}, "params": params or {}, "seed": seed,
            "source": "source.png" if source is not None else None,
            "outputs": [{"method": o.method, "image": f"output-{i}.png", "metrics": o.metrics,
                         "seconds": o.seconds} for i, o in enumerate(outputs)],
            "timings": timings or {"total_seconds": sum(o.seconds or 0 for o in outputs)},
        }
        if gold:
            record["gold"] = dict(gold)
        methods = [o.method for o in outputs]
        if len(set(methods)) != len(methods):
            raise ValueError(f"each output of a run needs its own method name, got {methods}")
        tmp = None
        try:
            os.makedirs(self.root, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=".tmp-", dir=self.root)
            if source is not None:
                source.save(os.path.join(tmp, "source.png"))
            if job is not None:
                write_job(job, tmp, preset)
            for i, o in enumerate(outputs):
                o.image.save(os.path.join(tmp, f"output-{i}.png"))
            with open(os.path.join(tmp, "run.json"), "w") as f:
                json.dump(plain(record), f, indent=1)
            with self.lock:
                os.rename(tmp, os.path.join(self.root, run_id))
        except BaseException as e:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError):
                raise StorageError(f"the run could not be saved ({e.strerror or e})") from e
            raise
        return run_id

    def get(self, run_id: str) -> dict:
        """A run's record, with `dir` added (where its PNGs are)."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            shown = repr(run_id) if not isinstance(run_id, str) or len(run_id) <= 40 else repr(run_id[:40] + "…")
            raise ValueError(f"item_id {shown} is not a run (run ids are letters, digits, - and _)")
        path = os.path.join(self.root, run_id, "run.json")
        if run_id in self._cache and not os.path.exists(path):
            del self._cache[run_id]  # deleted since it was read: no longer an item
        if run_id not in self._cache:
            try:
                with open(path) as f:
                    record = json.load(f)
            except FileNotFoundError:
                raise ValueError(f"item_id {run_id!r} is not a run") from None
            except (OSError, ValueError) as e:
                raise StorageError(f"run {run_id!r} cannot be read ({e})") from e
            record["dir"] = os.path.dirname(path)
            self._cache[run_id] = record
        return self._cache[run_id]

    def ids(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(d for d in os.listdir(self.root)
                      if RUN_ID.fullmatch(d) and os.path.exists(os.path.join(self.root, d, "run.json")))

    def items(self) -> list[dict]:
        """Review items: runs with two or more outputs, oldest first (a run whose record
        cannot be read is left out)."""
        records = []
        for run_id in self.ids():
            try:
                records.append(self.get(run_id))
            except StorageError:
                continue
        return [r for r in records if len(r["outputs"]) >= 2]

    def known(self, item_id: str, method: str) -> bool:
        """Whether `item_id` is a review item with an output by `method` (for RatingStore)."""
        try:
            record = self.get(item_id)
        except (ValueError, StorageError):
            return False
        return len(record["outputs"]) >= 2 and any(o["method"] == method for o in record["outputs"])


def write_job(job, folder: str, preset: str | None = None) -> str:
    """`job` as `folder/job.json`, each input's bytes copied beside it (read from its path,
    or the in-memory image as PNG) and named relative to it, with its sha256."""
    data = job.to_dict()
    if preset:
        data["preset"] = preset
    for name, ref in job.inputs().items():
        if ref.image is not None:
            raw, ext = ref.png_bytes(), ".png"
        elif ref.path:
            with open(ref.path, "rb") as f:
                raw = f.read()
            ext = os.path.splitext(ref.path)[1].lower()
            ext = ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ""
        else:
            continue
        filename = f"input-{name}{ext}"
        with open(os.path.join(folder, filename), "wb") as f:
            f.write(raw)
        data[name] = {"path": filename, "sha256": ref.digest()}
    path = os.path.join(folder, "job.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    return path


def output_images(results) -> list:
    """The images a run saves for `Studio.run`'s results, in order: each reconstruction's and
    edit's output at working size, each dressed image, each generated image."""
    out = []
    for r in results:
        out.append(r if isinstance(r, Image.Image) else getattr(r, "output", None) or r.image)
    return out


# -- what each task saves ------------------------------------------------------------------
def method_name(method: str, tight: bool, scale: float | None = None,
                edit_method: str | None = None, digits: int = 6) -> str:
    """`ddim+tight@0.4` (the scale to `digits` significant digits); an edit by another
    method than the baseline is prefixed with it: `prompt-to-prompt:ddim+tight`."""
    name = method + ("+tight" if tight else "") + (f"@{scale:.{digits}g}" if scale is not None else "")
    if edit_method:
        from .editing import names  # the baseline (the first editing method) goes unnamed

        if edit_method != names()[0]:
            return f"{edit_method}:{name}"
    return name


def save_reconstructions(runs: RunStore, preset: str, results, prompt: str, steps: int,
                         seed: int, image_scale: float, job=None) -> str:
    """One inversion-tab run: every method × variant reconstruction of one photo."""
    return runs.save(
        "inversion", preset, [Output(method_name(r.method, r.tight), r.output, r.metrics, r.seconds)
                              for r in results],
        source=results[0].source, prompts={"caption": prompt},
        params={"steps": steps, "image_scale": image_scale}, seed=seed, job=job)


def save_edits(runs: RunStore, preset: str, edits, source_prompt: str, target_prompt: str,
               method: str, tight: bool, guidance: float, steps: int, seed: int,
               sweep: bool, settings: dict | None = None, job=None) -> str:
    """One editing-tab run: an edit, a sweep's edits (one output per image scale), or a
    comparison (one output per editing method × inversion variant, each named by both)."""
    names = _distinct([[method_name(e.method, e.tight, e.scale if sweep else None,
                                     e.edit_method, digits) for e in edits] for digits in (6, 9, 12, 17)])
    outputs = [Output(name, e.output, e.metrics, e.seconds) for name, e in zip(names, edits)]
    return runs.save("edit", preset, outputs, source=edits[0].source,
                     prompts={"source": source_prompt, "target": target_prompt},
                     params={"method": method, "tight": tight, "guidance": guidance, "steps": steps,
                             "image_scales": [e.scale for e in edits], "sweep": sweep,
                             "edit_methods": sorted({e.edit_method for e in edits}),
                             **(settings or {})}, seed=seed, job=job)


def _distinct(candidates: list[list[str]]) -> list[str]:
    """The first list of names with no two alike: scales that differ only far after the
    decimal point (0.4, 0.40000001) are named with as many digits as tell them apart."""
    for names in candidates:
        if len(set(names)) == len(names):
            return names
    last = candidates[-1]
    return [f"{n}#{i}" if last.count(n) > 1 else n for i, n in enumerate(last)]


def save_dressed(runs: RunStore, preset: str, results: dict, prompt: str, params: dict,
                 seed: int, job=None) -> str:
    """One garment-tab run: the garment and one output per method ({method: Dressed})."""
    first = next(iter(results.values()))
    return runs.save(
        "dress", preset, [Output(m, g.image, {}, g.adapt_seconds + g.generate_seconds)
                          for m, g in results.items()],
        source=first.garment.convert("RGB"), prompts={"prompt": prompt}, params=params, seed=seed,
        timings={m: {"adapt_seconds": g.adapt_seconds, "generate_seconds": g.generate_seconds}
                 for m, g in results.items()}, job=job)
