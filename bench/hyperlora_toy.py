"""Does the garment condition the output? The diffusion loss on held-out garment pairs
with each garment's own predicted LoRA against the loss with a mismatched garment's LoRA
(the next held-out garment), on the same noise and timesteps.

    python bench/hyperlora_toy.py [--held-out 16] [--noise-draws 8] [--train-steps N --pairs P]

By default it measures the preset's checkpoint (on tiny: the committed one, trained on
pairs 0..255; held-out pairs start at 10 000). With --train-steps it first trains a fresh
checkpoint on P pairs and measures that instead.
On tiny it also measures a yardstick: the same ratios with no HyperLoRA and the prompt naming
each garment's look (colour, pattern) against the next garment's, and both loss ratios
over the garment's region of the figure only.
Prints `matched/mismatched loss: X` last (whole picture; below 1: the garment conditions
the output).
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recontext import Studio  # noqa: E402
from recontext.garment.hyperlora import HyperLoRA  # noqa: E402
from recontext.garment.train import synthetic_pairs, train_hyperlora  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402
from recontext.tiny import claims  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--train-steps", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--held-out", type=int, default=16)
    parser.add_argument("--noise-draws", type=int, default=8)
    args = parser.parse_args()
    quiet_libraries()
    studio = Studio(args.preset)
    hyper = None
    if args.train_steps:
        with tempfile.TemporaryDirectory() as out:
            losses = train_hyperlora(studio.models, synthetic_pairs(args.pairs, studio.preset.resolution),
                                     out, steps=args.train_steps)
            hyper = HyperLoRA.load(out, studio.models.pipe.unet).to(studio.models.device)
        k = max(1, len(losses) // 10)
        print(f"training loss: first {k} steps {sum(losses[:k]) / k:.4f}, last {k} {sum(losses[-k:]) / k:.4f}")
    region = claims.hyperlora_matched_ratio(studio, args.held_out, args.noise_draws, hyper=hyper, region=True)
    r = claims.hyperlora_matched_ratio(studio, args.held_out, args.noise_draws, hyper=hyper)
    if args.preset == "tiny":  # the UNet's own conditioning, the garment's look named in the prompt
        look = {w: claims.named_look_ratio(studio, args.held_out, args.noise_draws, region=w) for w in (True, False)}
        print(f"the same ratios, the prompt naming the garment's look instead of a HyperLoRA: "
              f"garment region {look[True]:.4f}, whole picture {look[False]:.4f}")
    print(f"garment region only: matched {region['matched']:.5f}, mismatched {region['mismatched']:.5f}, "
          f"ratio {region['ratio']:.4f}")
    print(f"held-out loss: matched {r['matched']:.5f}, mismatched {r['mismatched']:.5f}")
    print(f"matched/mismatched loss: {r['ratio']:.4f}")


if __name__ == "__main__":
    main()
