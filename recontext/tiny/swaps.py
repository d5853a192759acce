"""Colour-swap edits on the tiny world's procedural scenes, where an edit can be measured:
the caption says exactly what is drawn (`a {colour} {shape} on a {colour} background`),
and the scene helper gives the shape's mask, so the background (which an edit should
keep) and the shape (whose colour it should change) are known pixel by pixel. Scenes are
held out of the world's training (`tiny.claims.held_out_scenes`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import metrics

OFFSET = 3000  # held-out scene seeds of their own (the world's claims use 0.. and 1000..)


@dataclass
class Swap:
    image: Image.Image
    source: str              # the scene's caption
    target: str              # the same caption, the shape's colour swapped
    shape: np.ndarray        # bool H×W
    target_rgb: tuple


def swaps(n: int) -> list[Swap]:
    """`n` held-out scenes, each with its shape's colour swapped for another colour (never
    the background's)."""
    from . import claims, world

    out = []
    for image, caption, mask in claims.held_out_scenes(n, offset=OFFSET):
        target = claims.recolour(caption, caption.split()[-2], "")
        out.append(Swap(image, caption, target, np.asarray(mask, dtype=bool),
                        tuple(world.COLOURS[target.split()[1]])))
    return out


def measure(swap: Swap, output: Image.Image) -> dict:
    """background_ssim (kept ↑) and shape_colour_distance (to the target colour ↓)."""
    output = output.resize(swap.image.size) if output.size != swap.image.size else output
    return {"background_ssim": metrics.masked_ssim(swap.image, output, ~swap.shape),
            "shape_colour_distance": metrics.colour_distance(output, swap.shape, swap.target_rgb)}
