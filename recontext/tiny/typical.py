"""How typical each tab's examples are: every tab's claim measured on the tiny preset by the
claims code (`claims.py`) on held-out inputs, and the tab's own examples measured the same
way, so that the first example is chosen by a rule (the one nearest the held-out median of
the claim's measure) and the page can say, beside the examples, how often the claim holds.

    python -m recontext.tiny.typical --write      # or: python bench/tiny_world.py --write-card

writes `typical.json` beside this file (seeded: the same numbers on every run, up to float
sums). The tabs call `note(tab, preset_name)` and `order(tab, examples)`; neither loads a
model. Tabs: "inversion", "edit", "garment".

Per claim, each held-out case gets one value oriented so that a positive value is the claim's
side (e.g. tight PSNR minus plain PSNR). A claim *holds* on the preset when it wins on a
strict majority of the cases (value > 0) and its mean value is at least `min_effect` (an
effect too small to see is not the claim)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import numpy as np

from .. import examples as ex

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typical.json")
PRESET = "tiny"
COMMAND = "python -m recontext.tiny.typical --write"
TABS = ("inversion", "edit", "garment")

# how much is measured (the whole computation: about 3 minutes on 2 CPU cores)
INVERSION_SCENES = 8     # held-out scenes, beside the 4 held-out photos (world.HELD_OUT_PHOTOS)
EDIT_SCENES = 8          # held-out colour swaps (claims.colour_edit)
GARMENTS = 16            # held-out garments (claims.garment_colour_errors)
IMAGE_SCALE = 0.4        # the inversion and editing tabs' default image scale
INVERSION_METHOD = "ddim"  # the tabs' default inversion method
EDIT_METHOD = "regenerate"  # the editing tab's default editing method

RULE = ("The first example is the one whose {measure} is closest to the median over the held-out "
        "cases ({median}); the others follow by their distance from that median (ties: the listed order).")


# -- measuring ---------------------------------------------------------------------------------
def _claim(cid: str, claim: str, measure: str, unit: str, digits: int, min_effect: float,
           tolerance: float, cases: list[dict], sentence: str) -> dict:
    """A claim's figures from its cases (each with its oriented `value`); `sentence` is
    formatted with k, n, mean."""
    values = [c["value"] for c in cases]
    k, n, mean = sum(v > 0 for v in values), len(values), float(np.mean(values))
    return {"id": cid, "claim": claim, "measure": measure, "unit": unit, "digits": digits,
            "min_effect": min_effect, "tolerance": tolerance, "k": k, "n": n, "mean": _r(mean),
            "median": _r(float(np.median(values))), "holds": holds_rule(k, n, mean, min_effect),
            "text": sentence.format(k=k, n=n, mean=_fmt(mean, digits, unit)), "cases": cases}


def holds_rule(k: int, n: int, mean: float, min_effect: float) -> bool:
    """Wins on a strict majority of the cases, and the mean effect is at least `min_effect`
    (and above zero)."""
    return bool(2 * k > n and mean > 0 and mean >= min_effect)


def _r(x: float) -> float:
    return round(float(x), 5)


def _fmt(x: float, digits: int, unit: str) -> str:
    return f"{x:+.{digits}f}{' ' + unit if unit else ''}"


def _order(listed: list[list], values: list, median: float) -> list[dict]:
    """The examples with their values, nearest the median first; unmeasured (None) last, as listed."""
    rows = [{"example": [ex.relative(e[0]), *e[1:]], "value": None if v is None else _r(v),
             "distance": None if v is None else _r(abs(v - median))} for e, v in zip(listed, values)]
    measured = sorted((r for r in rows if r["value"] is not None), key=lambda r: r["distance"])  # stable
    return measured + [r for r in rows if r["value"] is None]


def _tab(claims_: list[dict], listed: list[list], values: list, note: str = "") -> dict:
    lead = claims_[0]  # the claim the examples are ordered by
    median = lead["median"]
    rule = RULE.format(measure=lead["measure"], median=_fmt(median, lead["digits"], lead["unit"]))
    return {"holds": all(c["holds"] for c in claims_),
            "text": " ".join(c["text"] + "." for c in claims_),
            "rule": rule + (" " + note if note else ""), "order_by": lead["id"], "median": median,
            "claims": claims_, "examples": _order(listed, values, median)}


def inversion(studio) -> dict:
    from . import claims, world
    from .world import HELD_OUT_SEED

    scenes = [(img, cap, f"held-out scene {HELD_OUT_SEED}+{i}: {cap}")
              for i, (img, cap, _) in enumerate(claims.held_out_scenes(INVERSION_SCENES))]
    photos = [(world.load_photo(p), "", f"held-out photo {os.path.basename(p)} (no caption)")
              for p in world.photo_paths(held_out=True)]
    inputs = scenes + photos
    psnr = claims.tight_psnr(studio, INVERSION_METHOD, [(i, c) for i, c, _ in inputs], scale=IMAGE_SCALE)
    cases = [{"case": label, "plain": _r(p), "tight": _r(t), "value": _r(t - p)}
             for (_, _, label), p, t in zip(inputs, psnr["plain"], psnr["tight"])]
    claim = _claim(
        "tight-vs-plain", f"Tight Inversion (DDIM, image scale {IMAGE_SCALE}) reconstructs the photo better "
        "than plain DDIM", "PSNR gain of tight over plain", "dB", 2, 0.5, 0.05, cases,
        f"Tight DDIM beats plain DDIM on {{k}} of {{n}} held-out inputs ({len(scenes)} scenes, "
        f"{len(photos)} photos; {studio.preset.steps} steps, image scale {IMAGE_SCALE}), mean gain {{mean}}")
    listed = ex.inversion()
    got = claims.tight_psnr(studio, INVERSION_METHOD, [(world.load_photo(p), c) for p, c in listed],
                            scale=IMAGE_SCALE)
    return _tab([claim], listed, [t - p for p, t in zip(got["plain"], got["tight"])])


def scene_mask(path: str, caption: str):
    """The shape mask of an example scene (`assets/scenes`, drawn by `world.write_examples`),
    None when the caption is not of the world's grammar or the file is not that drawing."""
    from . import world

    words = caption.split()
    if len(words) != 7 or words[1] not in world.COLOURS or words[2] not in world.SHAPES:
        return None
    img, mask = world.draw(words[1], words[2], words[5], size=0.5)
    same = np.array_equal(np.asarray(img), np.asarray(world.load_photo(path)))
    return mask if same else None


def edit(studio) -> dict:
    from . import claims, world

    n, kw = EDIT_SCENES, dict(method=INVERSION_METHOD)
    tight = claims.colour_edit(studio, n, tight=True, edit_method=EDIT_METHOD, **kw)
    plain = claims.colour_edit(studio, n, tight=False, edit_method=EDIT_METHOD, **kw)
    p2p = claims.colour_edit(studio, n, tight=True, edit_method="prompt-to-prompt", **kw)
    label = [f"{e['caption']} -> {e['target'].split()[1]}" for e in tight]
    swaps = f"held-out colour swaps ({studio.preset.steps} steps, DDIM"
    keep = _claim(
        "tight-keeps-background", f"With {EDIT_METHOD}, Tight Inversion keeps more of the photo than plain",
        "background SSIM of tight minus plain", "", 3, 0.01, 0.01,
        [{"case": c, "tight": _r(a["background_ssim"]), "plain": _r(b["background_ssim"]),
          "value": _r(a["background_ssim"] - b["background_ssim"])} for c, a, b in zip(label, tight, plain)],
        f"With {EDIT_METHOD}, tight keeps the background better than plain on {{k}} of {{n}} {swaps}, "
        f"image scale {IMAGE_SCALE}), mean background SSIM difference {{mean}}")
    p2p_keep = _claim(
        "p2p-keeps-background", "prompt-to-prompt keeps what the prompt does not mention (the background) "
        "better than regenerate", "background SSIM of prompt-to-prompt minus regenerate", "", 3, 0.01, 0.01,
        [{"case": c, "prompt-to-prompt": _r(a["background_ssim"]), "regenerate": _r(b["background_ssim"]),
          "value": _r(a["background_ssim"] - b["background_ssim"])} for c, a, b in zip(label, p2p, tight)],
        f"Prompt-to-prompt keeps the background better than regenerate on {{k}} of {{n}} {swaps} + tight), "
        "mean background SSIM difference {mean}")
    p2p_land = _claim(
        "p2p-lands-colour", "prompt-to-prompt lands the colour edit closer to the target than regenerate",
        "shape colour distance to the target, regenerate's minus prompt-to-prompt's", "", 3, 0.0, 0.01,
        [{"case": c, "prompt-to-prompt": _r(a["shape_distance_after"]), "regenerate": _r(b["shape_distance_after"]),
          "value": _r(b["shape_distance_after"] - a["shape_distance_after"])} for c, a, b in zip(label, p2p, tight)],
        f"Prompt-to-prompt's shape colour is closer to the target than regenerate's on {{k}} of {{n}} {swaps} "
        "+ tight), mean distance difference {mean} (RGB, 0-1)")
    listed, values = ex.edits(), []
    for path, source, target in listed:
        mask = scene_mask(path, source)
        if mask is None:
            values.append(None)
            continue
        img = world.load_photo(path)
        a, b = (claims.edit_case(studio, img, source, target, mask, method=INVERSION_METHOD, tight=t,
                                 edit_method=EDIT_METHOD, image_scale=IMAGE_SCALE) for t in (True, False))
        values.append(a["background_ssim"] - b["background_ssim"])
    return _tab([keep, p2p_keep, p2p_land], listed, values,
                "Photo examples have no shape mask, so the measure is not defined for them: they follow "
                "the scenes, as listed.")


def garment(studio) -> dict:
    from PIL import Image

    from ..garment import synthetic
    from . import claims

    methods = ("hyperlora", "ip-adapter", "magicclothing", "prompt-only")
    errors = claims.garment_colour_errors(studio, methods, n=GARMENTS)
    label = [f"garment {claims.GARMENT_SEED + i}: {synthetic.garment_caption(claims.GARMENT_SEED + i)}"
             for i in range(GARMENTS)]
    out = []
    # the paper's baselines (IP-Adapter, MagicClothing) and the floor
    for other, name in (("ip-adapter", "IP-Adapter"), ("magicclothing", "MagicClothing"),
                        ("prompt-only", "prompt-only")):
        out.append(_claim(
            f"hyperlora-vs-{other}", f"HyperLoRA carries the garment's colour better than {name}",
            f"colour error of {name} minus HyperLoRA's", "", 3, 0.02, 0.01,
            [{"case": c, "hyperlora": _r(h), other: _r(o), "value": _r(o - h)}
             for c, h, o in zip(label, errors["hyperlora"], errors[other])],
            f"HyperLoRA's colour error is lower than {name}'s on {{k}} of {{n}} held-out garments "
            f"({studio.preset.steps} steps, IP-Adapter scale {claims.SCALES['ip-adapter']}), "
            "mean difference {mean} (RGB, 0-1)"))
    listed, values = ex.garments(), []
    for path, prompt in listed:
        look = ex.GARMENT_SEEDS.get(os.path.basename(path))
        if look is None:
            values.append(None)
            continue
        img = Image.open(path).convert("RGB")
        h, o = (claims.garment_error(studio, img, prompt, look, m, seed=0) for m in ("hyperlora", "ip-adapter"))
        values.append(o - h)
    return _tab(out, listed, values, "Each example garment is measured under its example prompt at seed 0, "
                "the tab's default.")


def compute(studio=None) -> dict:
    """Every tab's figures on the tiny preset (a fresh `Studio("tiny")` when not given)."""
    if studio is None:
        from .. import Studio
        from ..logs import quiet_libraries

        quiet_libraries()
        studio = Studio(PRESET)
    if studio.preset.name != PRESET:
        raise ValueError(f"the figures are measured on the {PRESET} preset, not {studio.preset.name}")
    start = time.perf_counter()
    tabs = {"inversion": inversion(studio), "edit": edit(studio), "garment": garment(studio)}
    return {"preset": PRESET, "command": COMMAND, "steps": studio.preset.steps,
            "seconds": round(time.perf_counter() - start, 1), "tabs": tabs}


def write(path: str = PATH, studio=None) -> dict:
    data = compute(studio)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    load.cache_clear()
    return data


# -- what the tabs call (no model, no gradio) -----------------------------------------------------
@functools.lru_cache(maxsize=1)
def load(path: str = PATH) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _measured(tab: str, preset_name: str | None, data: dict | None):
    data = load() if data is None else data
    if not data or tab not in data["tabs"] or (preset_name is not None and preset_name != data["preset"]):
        return None
    return data["tabs"][tab]


def holds(tab: str, preset_name: str, data: dict | None = None) -> bool | None:
    """Whether every claim of `tab` holds on `preset_name` (None: not measured there)."""
    t = _measured(tab, preset_name, data)
    return None if t is None else t["holds"]


def note(tab: str, preset_name: str, short: bool = False, data: dict | None = None) -> str | None:
    """Markdown for beside `tab`'s examples: each claim's held-out figure, said plainly where
    the claim does not hold on the preset, and why the first example is first. `short`: one
    paragraph of the figures only, for beside a result. None for a preset not measured."""
    t = _measured(tab, preset_name, data)
    if t is None:
        return None
    preset = (data or load())["preset"]
    lines = []
    for c in t["claims"]:
        if c["holds"]:
            lines.append(f"{c['text']}: the claim holds on the {preset} preset.")
        else:
            need = (f" and a mean of at least {_fmt(c['min_effect'], c['digits'], c['unit'])}"
                    if c["min_effect"] else "")
            lines.append(f"**Does not hold on the {preset} preset**: {c['claim']}. {c['text']} "
                         f"(the claim needs a win on most cases{need}).")
    if short:
        return f"Held-out figures on the {preset} preset: " + " ".join(lines)
    first = t["examples"][0] if t["examples"] else None
    lead = next(c for c in t["claims"] if c["id"] == t["order_by"])
    text = ["**How typical are these examples?** Measured on held-out inputs (never trained on) "
            f"by `{COMMAND}`:", *(f"- {line}" for line in lines)]
    if first is not None and first["value"] is not None:
        text.append(f"\nThe first example ({first['example'][0]}) is the one whose {lead['measure']} "
                    f"({_fmt(first['value'], lead['digits'] + 1, lead['unit'])}) is closest to the held-out "
                    f"median ({_fmt(t['median'], lead['digits'] + 1, lead['unit'])}): typical, not the best.")
    return "\n".join(text)


def _key(example) -> tuple:
    return (ex.relative(example[0]) if os.path.isabs(example[0]) else example[0], *example[1:])


def order(tab: str, examples: list, preset_name: str | None = None, data: dict | None = None) -> list:
    """`examples` (the tab's lists: [asset path, texts...]) in the measured order, the one
    nearest the held-out median first; examples not measured keep their order, after. As
    given when `tab` (or `preset_name`, when given) was not measured."""
    t = _measured(tab, preset_name, data)
    if t is None:
        return list(examples)
    rank = {tuple(e["example"]): i for i, e in enumerate(t["examples"])}
    return sorted(examples, key=lambda e: rank.get(_key(e), len(rank)))  # stable: unknown as given


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help=f"measure and write {os.path.basename(PATH)}")
    args = ap.parse_args(argv)
    if not args.write:
        data = load()
        print(json.dumps({k: v["text"] for k, v in data["tabs"].items()}, indent=1) if data else "not written yet")
        return
    start = time.perf_counter()
    data = write()
    for tab, t in data["tabs"].items():
        print(f"{tab}: {t['text']} holds: {t['holds']}; first example: {t['examples'][0]['example']}")
    print(f"wrote {PATH} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
