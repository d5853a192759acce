"""Held-out garments dressed by each method: how close the garment region of the
figure comes to the garment's colour (the prompt names the garment's kind, not its look).

    python bench/garment_fidelity.py [--garments 8] [--first 10000]

Prints `garment colour error: hyperlora X ip-adapter Y magicclothing W prompt-only Z` last (mean RGB
distance on a 0-1 scale; lower is better).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recontext import Studio  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402
from recontext.tiny import claims  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--garments", type=int, default=8)
    ap.add_argument("--first", type=int, default=claims.GARMENT_SEED,
                    help="the first garment seed (held out of training from 10 000 on)")
    args = ap.parse_args()
    if args.first < claims.GARMENT_SEED:
        ap.error(f"--first must be {claims.GARMENT_SEED} or more: lower seeds are training garments")
    quiet_libraries()
    studio = Studio("tiny")
    err = claims.garment_colour_error(studio, ("hyperlora", "ip-adapter", "magicclothing", "prompt-only",
                                              claims.MISMATCHED),
                                      n=args.garments, first=args.first)
    print(f"hyperlora given the next garment's photo instead: {err[claims.MISMATCHED]:.4f}")
    print(f"garment colour error: hyperlora {err['hyperlora']:.4f} ip-adapter {err['ip-adapter']:.4f} "
          f"magicclothing {err['magicclothing']:.4f} prompt-only {err['prompt-only']:.4f}")


if __name__ == "__main__":
    main()
