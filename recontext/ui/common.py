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


def fmt(value, digits: int = 4):
    """A metric for display: `digits` significant digits, ∞ and n/a spelled out."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return "∞" if math.isinf(value) else f"{value:.{digits}g}"
    return value


def saved_note(run_id: str, outputs: int) -> str:
    return f"Saved as run `{run_id}`" + (": rate it blind in the Review tab." if outputs > 1 else ".")


def header(studio) -> str:
    p = studio.preset
    tiny = (" Try the scene examples: prompts of that grammar are what this world understands."
            if p.name == "tiny" else "")
    return (
        "# recontext — diffusion image recontextualization studio\n"
        "Try, compare and rate diffusion methods that put real images in new contexts. "
        f"Running preset **`{p.name}`**: {p.description}{tiny}\n\n"
        "- **Garment → model**: a garment onto a generated person, no per-garment training "
        "(HyperLoRA, NeurIPS 2024), against [IP-Adapter](https://arxiv.org/abs/2308.06721) and a "
        "fine-tuned LoRA and the prompt alone.\n"
        "- **Inversion**: rebuild a photo with [DDIM](https://arxiv.org/abs/2010.02502), "
        "[ReNoise](https://arxiv.org/abs/2403.14602) and [edit-friendly DDPM]"
        "(https://arxiv.org/abs/2304.06140), each with and without "
        "[Tight Inversion](https://arxiv.org/abs/2502.20376).\n"
        "- **Text editing**: invert, then regenerate with an edited prompt; sweep the image scale.\n"
        "- **Review**: rate the outputs of every run above, blind; see the summary."
    )


class PhotoInput(gr.Image):
    """An image upload that hands the core a file path and turns a file PIL cannot even
    identify into a clear message (instead of Gradio's internal processing error).
    Decoding, conversion and resizing happen in `recontext.images`."""

    def get_block_name(self) -> str:
        return "image"  # rendered by Gradio's own image front end

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error("This file is not an image we can read (PNG, JPEG, WebP, …). "
                           "Please upload a photo.", print_exception=False) from None


def photo_input(**kwargs) -> PhotoInput:
    """A photo upload passed to the core as a file path, untouched (16-bit, RGBA and
    grayscale are converted by the core, which says so)."""
    return PhotoInput(type="filepath", image_mode=None, format="png", **kwargs)


SECONDS_PER_UNET_CALL = 0.12  # SDXL at 1024 px, fp16, guided, on a ZeroGPU slice (generous)


def gpu_seconds(calls: float) -> int:
    """The ZeroGPU duration asked for a request of `calls` UNet calls."""
    return int(min(600, max(30, 15 + SECONDS_PER_UNET_CALL * calls)))


def on_gpu(fn, unet_calls):
    """On a ZeroGPU Space (`spaces` importable, SPACES_ZERO_GPU set), run `fn` under
    `spaces.GPU` for a duration estimated from `unet_calls(*args)`, the UNet calls the
    request will make. Anywhere else `fn` is returned unchanged."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return fn
    try:
        import spaces
    except ImportError:
        return fn

    def duration(*args, **kwargs):
        try:
            calls = float(unet_calls(*args))
        except Exception:  # a bad value: the handler will say so; ask for the default
            return 60
        return gpu_seconds(calls)

    return spaces.GPU(duration=duration)(fn)
