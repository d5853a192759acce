"""How far each editing method moves a held-out shape's colour, and what it changes elsewhere.

On `--swaps` held-out colour swaps of the tiny world (`recontext.tiny.swaps`: scene seeds never
trained on, the shape's colour word swapped), every editing method, plain and tight, at its
defaults and, for LEDITS++, under the reference's conventions (diffusers edits against the null
prompt; the source guidance of the inversion 3.5 or 1):

- strength: how much closer the shape's mean colour gets to the target colour (distance before
  minus after, colours in [0, 1], `metrics.colour_distance`) ↑
- outside: mean absolute pixel change outside the shape ↓

median and mean over the swaps, each with a 95% bootstrap interval.

    python bench/editing_strength.py [--swaps 16] [--steps 20] [--write-docs]
    python bench/editing_strength.py --rf-timestep   # RF-Inversion's inversion timestep, both ways

`--rf-timestep` instead reconstructs 4 held-out scenes and 4 held-out photos with RF-Inversion on
tiny-flux, telling the transformer the shifted level or the community pipeline's i/(N+1), and
prints the PSNR of each.

`--write-docs` puts the table in docs/methods.md between its `editing-strength` markers.
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recontext import Studio, metrics  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402
from recontext.tiny import swaps  # noqa: E402

# (label, editing method, tight or both, studio.edit keywords); LEDITS++ runs on edit-friendly DDPM
# as paired, its settings given explicitly (the rows do not depend on the defaults); diffusers'
# conventions run tight only (the page's default), to keep the bench short.
RUNS = [
    ("regenerate", "regenerate", (False, True), {}),
    ("prompt-to-prompt", "prompt-to-prompt", (False, True), {}),
    ("LEDITS++ default: source base, source guidance 1, edit guidance 10", "ledits++", (False, True),
     {"base": "source", "source_guidance": 1.0, "edit_guidance": 10.0}),
    ("LEDITS++ before #39: source base, source guidance 3.5, edit guidance 5", "ledits++", (False, True),
     {"base": "source", "source_guidance": 3.5, "edit_guidance": 5.0}),
    ("LEDITS++ as diffusers: null base, edit guidance 5, source guidance 3.5", "ledits++", (True,),
     {"base": "null", "source_guidance": 3.5, "edit_guidance": 5.0}),
    ("LEDITS++ as diffusers: null base, edit guidance 5, source guidance 1", "ledits++", (True,),
     {"base": "null", "source_guidance": 1.0, "edit_guidance": 5.0}),
]
START, END = "<!-- editing-strength: written by bench/editing_strength.py -->", "<!-- /editing-strength -->"


def interval(values, stat, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    v = np.asarray(values, float)
    draws = [stat(v[rng.integers(0, len(v), len(v))]) for _ in range(n)]
    return stat(v), np.percentile(draws, 2.5), np.percentile(draws, 97.5)


def fmt(values, stat):
    c, lo, hi = interval(values, stat)
    return f"{c:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def measure(swap, output):
    output = output.resize(swap.image.size) if output.size != swap.image.size else output
    before = metrics.colour_distance(swap.image, swap.shape, swap.target_rgb)
    after = metrics.colour_distance(output, swap.shape, swap.target_rgb)
    change = np.abs(metrics.as_float(output) - metrics.as_float(swap.image)).mean(-1)
    return before - after, float(change[~swap.shape].mean())


def rf_timestep() -> None:
    from recontext.tiny import claims, world

    studio = Studio("tiny-flux")
    cases = ([(img, cap) for img, cap, _ in claims.held_out_scenes(4, offset=7000)]
             + [(world.load_photo(p), "") for p in world.photo_paths(held_out=True)])
    psnr = {"shifted": [], "linear": []}
    for img, cap in cases:
        for way in psnr:
            psnr[way].append(studio.reconstruct(img, cap, method="rf-inversion", timestep=way).metrics["psnr"])
        print(f"{cap or 'photo':<40} shifted {psnr['shifted'][-1]:.2f} dB, linear {psnr['linear'][-1]:.2f} dB",
              flush=True)
    gain = np.subtract(psnr["linear"], psnr["shifted"])
    print(f"RF-Inversion on tiny-flux, {studio.preset.steps} steps, {len(cases)} held-out inputs: mean PSNR "
          f"shifted {np.mean(psnr['shifted']):.2f} dB, linear {np.mean(psnr['linear']):.2f} dB; linear better on "
          f"{int((gain > 0).sum())} of {len(gain)} (gain {gain.min():+.2f} to {gain.max():+.2f} dB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--swaps", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--rf-timestep", action="store_true", help="RF-Inversion's inversion timestep, both ways")
    args = ap.parse_args()
    quiet_libraries()
    if args.rf_timestep:
        return rf_timestep()
    studio = Studio("tiny")
    items = swaps.swaps(args.swaps)
    start = time.perf_counter()
    scores = {}  # (label, tight) -> [(strength, outside)]; swap by swap, so its inversions stay cached
    for n, s in enumerate(items):
        for label, method, tights, kw in RUNS:
            for tight in tights:
                e = studio.edit(s.image, s.source, s.target, edit_method=method, tight=tight, steps=args.steps, **kw)
                scores.setdefault((label, tight), []).append(measure(s, e.image))
        print(f"swap {n + 1}/{len(items)} done, {time.perf_counter() - start:.0f} s", flush=True)
        table = render(scores, n + 1, len(items), args, studio, time.perf_counter() - start)
        if args.write_docs:  # after every swap: an interrupted run leaves what it measured, saying so
            write_docs(table)
    print(table)


def render(scores, done, total, args, studio, seconds) -> str:
    lines = [f"{done} held-out colour swaps{'' if done == total else f' (of {total}: the run was cut short)'}, "
             f"tiny preset, {args.steps or studio.preset.steps} steps; strength: shape colour distance to the "
             "target before minus after (↑); outside: mean absolute pixel change outside the shape (↓); "
             "95% bootstrap intervals.", "",
             "| editing method | tight | strength median | strength mean | outside median | outside mean |",
             "|---|---|---|---|---|---|"]
    for (label, tight), rows in scores.items():
        strength, outside = [r[0] for r in rows], [r[1] for r in rows]
        lines.append(f"| {label} | {'yes' if tight else 'no'} | {fmt(strength, np.median)} | "
                     f"{fmt(strength, np.mean)} | {fmt(outside, np.median)} | {fmt(outside, np.mean)} |")
    lines += ["", f"(`python bench/editing_strength.py --swaps {total}`, {seconds:.0f} s)"]
    return "\n".join(lines)


def write_docs(table: str) -> None:
    path = os.path.join(ROOT, "docs", "methods.md")
    text = open(path, encoding="utf-8").read()
    if START not in text or END not in text:
        sys.exit(f"{path} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
