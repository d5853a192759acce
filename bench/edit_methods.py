"""Editing methods on colour swaps in the tiny world's procedural scenes.

For each of `--edits` scenes (`a red circle on a blue background` -> `a green circle ...`),
every editing method, tight and plain (prompt-to-prompt and regenerate on `--method`,
LEDITS++ on edit-friendly DDPM, as their papers pair them), at the authors' settings:
background SSIM over the background mask (kept ↑), distance of the shape's mean colour to
the target colour (↓, the unedited scene's for reference), CLIP alignment with the target
prompt (↑) and seconds per edit.

    python bench/edit_methods.py [--edits 12] [--steps 50] [--method ddim] [--preset tiny]

Prints `p2p background ssim gain over regenerate: X` last (tight, mean over the edits).
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recontext import Studio  # noqa: E402
from recontext.editing import EDIT_METHODS  # noqa: E402
from recontext.tiny import swaps  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", type=int, default=12)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--method", default="ddim", help="inversion for regenerate and prompt-to-prompt")
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()
    if args.edits < 1:
        ap.error("--edits must be at least 1")
    quiet_libraries()
    studio = Studio(args.preset)
    items = swaps.swaps(args.edits)
    rows = {}
    before = [swaps.measure(s, s.image)["shape_colour_distance"] for s in items]
    for m in EDIT_METHODS:
        for tight in (True, False):
            scores = []
            for s in items:
                e = studio.edit(s.image, s.source, s.target, edit_method=m, tight=tight,
                                method="edit-friendly" if m == "ledits++" else args.method,
                                steps=args.steps)
                scores.append({**swaps.measure(s, e.image), "clip": e.metrics["clip_target"],
                               "seconds": e.seconds})
            rows[(m, tight)] = {k: statistics.mean(x[k] for x in scores) for k in scores[0]}
    print(f"{len(items)} colour swaps, {args.steps} steps, preset {studio.preset.name}; "
          f"shape colour distance before editing: {statistics.mean(before):.3f}")
    print(f"{'editing method':<18}{'tight':<7}{'background ssim':>16}{'colour dist':>13}"
          f"{'clip':>8}{'seconds':>9}")
    for (m, tight), r in rows.items():
        print(f"{m:<18}{'yes' if tight else 'no':<7}{r['background_ssim']:>16.4f}"
              f"{r['shape_colour_distance']:>13.4f}{r['clip']:>8.4f}{r['seconds']:>9.2f}")
    gain = rows[("prompt-to-prompt", True)]["background_ssim"] - rows[("regenerate", True)]["background_ssim"]
    print(f"p2p background ssim gain over regenerate: {gain:.4f}")


if __name__ == "__main__":
    main()
