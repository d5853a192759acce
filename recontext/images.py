"""Turning whatever a user uploads into an RGB image the models can take.

Every failure is a `ValueError` with a sentence a person can act on. Nothing here
imports torch, so the web layer can validate an upload before any model work.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # a 8000×8000 photo; beyond that decoding alone risks memory


def load_image(src, max_side: int | None = None) -> tuple[Image.Image, list[str]]:
    """Open a path, bytes, numpy array or PIL image as 8-bit RGB; return it and notes
    saying what was converted. With `max_side`, a JPEG is decoded already reduced (by a
    power of two, never below `max_side`), so a huge photo never sits in memory whole."""
    notes: list[str] = []
    if src is None:
        raise ValueError("no image given: upload a photo or pick an example (a file the browser could not show as an image is not uploaded)")
    if isinstance(src, np.ndarray):
        img = Image.fromarray(src)
    elif isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, (str, os.PathLike)) and not os.path.exists(src):
            raise ValueError(f"image file not found: {os.path.basename(str(src))}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
                if img.width * img.height > MAX_PIXELS:
                    raise ValueError(
                        f"image is {img.width}×{img.height}: more than {MAX_PIXELS // 1_000_000} "
                        "megapixels; please downscale it first")
                if max_side and img.format == "JPEG" and max(img.size) >= 2 * max_side:
                    full, k = img.size, max_side / max(img.size)
                    img.draft("RGB", (-(-img.width * k // 1), -(-img.height * k // 1)))
                    if img.size != full:
                        notes.append(f"decoded at {img.width}×{img.height} instead of {full[0]}×{full[1]} "
                                     "(far larger than the model's size; this saves memory)")
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError(f"image is more than {MAX_PIXELS // 1_000_000} megapixels (the "
                             "image library refuses to open it); please downscale it first") from None
        except UnidentifiedImageError:
            raise ValueError("this file is not an image we can read (PNG, JPEG, WebP, …)") from None
        except (OSError, SyntaxError) as e:
            raise ValueError(f"the image file is corrupt or truncated ({e})") from None
    if img.width * img.height > MAX_PIXELS:
        raise ValueError(f"image is {img.width}×{img.height}: more than "
                         f"{MAX_PIXELS // 1_000_000} megapixels; please downscale it first")
    if img.width < 8 or img.height < 8:
        raise ValueError(f"image is {img.width}×{img.height}: too small (at least 8×8)")
    img = ImageOps.exif_transpose(img)
    return _to_rgb(img, notes), notes


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
        notes.append("16-bit / high-bit-depth image converted to 8 bits")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
        notes.append("transparency flattened onto white")
    if img.mode != "RGB":
        if img.mode in ("L", "1"):
            notes.append("grayscale image converted to RGB")
        img = img.convert("RGB")
    return img


def working_size(width: int, height: int, native: int, multiple: int) -> tuple[int, int]:
    """The model's size for a photo: the longer side becomes `native`, aspect kept,
    both sides rounded to a multiple of `multiple`."""
    scale = native / max(width, height)
    w = max(multiple, round(width * scale / multiple) * multiple)
    h = max(multiple, round(height * scale / multiple) * multiple)
    return w, h


def fit(img: Image.Image, native: int, multiple: int) -> tuple[Image.Image, list[str]]:
    """Resize to the model's working size; say so when it changes the photo."""
    size = working_size(img.width, img.height, native, multiple)
    if size == img.size:
        return img, []
    note = (f"resized from {img.width}×{img.height} to the model's working size "
            f"{size[0]}×{size[1]}; metrics are computed at that size")
    return img.resize(size, Image.Resampling.LANCZOS), [note]


def to_size(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img` at `size` (the user's original size), resized only if it differs."""
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)
