"""`Studio`: the one object the tabs, the command line and the tests call.

It validates inputs, holds the model owner, and runs the methods. Every public call
takes plain Python values (PIL images or paths, strings, numbers) and returns a small
result object; none of it knows about the web page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from . import editing, images, inversion, metrics, presets
from . import garment as garments
from .cache import LRU
from .models import ModelOwner, image_key
from .progress import Progress, segment, ticker
from .sampling import sample

LIMITS = {"steps": (1, 200), "image_scale": (0.0, 1.5), "guidance": (1.0, 20.0),
          "seed": (0, 2**32 - 1), "scale": (0.0, 2.0), "finetune_steps": (1, 2000),
          "skip": (0.0, 0.9), "source_guidance": (1.0, 20.0), "cross_replace": (0.0, 1.0),
          "self_replace": (0.0, 1.0), "edit_guidance": (0.0, 30.0), "edit_threshold": (0.0, 0.999),
          "reweight": (-10.0, 10.0)}

# prompt-to-prompt's word-swap settings in the authors' notebook (cross 0.8, self 0.4);
# LEDITS++'s edit guidance 5 and threshold 0.9 (diffusers' LEditsPP defaults)
EDIT_DEFAULTS = {"cross_replace": 0.8, "self_replace": 0.4, "edit_guidance": 5.0, "edit_threshold": 0.9}


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
    setup_seconds: float = 0.0         # one-off model loading before this call (not in `seconds`)


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
        self._encoded = LRU(8)  # image key -> (latents, VAE round trip)
        self.inversion_cache = LRU(8)  # what determines an inversion -> editing.Inverted
        self.inversions = 0  # inversions run by edit() / edit_sweep(); cache hits don't count
        self.garment_cache = LRU(16)  # HyperLoRA models, predicted and fine-tuned LoRA weights

    @property
    def base_loads(self) -> int:
        return self.models.base_loads

    @property
    def methods(self) -> list[str]:
        """The inversion methods that fit this preset's model (epsilon or flow)."""
        return inversion.fitting(self.preset.flow)

    @property
    def edit_methods(self) -> list[str]:
        """The editing methods that fit this preset's model."""
        return editing.fitting(self.preset.flow)

    def method(self, name: str):
        """The inversion method `name`, refused (ValueError naming the fitting ones) when it
        does not fit this preset's model."""
        return inversion.get(name, self.preset.flow)

    def setup(self, progress: Progress | None = None) -> float:
        """One-off work before the first job: build (the tiny preset) and load the base
        model. Says so through `progress`; returns the seconds it took (0 once done), which
        the jobs report as `setup_seconds`, apart from their own timings."""
        if self.models.loaded:
            return 0.0
        if progress is not None:
            progress(0, 0, f"one-off setup: loading the {self.preset.name} model (first run only)")
        start = time.perf_counter()
        self.models.pipe
        return time.perf_counter() - start

    # -- shared steps --------------------------------------------------------------------
    def prepare(self, image) -> Prepared:
        """Load, convert and resize a photo; encode it (once per photo, kept with its
        VAE round trip, the ceiling of every reconstruction metric)."""
        img, notes = images.load_image(image, max_side=self.preset.resolution)
        size = img.size
        img, more = images.fit(img, self.preset.resolution, self.models.size_multiple)
        key = image_key(img)
        if key not in self._encoded:
            latents = self.models.encode(img)
            self._encoded.put(key, (latents, self.models.decode(latents, "the photo's VAE round trip", checked=False)))
        latents, roundtrip = self._encoded.get(key)
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

    def _checked(self, image_scale, guidance, steps, seed):
        return (check_range("image_scale", image_scale), check_range("guidance", guidance),
                check_range("steps", self.preset.steps if steps is None else steps, integer=True),
                check_range("seed", seed, integer=True))

    def inversion_options(self, method: str) -> dict:
        """An inversion method's own settings on this preset (its authors' defaults)."""
        return inversion.defaults.renoise(self.preset.name) if method == "renoise" else {}

    def invert(self, photo: Prepared, prompt: str, module, tight: bool, image_scale: float,
               timesteps, alphas, seed: int, guidance: float = 1.0, tick=None, options=None):
        """Invert `photo` under `prompt` with an inversion `module` (and its `options`) and
        reconstruct it under the same conditioning: (state, reconstructed latents).
        Holds `models.lock`."""
        with self.models.lock:
            cond = self.condition(prompt, photo.image, tight, image_scale, guidance)
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                state = module.invert(self.models.model_call, photo.latents, timesteps, alphas,
                                      cond, generator=generator, callback=tick, **(options or {}))
                z_rec = module.reconstruct(self.models.model_call, state, timesteps, alphas, cond,
                                           callback=tick)
        return state, z_rec

    # -- inversion tab -------------------------------------------------------------------
    def reconstruct(self, image, prompt: str = "", method: str | None = None, tight: bool = False,
                    image_scale: float = 0.4, steps: int | None = None, seed: int = 0,
                    guidance: float = 1.0, progress: Progress | None = None) -> Reconstruction:
        """Invert a photo with `method` (None: the preset's first, ddim or flow-euler) and
        reconstruct it; metrics against the input."""
        method = method or self.methods[0]
        module = self.method(method)
        image_scale, guidance, steps, seed = self._checked(image_scale, guidance, steps, seed)
        setup = self.setup(progress)
        start = time.perf_counter()
        with self.models.lock:
            photo = self.prepare(image)
            notes = photo.notes + self.prompt_notes(prompt)
            timesteps, alphas = self.models.levels(steps, photo.latents)
            tick = ticker(progress, 2 * steps, f"{method}{' + tight' if tight else ''}")
            _, z_rec = self.invert(photo, prompt, module, tight, image_scale, timesteps, alphas,
                                   seed, guidance, tick, self.inversion_options(method))
            output = self.models.decode(z_rec, f"{method}{' + tight' if tight else ''}")
        result = metrics.reconstruction(photo.image, output, photo.latents, z_rec, photo.vae_roundtrip)
        return Reconstruction(
            image=images.to_size(output, photo.original_size), metrics=result,
            seconds=time.perf_counter() - start, method=method, tight=tight, image_scale=image_scale,
            source=photo.image, output=output, notes=notes, setup_seconds=setup)


    # -- text editing tab ------------------------------------------------------------------
    def edit(self, image, source_prompt: str, target_prompt: str, method: str | None = None,
             tight: bool = True, image_scale: float = 0.4, guidance: float | None = None,
             steps: int | None = None, seed: int = 0, progress: Progress | None = None,
             edit_method: str = "regenerate", skip: float | None = None,
             source_guidance: float | None = None, cross_replace: float | None = None,
             self_replace: float | None = None, reweight=None, edit_guidance: float | None = None,
             edit_threshold: float | None = None) -> editing.Edit:
        """Invert the photo under `source_prompt` (cached), then edit toward `target_prompt`
        with `edit_method` ("regenerate", "prompt-to-prompt" or "ledits++"). Settings left
        None take their authors' defaults (`inversion.defaults`, `EDIT_DEFAULTS`):
        `skip`, `source_guidance` for the inversion; `cross_replace`, `self_replace`,
        `reweight` ("word=factor") for prompt-to-prompt; `edit_guidance`, `edit_threshold`
        for LEDITS++. `guidance` None: the preset's (7.5; FLUX 3.5)."""
        method = method or self.methods[0]
        self.method(method)
        editing.get(edit_method, self.preset.flow)
        guidance = self.preset.guidance if guidance is None else guidance
        image_scale, guidance, steps, seed = self._checked(image_scale, guidance, steps, seed)
        _require_text(target_prompt, "target prompt")
        _require_text(source_prompt, "source prompt", allow_empty=True)
        self.setup(progress)  # one-off model loading stays out of the edit's seconds
        settings = self.edit_settings(method, edit_method, skip=skip, source_guidance=source_guidance,
                                      cross_replace=cross_replace, self_replace=self_replace,
                                      edit_guidance=edit_guidance, edit_threshold=edit_threshold)
        settings["reweight"] = parse_reweight(reweight)
        return editing.edit(self, image, source_prompt, target_prompt, method, tight, image_scale,
                            guidance, steps, seed, progress, edit_method=edit_method, **settings)

    def edit_settings(self, method: str, edit_method: str, **given) -> dict:
        """The settings an edit runs with: those given (checked), the defaults otherwise."""
        defaults = {**EDIT_DEFAULTS, **inversion.defaults.for_edit(self.preset.name, method, edit_method)}
        return {k: check_range(k, v) if v is not None else defaults[k]
                for k, v in {**dict.fromkeys(defaults), **given}.items()}

    def edit_sweep(self, image, source_prompt: str, target_prompt: str,
                   scales=editing.SWEEP_SCALES, method: str | None = None, guidance: float | None = None,
                   steps: int | None = None, seed: int = 0,
                   progress: Progress | None = None, run=None, **settings) -> list[editing.Edit]:
        """Tight edits at several image scales: one inversion per scale (each scale
        conditions its own), the photo's image embeddings computed once for all.
        `settings`: `edit_method` and its options, as for `edit`. `run`: what makes each edit
        (default `self.edit`; on ZeroGPU, `self.edit` in a GPU call of its own)."""
        scales = [check_range("image_scale", s) for s in scales]
        if not scales:
            raise ValueError("image scales: give at least one value")
        results = []
        for i, s in enumerate(scales):
            results.append((run or self.edit)(image, source_prompt, target_prompt, method=method, tight=True,
                                     image_scale=s, guidance=guidance, steps=steps, seed=seed,
                                     progress=segment(progress, i, len(scales), f"scale {s:g}: "),
                                     **settings))
        return results

    def edit_compare(self, image, source_prompt: str, target_prompt: str, method: str | None = None,
                     image_scale: float = 0.4, guidance: float | None = None, steps: int | None = None,
                     seed: int = 0, progress: Progress | None = None, run=None,
                     **settings) -> list[editing.Edit]:
        """The same edit by every editing method, tight and plain. Each method runs on the
        inversion its paper pairs it with: LEDITS++ on edit-friendly DDPM, the others on
        `method`. `settings` as for `edit` (each method takes the ones that are its own);
        `run` as for `edit_sweep`."""
        settings.pop("edit_method", None)
        runs = [(m, tight) for m in self.edit_methods for tight in (True, False)]
        return [(run or self.edit)(image, source_prompt, target_prompt,
                          method="edit-friendly" if m == "ledits++" else method, tight=tight,
                          image_scale=image_scale, guidance=guidance, steps=steps, seed=seed,
                          progress=segment(progress, i, len(runs), f"{m}{' + tight' if tight else ''}: "),
                          edit_method=m, **settings)
                for i, (m, tight) in enumerate(runs)]

    # -- text to image ---------------------------------------------------------------------------
    def generate(self, prompt: str, steps: int | None = None, guidance: float | None = None, seed: int = 0,
                 progress: Progress | None = None) -> Image.Image:
        """Plain text-to-image on the shared pipeline (no image conditioning); `guidance`
        None: the preset's."""
        _require_text(prompt, "prompt")
        guidance = self.preset.guidance if guidance is None else guidance
        _, guidance, steps, seed = self._checked(0.0, guidance, steps, seed)
        side = self.preset.resolution
        with self.models.lock:
            cond = self.condition(prompt, Image.new("RGB", (side, side)), False, 0.0, guidance)
            return sample(self.models, cond, side, steps, seed, ticker(progress, steps, "generating"))

    # -- garment tab -------------------------------------------------------------------------
    def dress(self, garment_image, prompt: str, method: str = "hyperlora", scale: float = 1.0,
              steps: int | None = None, seed: int = 0, guidance: float = 7.5,
              finetune_steps: int = garments.FINETUNE_STEPS, checkpoint: str | None = None,
              progress: Progress | None = None) -> garments.Dressed:
        """Generate `prompt` wearing `garment` with `method`: "hyperlora" (predicted LoRA at
        `scale`), "ip-adapter" (the garment as image prompt at `scale`) or "finetune-lora"
        (a LoRA fitted for `finetune_steps`, at `scale`) or "prompt-only" (no garment)."""
        garments.get(method)
        if self.preset.flow:
            raise ValueError(f"the garment tab needs a UNet (epsilon) preset such as tiny or sdxl; "
                             f"{self.preset.name} is a flow-matching model")
        _require_text(prompt, "prompt")
        scale = check_range("scale", scale)
        if method == "ip-adapter":
            scale = check_range("image_scale", scale)
        _, guidance, steps, seed = self._checked(0.0, guidance, steps, seed)
        finetune_steps = check_range("finetune_steps", finetune_steps, integer=True)
        return garments.dress(self, garment_image, prompt, method, scale, steps, seed, guidance,
                             finetune_steps, checkpoint, progress)


def parse_reweight(value):
    """None, "" , "word=factor" or (word, factor) -> None or (word, factor)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        word, sep, factor = value.partition("=")
        if not sep or not word.strip():
            raise ValueError(f"reweight must look like word=factor (e.g. green=2), got {value!r}")
        value = (word.strip(), factor)
    word, factor = value
    return str(word), check_range("reweight", factor)


def _require_text(value, what: str, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    if not allow_empty and not value.strip():
        raise ValueError(f"{what} is empty: say what the image should show")
