"""The tiny world's data: captioned procedural scenes, garments, and natural photos.

Scenes follow one caption grammar, `a {colour} {shape} on a {colour} background`, so a
prompt, an edit and a CLIP score all have a checkable meaning: the border is the
background colour, the shape's pixels (its mask) the shape colour. `scene(seed)` is
deterministic. Photos are the natural images that ship with installed packages; a fixed
few are held out of every training stage to test generalisation.
"""

from __future__ import annotations

import os
import random

import numpy as np
from PIL import Image, ImageDraw

HELD_OUT_SEED = 1 << 31  # scene seeds from here on are never trained on

COLOURS = {"red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 210),
           "yellow": (235, 205, 40), "white": (240, 240, 240), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle")
CAPTION = "a {colour} {shape} on a {background} background"
SIZE = 128


def caption(colour: str, shape: str, background: str) -> str:
    return CAPTION.format(colour=colour, shape=shape, background=background)


def captions() -> list[str]:
    """Every caption of the grammar (shape and background colours differ): 90."""
    return [caption(c, s, b) for s in SHAPES for c in COLOURS for b in COLOURS if b != c]


def describe(seed: int) -> dict:
    rng = random.Random(seed)
    colour, background = rng.sample(list(COLOURS), 2)
    return {"colour": colour, "shape": rng.choice(SHAPES), "background": background,
            "size": rng.uniform(0.35, 0.6), "cx": rng.uniform(0.35, 0.65), "cy": rng.uniform(0.35, 0.65)}


def draw(colour: str, shape: str, background: str, size: float = 0.5, cx: float = 0.5,
         cy: float = 0.5, px: int = SIZE) -> tuple[Image.Image, np.ndarray]:
    """(scene image, boolean shape mask) for one combination, drawn at 4x and reduced."""
    big = 4 * px
    mask = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(mask)
    r = size * big / 2
    x, y = cx * big, cy * big
    if shape == "circle":
        d.ellipse([x - r, y - r, x + r, y + r], fill=255)
    elif shape == "square":
        d.rectangle([x - r, y - r, x + r, y + r], fill=255)
    else:
        d.polygon([(x, y - r), (x + r, y + r * 0.85), (x - r, y + r * 0.85)], fill=255)
    mask = mask.resize((px, px), Image.BOX)
    img = Image.composite(Image.new("RGB", (px, px), COLOURS[colour]),
                          Image.new("RGB", (px, px), COLOURS[background]), mask)
    return img, np.asarray(mask) >= 128


def scene(seed: int, px: int = SIZE) -> tuple[Image.Image, str, np.ndarray]:
    """(image, caption, shape mask) of procedural scene `seed`."""
    g = describe(seed)
    img, mask = draw(g["colour"], g["shape"], g["background"], g["size"], g["cx"], g["cy"], px)
    return img, caption(g["colour"], g["shape"], g["background"]), mask


def border(mask_or_size, width: float = 0.08) -> np.ndarray:
    """Boolean mask of the image's outer frame (`width` of the side on every edge)."""
    n = mask_or_size if isinstance(mask_or_size, int) else mask_or_size.shape[0]
    w = max(1, round(width * n))
    m = np.zeros((n, n), bool)
    m[:w], m[-w:], m[:, :w], m[:, -w:] = True, True, True, True
    return m


# -- natural photos --------------------------------------------------------------------
def _skimage(name):
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


def _matplotlib(name):
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", name)


# Colour and grey photos that ship with scikit-image (the inversion tab's examples are
# among them: astronaut, chelsea, coffee, rocket).
TRAIN_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
                "ihc.png", "retina.jpg", "color.png", "brick.png", "grass.png", "gravel.png",
                "coins.png", "page.png", "moon.png", "text.png", "cell.png", "clock_motion.png",
                "microaneurysms.png", "chessboard_RGB.png"]
# Never used in training: the held-out test of every claim about natural photos.
HELD_OUT_PHOTOS = [("matplotlib", "grace_hopper.jpg"), ("skimage", "motorcycle_left.png"),
                   ("skimage", "camera.png"), ("matplotlib", "Minduka_Present_Blue_Pack.png")]


def example_photos() -> list[str]:
    """The studio's example photos (`assets/photos`): in training, and judged on."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "assets", "photos")
    return sorted(os.path.join(root, n) for n in os.listdir(root) if n.endswith(".png"))


def photo_paths(held_out: bool = False) -> list[str]:
    if held_out:
        return [(_skimage if lib == "skimage" else _matplotlib)(n) for lib, n in HELD_OUT_PHOTOS]
    return [_skimage(n) for n in TRAIN_PHOTOS]


def load_photo(path: str) -> Image.Image:
    return Image.open(path).convert("RGB")


def faces() -> np.ndarray:
    """scikit-image's 200 small grey faces (LFW), as uint8 (n, 25, 25)."""
    arr = np.load(_skimage("lfw_subset.npy"))
    return (arr * 255).astype(np.uint8) if arr.dtype != np.uint8 else arr


def center_square(img: Image.Image, px: int = SIZE) -> Image.Image:
    """The central square of `img`, resized to `px` (how photos are judged here)."""
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img.crop(box).resize((px, px), Image.LANCZOS)


def random_crop(img: Image.Image, rng: np.random.Generator, px: int) -> Image.Image:
    """A random square crop reduced 1.5-5x to `px` (about what fitting a photo to the
    working size does), flipped half the time, colour-jittered."""
    w, h = img.size
    s = min(int(px * rng.uniform(1.5, 5.0)), w, h)
    x, y = rng.integers(0, w - s + 1), rng.integers(0, h - s + 1)
    out = img.crop((x, y, x + s, y + s)).resize((px, px), Image.LANCZOS)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    a = np.asarray(out, np.float32)
    a = a * rng.uniform(0.8, 1.2, 3) + rng.uniform(-20, 20)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


EXAMPLES = [("red", "circle", "blue"), ("yellow", "square", "black"), ("white", "triangle", "green"),
            ("blue", "circle", "yellow")]


def write_examples(folder: str) -> list[str]:
    """The studio's example scenes (`assets/scenes`), drawn centred at 128 px."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for colour, shape, background in EXAMPLES:
        path = os.path.join(folder, f"{colour}-{shape}-on-{background}.png")
        draw(colour, shape, background, size=0.5)[0].save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":  # python -m recontext.tiny.world: rewrite assets/scenes
    print("\n".join(write_examples(os.path.join(os.path.dirname(example_photos()[0]), "..", "scenes"))))
