"""Small helpers every tab shares: errors as messages, progress, the page header."""

from __future__ import annotations

import functools
import math
import os

import gradio as gr

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "assets")


def asset(*parts: str) -> str:
    return os.path.join(ASSETS, *parts)


def user_errors(fn):
    """Turn a core `ValueError` (bad input) into a message on the page / API error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


def progress_fn(progress: gr.Progress):
    """Adapt a `gr.Progress` to the core's `progress(done, total, desc)` callback."""

    def update(done: int, total: int, desc: str):
        progress((done, total), desc=desc, unit="steps")

    return update


def fmt(value, digits: int = 3):
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return round(value, digits) if isinstance(value, float) else value


def header(studio) -> str:
    p = studio.preset
    tiny = ("  \n**Tiny preset:** random, seeded models small enough for a CPU. Outputs show that "
            "every step of the pipeline runs, not image quality; expect noisy images and low PSNR."
            if p.name == "tiny" else "")
    return (
        "# recontext — diffusion image recontextualization studio\n"
        "Invert real photos into a diffusion model and rebuild them, edit them with text, put "
        "garments onto models, and rate the results blind.  \n"
        f"Running preset **`{p.name}`**: {p.description}{tiny}"
    )


class PhotoInput(gr.Image):
    """An image upload that hands the core a file path and turns a file PIL cannot even
    identify into a clear message (instead of Gradio's internal processing error).
    Decoding, conversion and resizing happen in `recontext.images`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("type", "filepath")
        kwargs.setdefault("image_mode", None)  # keep 16-bit / RGBA: the core converts them
        kwargs.setdefault("format", "png")
        super().__init__(**kwargs)

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error("This file is not an image we can read (PNG, JPEG, WebP, …). "
                           "Please upload a photo.", print_exception=False) from None
