"""What a re-edit costs once the inversion is cached.

On the tiny preset with 50 steps: a first edit of a photo (inversion + reconstruction +
regeneration) against a second edit of the same photo with only the target prompt
changed (regeneration alone). Runs are interleaved (the cache is cleared before every
first edit); medians are compared. The ideal ratio is the UNet evaluations of the first
edit over those of the second (a guided call evaluates two latents).

    python bench/edit_cache.py [--steps 50] [--repeats 5]

Prints `re-edit speedup: X of ideal Y` last.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recontext import Studio  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    quiet_libraries()
    studio = Studio("tiny")
    photo = os.path.join(os.path.dirname(__file__), "..", "assets", "photos", "chelsea.png")
    kw = dict(method="ddim", tight=True, image_scale=0.4, guidance=7.5, steps=args.steps, seed=0)
    studio.edit(photo, "a photo of a cat", "warm up", **kw)  # builds/loads the models, CLIP

    evals = studio.models.unet_evaluations
    first_t, second_t, first_n, second_n = [], [], [], []
    for i in range(args.repeats):
        studio.inversion_cache.clear()
        n0, t0 = evals(), time.perf_counter()
        studio.edit(photo, "a photo of a cat", f"a photo of a tiger {i}", **kw)
        first_t.append(time.perf_counter() - t0)
        n1, t1 = evals(), time.perf_counter()
        studio.edit(photo, "a photo of a cat", f"a photo of a dog {i}", **kw)
        second_t.append(time.perf_counter() - t1)
        first_n.append(n1 - n0)
        second_n.append(evals() - n1)
    f, s = statistics.median(first_t), statistics.median(second_t)
    ideal = statistics.median(first_n) / statistics.median(second_n)
    print(f"steps: {args.steps}, repeats: {args.repeats}")
    print(f"first edit:  {f:.3f} s median, {statistics.median(first_n):.0f} UNet evaluations")
    print(f"second edit: {s:.3f} s median, {statistics.median(second_n):.0f} UNet evaluations")
    print(f"re-edit speedup: {f / s:.2f} of ideal {ideal:.2f}")


if __name__ == "__main__":
    main()
