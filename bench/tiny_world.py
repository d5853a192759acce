"""The tiny world's claims in numbers, on the committed weights and held-out inputs.

    python bench/tiny_world.py [--scenes 6] [--prompt-seeds 2] [--guidance 3 5]
    python bench/tiny_world.py --write-card    # only: recontext/tiny/typical.json

--write-card measures each tab's claim on held-out inputs and the tab's examples, and writes
the figures the tabs show beside their examples (recontext/tiny/typical.py; about 2 minutes).

One line each: VAE round-trip PSNR (the example photos, photos never trained on), CLIP
top-1 on held-out scenes, Tight Inversion's gain (dB, DDIM, ReNoise and edit-friendly at
the preset's default steps, beside the most a perfect inversion could gain: the VAE round
trip's PSNR minus plain's), plain DDIM at 20 and 50 steps on 24 more held-out scenes (mean
PSNR and how many reconstructions turn chaotic), the UNet's x0 prediction error with and
without the image through the adapter, the prompt-following rate (at the default guidance,
and at each --guidance), the image-scale sweep's correlations, and last the wall time of
the inversion tab's example (all six method x variant runs at the default steps).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recontext import Studio  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402
from recontext.tiny import claims, typical, world  # noqa: E402
from recontext.examples import inversion as inversion_examples  # noqa: E402
from recontext.inversion import METHODS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--prompt-seeds", type=int, default=2)
    ap.add_argument("--guidance", type=float, nargs="*", default=[],
                    help="also measure prompt following at these guidance scales")
    ap.add_argument("--write-card", action="store_true",
                    help="only measure the tabs' claims and examples and write recontext/tiny/typical.json")
    args = ap.parse_args()
    if args.write_card:
        return typical.main(["--write"])
    quiet_libraries()
    studio = Studio("tiny")
    ex = claims.vae_psnr(studio, world.example_photos())
    held = claims.vae_psnr(studio, world.photo_paths(held_out=True))
    print(f"vae psnr: examples {np.mean(ex):.2f} dB ({', '.join(f'{p:.1f}' for p in ex)}), "
          f"held-out {np.mean(held):.2f} dB ({', '.join(f'{p:.1f}' for p in held)})")
    print(f"clip top-1 (held-out scenes): {claims.clip_top1(studio):.3f}")
    inputs = claims.inversion_inputs(args.scenes)
    for method in ("ddim", "renoise", "edit-friendly"):
        g = claims.tight_gain(studio, method, inputs)
        print(f"tight gain {method}: {g['gain']:+.2f} dB (plain {g['plain']:.2f}, tight {g['tight']:.2f}; "
              f"a perfect inversion would gain {g['ceiling']:+.2f}; {len(inputs)} inputs, {studio.preset.steps} steps)")
    scenes = claims.held_out_scenes(24, offset=6000)
    for steps in sorted({20, 50, studio.preset.steps}):  # why the preset inverts in 20 steps
        runs = [studio.reconstruct(img, cap, method="ddim", steps=steps).metrics for img, cap, _ in scenes]
        print(f"ddim at {steps} steps ({len(scenes)} held-out scenes, plain): psnr "
              f"{np.mean([r['psnr'] for r in runs]):.2f} dB, {sum(r['inversion_psnr'] < 30 for r in runs)} "
              f"chaotic (inversion psnr under 30 dB)")
    for t in (950, 800):
        print(f"x0 prediction error at t={t} (what the adapter tells the UNet, scale 1): "
              f"{claims.x0_error_text(claims.adapter_x0_error(studio, inputs, level=t))}")
    for guidance in [studio.preset.guidance] + [g for g in args.guidance if g != studio.preset.guidance]:
        rate, _ = claims.prompt_following(studio, seeds=tuple(range(args.prompt_seeds)), guidance=guidance)
        print(f"prompt following at guidance {guidance:g}{' (the default)' if guidance == studio.preset.guidance else ''}: "
              f"{rate:.3f} ({len(claims.COMBOS)} combinations x {args.prompt_seeds} seeds)")
    rho = claims.sweep_correlations(studio)
    print(f"image-scale sweep (Spearman with the scale): edit alignment {rho['alignment']:+.2f}, "
          f"preservation {rho['preservation']:+.2f}")
    photo, prompt = typical.order("inversion", inversion_examples())[0]  # the tab's first
    start = time.perf_counter()
    for method in METHODS:  # the tab's six sliders: each method plain and tight
        for tight in (False, True):
            studio.reconstruct(photo, prompt, method=method, tight=tight)
    print(f"inversion tab example (6 runs, {studio.preset.steps} steps): {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
