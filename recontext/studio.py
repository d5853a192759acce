"""`Studio`: the one object the tabs, the command line and the tests call.

It validates inputs, holds the model owner, and runs the methods. Every public call
takes plain Python values (PIL images or paths, strings, numbers) and returns a small
result object; none of it knows about the web page.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image

from . import images, inversion, metrics, presets
from .models import ModelOwner, image_key

Progress = Callable[[int, int, str], None]

LIMITS = {"steps": (1, 200), "image_scale": (0.0, 1.5), "guidance": (1.0, 20.0),
          "seed": (0, 2**32 - 1)}


def check_range(name: str, value, integer: bool = False):
    lo, hi = LIMITS[name]
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not lo <= v <= hi or v != v:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value!r}")
    if integer:
        if v != int(v):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        return int(v)
    return v


@dataclass
class Reconstruction:
    image: Image.Image                 # the reconstruction, same size as the input
    metrics: dict                      # psnr, ssim, l2, latent_error, lpips (None if unavailable),
                                       # vae_psnr (the autoencoder's own round trip: the ceiling),
                                       # inversion_psnr (against that round trip)
    seconds: float
    method: str
    tight: bool
    image_scale: float
    source: Image.Image                # the input as the model saw it (working size)
    output: Image.Image                # the reconstruction at working size (metrics are on these)
    notes: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """A photo made ready for the model: working-size image, latents, conditioning."""

    original_size: tuple[int, int]
    image: Image.Image
    latents: torch.Tensor
    vae_roundtrip: Image.Image
    notes: list[str]


class Studio:
    def __init__(self, preset: str | None = None):
        self.preset = presets.get(preset)
        self.models = ModelOwner(self.preset)
        self._encoded: OrderedDict[str, tuple[torch.Tensor, Image.Image]] = OrderedDict()

    @property
    def base_loads(self) -> int:
        return self.models.base_loads

    # -- shared steps --------------------------------------------------------------------
    def prepare(self, image) -> Prepared:
        """Load, convert and resize a photo; encode it (once per photo, kept with its
        VAE round trip, the ceiling of every reconstruction metric)."""
        img, notes = images.load_image(image)
        size = img.size
        img, more = images.fit(img, self.preset.resolution, self.models.size_multiple)
        key = image_key(img)
        if key not in self._encoded:
            latents = self.models.encode(img)
            self._encoded[key] = (latents, self.models.decode(latents))
            while len(self._encoded) > 8:
                self._encoded.popitem(last=False)
        latents, roundtrip = self._encoded[key]
        return Prepared(size, img, latents, roundtrip, notes + more)

    def prompt_notes(self, prompt: str, what: str = "prompt") -> list[str]:
        if not isinstance(prompt, str):
            raise ValueError(f"{what} must be text")
        over = self.models.tokens_over_limit(prompt)
        if over:
            limit = self.models.pipe.tokenizer.model_max_length
            return [f"{what} is longer than the text encoder's {limit} tokens: "
                    f"the last {over} tokens were cut off"]
        return []

    def condition(self, prompt: str, photo: Image.Image, tight: bool, image_scale: float,
                  guidance: float = 1.0):
        """Text conditioning plus, for tight runs, the photo through IP-Adapter.
        Sets the adapter scale on the shared UNet: call under `models.lock`."""
        cond = self.models.text_cond(prompt, photo.size, guidance)
        self.models.set_image_scale(image_scale if tight else 0.0)
        return self.models.with_image(cond, photo if tight else None)

    # -- inversion tab -------------------------------------------------------------------
    def reconstruct(self, image, prompt: str = "", method: str = "ddim", tight: bool = False,
                    image_scale: float = 0.4, steps: int | None = None, seed: int = 0,
                    guidance: float = 1.0, progress: Progress | None = None) -> Reconstruction:
        """Invert a photo with `method` and reconstruct it; metrics against the input."""
        start = time.perf_counter()
        module = inversion.get(method)
        steps = check_range("steps", self.preset.steps if steps is None else steps, integer=True)
        image_scale = check_range("image_scale", image_scale)
        guidance = check_range("guidance", guidance)
        seed = check_range("seed", seed, integer=True)
        with self.models.lock:
            photo = self.prepare(image)
            notes = photo.notes + self.prompt_notes(prompt)
            cond = self.condition(prompt, photo.image, tight, image_scale, guidance)
            timesteps, alphas = inversion.levels(self.models.pipe.scheduler, steps)
            tick = _ticker(progress, 2 * steps, f"{method}{' + tight' if tight else ''}")
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                state = module.invert(self.models.unet_call, photo.latents, timesteps, alphas,
                                      cond, generator=generator, callback=tick)
                z_rec = module.reconstruct(self.models.unet_call, state, timesteps, alphas, cond,
                                           callback=tick)
            output = self.models.decode(z_rec)
        result = metrics.reconstruction(photo.image, output, photo.latents, z_rec, photo.vae_roundtrip)
        return Reconstruction(
            image=output.resize(photo.original_size, Image.Resampling.LANCZOS)
            if output.size != photo.original_size else output,
            metrics=result, seconds=time.perf_counter() - start, method=method, tight=tight,
            image_scale=image_scale, source=photo.image, output=output, notes=notes)


def _ticker(progress: Progress | None, total: int, desc: str):
    if progress is None:
        return None
    count = [0]

    def tick(_):
        count[0] += 1
        progress(count[0], total, desc)

    return tick
