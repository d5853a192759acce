"""The workbench under Studio, editing and garment methods: the shared steps (prepare a photo,
condition on text and photo, invert and reconstruct, sample) and the caches they keep.
Studio checks inputs and calls down here; editing and garment methods are handed the
workbench, never the Studio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from PIL import Image

from . import images, inversion
from .cache import LRU
from .models import ModelOwner, image_key
from .progress import Progress
from .sampling import sample


@dataclass
class Prepared:
    """A photo made ready for the model: working-size image, latents, conditioning."""

    original_size: tuple[int, int]
    image: Image.Image
    latents: torch.Tensor
    vae_roundtrip: Image.Image
    notes: list[str]


class Workbench:
    def __init__(self, preset):
        self.preset = preset
        self.models = ModelOwner(preset)
        self.encoded = LRU(8)            # image key -> (latents, VAE round trip)
        self.inversion_cache = LRU(8)    # what determines an inversion -> editing.Inverted
        self.garment_cache = LRU(16)     # garment methods' loaded models and adapted weights
        self.inversions = 0              # inversions run for edits; cache hits don't count

    def setup(self, progress: Progress | None = None) -> float:
        """One-off work before the first job: build (the tiny presets) and load the base
        model. Says so through `progress`; returns the seconds it took (0 once done), which
        the jobs report as `setup_seconds`, apart from their own timings."""
        if self.models.loaded:
            return 0.0
        if progress is not None:
            progress(0, 0, f"one-off setup: loading the {self.preset.name} model (first run only)")
        start = time.perf_counter()
        self.models.pipe
        return time.perf_counter() - start

    def prepare(self, image) -> Prepared:
        """Load, convert and resize a photo; encode it (once per photo, kept with its
        VAE round trip, the ceiling of every reconstruction metric)."""
        img, notes = images.load_image(image, max_side=self.preset.resolution)
        size = img.size
        img, more = images.fit(img, self.preset.resolution, self.models.size_multiple)
        key = image_key(img)
        if key not in self.encoded:
            latents = self.models.encode(img)
            self.encoded.put(key, (latents, self.models.decode(latents, "the photo's VAE round trip", checked=False)))
        latents, roundtrip = self.encoded.get(key)
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

    def invert(self, photo: Prepared, prompt: str, module, tight: bool, image_scale: float,
               timesteps, alphas, seed: int, guidance: float = 1.0, tick=None, options=None):
        """Invert `photo` under `prompt` with an inversion `module` (and its `options`, each
        passed to the stage that takes it) and reconstruct it under the same conditioning:
        (state, reconstructed latents). Holds `models.lock`."""
        own, rebuild = inversion.split(module.SPEC.name, options or {})
        with self.models.lock:
            cond = self.condition(prompt, photo.image, tight, image_scale, guidance)
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                state = module.invert(self.models.model_call, photo.latents, timesteps, alphas,
                                      cond, generator=generator, callback=tick, **own)
                z_rec = module.reconstruct(self.models.model_call, state, timesteps, alphas, cond,
                                           callback=tick, **rebuild)
        return state, z_rec

    def generate(self, cond, steps: int, seed: int, tick=None, what: str = "generation") -> Image.Image:
        """Sample at the preset's resolution under `cond` (call under `models.lock`)."""
        return sample(self.models, cond, self.preset.resolution, steps, seed, tick, what)

    def cached(self, key, make):
        """`garment_cache[key]`, made by `make()` when absent: (value, whether it was cached)."""
        if key in self.garment_cache:
            return self.garment_cache.get(key), True
        return self.garment_cache.put(key, make()), False
