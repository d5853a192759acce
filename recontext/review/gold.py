"""Gold items: review items whose right answer is known, to check the raters.

`make_gold(runs, run_id)` saves a new item from a run's source image with two outputs:
`gold:identical` (the source itself, so it must get top fidelity) and `gold:degraded`
(the source blurred and noised, so it must lose a pairwise vote). Raters see it as any
other item; `summary.gold_checks` scores their answers, and a rater who fails them is
flagged and left out of the summary by default. Gold items never count for a method.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from ..runs import Output

TOP, BOTTOM = "gold:identical", "gold:degraded"


def degrade(image: Image.Image, seed: int = 0) -> Image.Image:
    """A visibly worse copy: blurred, then noised."""
    im = image.convert("RGB").filter(ImageFilter.GaussianBlur(radius=max(2, image.width // 48)))
    x = np.asarray(im, dtype=np.float32)
    x += np.random.default_rng(seed).normal(0, 25, x.shape)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def make_gold(runs, run_id: str, seed: int = 0) -> str:
    """A gold item made from run `run_id`'s source image; returns the new item's id."""
    record = runs.get(run_id)
    if not record.get("source"):
        raise ValueError(f"run {run_id!r} has no source image to make a gold item from")
    with Image.open(f"{record['dir']}/{record['source']}") as im:
        source = im.convert("RGB")
    return runs.save(record["task"], record.get("preset", ""),
                     [Output(TOP, source.copy()), Output(BOTTOM, degrade(source, seed))],
                     source=source, prompts=record.get("prompts", {}),
                     params={"gold_of": run_id}, gold={"top": TOP, "bottom": BOTTOM})
