"""Time to adapt to a new garment: HyperLoRA (one forward pass) against a per-garment
LoRA fine-tune at its default steps, same preset, measured side by side.

Each repeat uses garments never seen before (no cache hits), alternating the methods.
Adaptation = from the garment image to LoRA weights loaded in the UNet; generation is
timed apart and not included.

    python bench/garment_adaptation.py [--preset tiny] [--repeats 3] [--finetune-steps 200]

Prints `adaptation speedup: X` last (median fine-tune time / median HyperLoRA time).
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recontext import Studio  # noqa: E402
from recontext.garment import spec  # noqa: E402
from recontext.garment.synthetic import garment  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--finetune-steps", type=int, default=spec("finetune-lora").option("finetune_steps").default)
    parser.add_argument("--steps", type=int, default=4, help="generation steps (not timed in X)")
    args = parser.parse_args()
    quiet_libraries()
    studio = Studio(args.preset)
    studio.dress(garment(1000), "warm-up", method="hyperlora", steps=1)  # loads, builds the checkpoint
    studio.dress(garment(1001), "warm-up", method="finetune-lora", steps=1, finetune_steps=2)
    times = {"hyperlora": [], "finetune-lora": []}
    for r in range(args.repeats):
        for i, method in enumerate(times):
            g = studio.dress(garment(2000 + 2 * r + i), "a person on a beach", method=method,
                             steps=args.steps, finetune_steps=args.finetune_steps)
            assert not g.cached
            times[method].append(g.adapt_seconds)
            print(f"repeat {r}: {method:14s} adapt {g.adapt_seconds:8.4f} s  "
                  f"generate {g.generate_seconds:.3f} s", flush=True)
    hyper, fine = statistics.median(times["hyperlora"]), statistics.median(times["finetune-lora"])
    print(f"preset {studio.preset.name}, device {studio.models.device}, fine-tune steps "
          f"{args.finetune_steps}: median adapt hyperlora {hyper:.4f} s, finetune-lora {fine:.3f} s")
    print(f"adaptation speedup: {fine / hyper:.1f}")


if __name__ == "__main__":
    main()
