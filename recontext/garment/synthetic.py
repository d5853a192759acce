"""Procedural garment pairs: a garment on white, and a figure wearing it in a plain scene.

Used to train HyperLoRA offline (the tiny checkpoint, the tests, the toy benchmark) and as
the garment tab's examples. `pair(seed)` is deterministic.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("t-shirt", "dress", "trousers", "skirt")
COLOURS = {"red": (200, 40, 40), "green": (40, 150, 60), "blue": (40, 70, 200),
           "yellow": (230, 200, 40), "purple": (130, 50, 160), "orange": (240, 130, 30),
           "black": (25, 25, 25), "teal": (20, 140, 140)}
PATTERNS = ("plain", "striped", "dotted", "checked")
SCENES = {"beach": ((150, 200, 240), (230, 210, 160)), "street": ((180, 190, 200), (110, 110, 115)),
          "park": ((160, 210, 240), (80, 160, 70)), "studio": ((225, 225, 225), (200, 200, 200))}


def _shape(kind: str, x0: float, y0: float, w: float, h: float) -> list[tuple[float, float]]:
    """The garment's outline in the box (x0, y0, w, h)."""
    p = lambda fx, fy: (x0 + fx * w, y0 + fy * h)  # noqa: E731
    if kind == "t-shirt":
        pts = [(.3, 0), (.7, 0), (1, .2), (.85, .35), (.75, .28), (.75, 1), (.25, 1), (.25, .28),
               (.15, .35), (0, .2)]
    elif kind == "dress":
        pts = [(.35, 0), (.65, 0), (.7, .35), (.95, 1), (.05, 1), (.3, .35)]
    elif kind == "trousers":
        pts = [(.2, 0), (.8, 0), (.9, 1), (.6, 1), (.5, .35), (.4, 1), (.1, 1)]
    else:  # skirt
        pts = [(.3, 0), (.7, 0), (.95, 1), (.05, 1)]
    return [p(*q) for q in pts]


def _fabric(size: tuple[int, int], colour, pattern: str, period: int) -> Image.Image:
    img = Image.new("RGB", size, colour)
    d = ImageDraw.Draw(img)
    light = tuple(min(255, c + 110) for c in colour)
    w, h = size
    if pattern == "striped":
        for y in range(0, h, period):
            d.rectangle([0, y, w, y + period // 2 - 1], fill=light)
    elif pattern == "dotted":
        for y in range(period // 2, h, period):
            for x in range(period // 2, w, period):
                r = max(1, period // 4)
                d.ellipse([x - r, y - r, x + r, y + r], fill=light)
    elif pattern == "checked":
        for y in range(0, h, period):
            for x in range(0, w, period):
                if (x // period + y // period) % 2:
                    d.rectangle([x, y, x + period - 1, y + period - 1], fill=light)
    return img


def _paint(img: Image.Image, outline, colour, pattern: str, period: int) -> Image.Image:
    """Paint the garment's `outline` with its fabric; return the garment's mask ("L")."""
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    img.paste(_fabric(img.size, colour, pattern, period), (0, 0), mask)
    return mask


def describe(seed: int) -> dict:
    rng = random.Random(seed)
    return {"kind": rng.choice(KINDS), "colour": rng.choice(list(COLOURS)),
            "pattern": rng.choice(PATTERNS), "scene": rng.choice(list(SCENES))}


def garment(seed: int, size: int = 128) -> Image.Image:
    """The garment alone, flat on white."""
    g = describe(seed)
    img = Image.new("RGB", (size, size), "white")
    _paint(img, _shape(g["kind"], .15 * size, .1 * size, .7 * size, .8 * size), COLOURS[g["colour"]],
           g["pattern"], max(4, size // 8))
    return img


def scene(seed: int, size: int = 128) -> Image.Image:
    """A figure wearing the garment in a plain scene."""
    return worn(seed, size)[0]


def worn(seed: int, size: int = 128) -> tuple[Image.Image, np.ndarray]:
    """(a figure wearing the garment in a plain scene, the garment's boolean mask there)."""
    g = describe(seed)
    sky, ground = SCENES[g["scene"]]
    img = Image.new("RGB", (size, size), sky)
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(.7 * size), size, size], fill=ground)
    cx, skin = size / 2, (225, 185, 150)
    d.ellipse([cx - .08 * size, .06 * size, cx + .08 * size, .22 * size], fill=skin)  # head
    d.rectangle([cx - .12 * size, .22 * size, cx + .12 * size, .55 * size], fill=(90, 90, 90))  # torso
    d.rectangle([cx - .11 * size, .55 * size, cx + .11 * size, .94 * size], fill=(60, 60, 80))  # legs
    top = g["kind"] in ("t-shirt", "dress")
    box = ((cx - .22 * size, .22 * size, .44 * size, .36 * size) if g["kind"] == "t-shirt" else
           (cx - .2 * size, .22 * size, .4 * size, .6 * size) if g["kind"] == "dress" else
           (cx - .15 * size, .5 * size, .3 * size, .45 * size) if g["kind"] == "trousers" else
           (cx - .17 * size, .5 * size, .34 * size, .25 * size))
    mask = _paint(img, _shape(g["kind"], *box), COLOURS[g["colour"]], g["pattern"], max(3, size // 12))
    if top:
        d.rectangle([cx - .11 * size, box[1] + box[3], cx + .11 * size, .94 * size], fill=(60, 60, 80))
        ImageDraw.Draw(mask).rectangle([cx - .11 * size, box[1] + box[3], cx + .11 * size, .94 * size],
                                       fill=0)
    return img, np.asarray(mask) >= 128


def prompt(seed: int, look: int | None = None) -> str:
    """The full description: `a person wearing a red striped t-shirt at the beach`;
    `look`: the colour and pattern of that garment instead (kind and scene stay `seed`'s)."""
    g, shown = describe(seed), describe(seed if look is None else look)
    words = " ".join(w for w in (shown["colour"], shown["pattern"] if shown["pattern"] != "plain" else "",
                                 g["kind"]) if w)
    article = "" if g["kind"] == "trousers" else "an " if words[0] in "aeiou" else "a "
    return f"a person wearing {article}{words} at the {g['scene']}"


def scene_prompt(seed: int) -> str:
    """The prompt without the garment's look (`a person wearing a t-shirt at the beach`):
    what a user types in the garment tab, where the garment photo carries the look."""
    g = describe(seed)
    article = "" if g["kind"] == "trousers" else "a "
    return f"a person wearing {article}{g['kind']} at the {g['scene']}"


def garment_caption(seed: int) -> str:
    """What the garment photo shows: `a red striped t-shirt`."""
    g = describe(seed)
    words = " ".join(w for w in (g["colour"], g["pattern"] if g["pattern"] != "plain" else "",
                                 g["kind"]) if w)
    return words if g["kind"] == "trousers" else ("an " if words[0] in "aeiou" else "a ") + words


def pair(seed: int, size: int = 128) -> tuple[Image.Image, Image.Image, str]:
    """(garment on white, a figure wearing it in a scene, the scene's prompt without the
    garment's look): HyperLoRA must take the look from the garment photo."""
    return garment(seed), scene(seed, size), scene_prompt(seed)
