"""Does the garment condition the output? After training HyperLoRA on synthetic pairs,
the diffusion loss on held-out pairs with each garment's own predicted LoRA against the
loss with a mismatched garment's LoRA (the next held-out garment), on the same noise and
timesteps.

    python bench/hyperlora_toy.py [--preset tiny] [--train-steps 300] [--pairs 32] [--held-out 16]

Prints `matched/mismatched loss: X` last (below 1: the garment conditions the output).
"""

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recontext import presets  # noqa: E402
from recontext.garment.hyperlora import functional_params  # noqa: E402
from recontext.garment.train import ADAPTER, Examples, diffusion_loss, synthetic_pairs, train_hyperlora  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402
from recontext.models import ModelOwner  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--held-out", type=int, default=16)
    parser.add_argument("--noise-draws", type=int, default=8)
    args = parser.parse_args()
    quiet_libraries()
    models = ModelOwner(presets.get(args.preset))
    size = models.preset.resolution
    with tempfile.TemporaryDirectory() as out:
        losses = train_hyperlora(models, synthetic_pairs(args.pairs, size), out, steps=args.train_steps)
        from recontext.garment.hyperlora import HyperLoRA

        hyper = HyperLoRA.load(out, models.pipe.unet).to(models.device)
    k = max(1, len(losses) // 10)
    print(f"training loss: first {k} steps {sum(losses[:k]) / k:.4f}, last {k} {sum(losses[-k:]) / k:.4f}")
    held = Examples(models, synthetic_pairs(args.held_out, size, offset=10_000))
    totals = {"matched": 0.0, "mismatched": 0.0}
    with models.lora(ADAPTER, [m[0] for m in hyper.config.modules], hyper.config.rank), torch.no_grad():
        for i in range(len(held)):
            _, latents, cond = held[i]
            own = functional_params(hyper(held[i][0]), ADAPTER)
            other = functional_params(hyper(held[(i + 1) % len(held)][0]), ADAPTER)
            for name, params in (("matched", own), ("mismatched", other)):
                gen = torch.Generator().manual_seed(i)  # the same noise and timesteps for both
                for _ in range(args.noise_draws):
                    totals[name] += float(diffusion_loss(models, latents, cond, gen, params))
    n = len(held) * args.noise_draws
    print(f"held-out loss: matched {totals['matched'] / n:.5f}, mismatched {totals['mismatched'] / n:.5f}")
    print(f"matched/mismatched loss: {totals['matched'] / totals['mismatched']:.4f}")


if __name__ == "__main__":
    main()
