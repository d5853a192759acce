"""Prompt only: the prompt alone, no garment information (the floor of every comparison)."""

from ...methods import Spec
from ..adapted import Adapted

SPEC = Spec("prompt-only", family="epsilon", label="prompt only (no garment)", order=90, cost=2,
            needs=("unet",), help="the prompt alone: the floor every garment method must beat")


def adapt(bench, garment, prompt, settings, seed, tick=None) -> Adapted:
    return Adapted(prompt)  # nothing to adapt: cached is n/a
