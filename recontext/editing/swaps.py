"""Colour-swap edits on the tiny world's procedural scenes, where an edit can be measured:
the caption says exactly what is drawn (`a {colour} {shape} on a {colour} background`),
and the scene helper gives the shape's mask, so the background (which an edit should
keep) and the shape (whose colour it should change) are known pixel by pixel."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import metrics


@dataclass
class Swap:
    image: Image.Image
    source: str              # the scene's caption
    target: str              # the same caption, the shape's colour swapped
    shape: np.ndarray        # bool H×W
    target_rgb: tuple


def world():
    """The tiny world's scene module, or an error that says it is missing."""
    try:
        from ..tiny import world as w
    except ImportError as e:
        raise RuntimeError("the tiny world's scene helper (recontext.tiny.world) is not "
                           "available in this checkout") from e
    return w


def swaps(n: int, size: int | None = None) -> list[Swap]:
    """`n` scenes, each with a shape colour swapped for another colour (never the
    background's), cycling through shapes and colour pairs deterministically."""
    w = world()
    colours, shapes = list(w.COLOURS), list(w.SHAPES)
    combos = [(c, t, b, s) for s in shapes for c, t, b in itertools.permutations(colours, 3)]
    step = max(1, len(combos) // n)
    out = []
    for i, (colour, new, background, shape) in enumerate(combos[::step][:n]):
        image, caption, mask = w.scene(colour=colour, shape=shape, background=background,
                                       size=size, seed=i)
        out.append(Swap(image, caption, caption.replace(f"a {colour} {shape}", f"a {new} {shape}", 1),
                        np.asarray(mask, dtype=bool), tuple(w.COLOURS[new])))
    return out


def measure(swap: Swap, output: Image.Image) -> dict:
    """background_ssim (kept ↑) and shape_colour_distance (to the target colour ↓)."""
    output = output.resize(swap.image.size) if output.size != swap.image.size else output
    return {"background_ssim": metrics.masked_ssim(swap.image, output, ~swap.shape),
            "shape_colour_distance": metrics.colour_distance(output, swap.shape, swap.target_rgb)}
