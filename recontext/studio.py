"""`Studio`: the one object the tabs, the command line and the tests call.

It validates inputs, holds the model owner, and runs the methods. Every public call
takes plain Python values (PIL images or paths, strings, numbers) and returns a small
result object; none of it knows about the web page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from PIL import Image

from . import editing, images, inversion, metrics, presets
from . import garment as garments
from .methods import Option
from .progress import Progress, segment, ticker
from .workbench import Workbench

# the shared settings every job takes; a method's own settings live in its spec
SHARED = {o.name: o for o in (
    Option("steps", 50, 1, 200, kind="int"), Option("image_scale", 0.4, 0.0, 1.5),
    Option("guidance", 7.5, 1.0, 20.0), Option("seed", 0, 0, 2**32 - 1, kind="int"))}


def check_range(name: str, value):
    """A shared setting checked (ValueError naming it and its range)."""
    return SHARED[name].check(value)


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


class Studio:
    def __init__(self, preset: str | None = None):
        self.preset = presets.get(preset)
        self.bench = Workbench(self.preset)
        self.models = self.bench.models

    # the workbench's steps and caches, for callers that drive them directly
    prepare = property(lambda self: self.bench.prepare)
    condition = property(lambda self: self.bench.condition)
    invert = property(lambda self: self.bench.invert)
    prompt_notes = property(lambda self: self.bench.prompt_notes)
    setup = property(lambda self: self.bench.setup)
    inversions = property(lambda self: self.bench.inversions)
    inversion_cache = property(lambda self: self.bench.inversion_cache,
                               lambda self, v: setattr(self.bench, "inversion_cache", v))
    garment_cache = property(lambda self: self.bench.garment_cache,
                             lambda self, v: setattr(self.bench, "garment_cache", v))

    @property
    def base_loads(self) -> int:
        return self.models.base_loads

    @property
    def methods(self) -> list[str]:
        """The inversion methods that run on this preset (its model family)."""
        return inversion.names(self.preset)

    @property
    def edit_methods(self) -> list[str]:
        """The editing methods that run on this preset."""
        return editing.names(self.preset)

    @property
    def garment_methods(self) -> list[str]:
        """The garment methods that run on this preset (none on a flow model)."""
        return garments.names(self.preset)

    def method(self, name: str):
        """The inversion method `name`, refused (ValueError naming the fitting ones) when it
        does not run on this preset."""
        return inversion.get(name, self.preset)

    def _checked(self, image_scale, guidance, steps, seed):
        return (check_range("image_scale", image_scale), check_range("guidance", guidance),
                check_range("steps", self.preset.steps if steps is None else steps),
                check_range("seed", seed))

    def inversion_options(self, method: str, **given) -> dict:
        """An inversion method's own settings on this preset (its authors' defaults unless given)."""
        return inversion.options(method, self.preset.name, **given)

    # -- inversion tab -------------------------------------------------------------------
    def reconstruct(self, image, prompt: str = "", method: str | None = None, tight: bool = False,
                    image_scale: float = 0.4, steps: int | None = None, seed: int = 0,
                    guidance: float = 1.0, progress: Progress | None = None, **options) -> Reconstruction:
        """Invert a photo with `method` (None: the preset's first) and reconstruct it;
        metrics against the input. `options`: the method's own settings (its spec's); other
        inversion methods' settings are ignored, so one set serves several methods."""
        method = method or self.methods[0]
        module = self.method(method)
        _refuse_unknown(options, map(inversion.spec, inversion.names()))
        own = self.inversion_options(method, **module.SPEC.own(options))
        image_scale, guidance, steps, seed = self._checked(image_scale, guidance, steps, seed)
        setup = self.setup(progress)
        start = time.perf_counter()
        with self.models.lock:
            photo = self.prepare(image)
            notes = photo.notes + self.prompt_notes(prompt)
            timesteps, alphas = self.models.levels(steps, photo.latents)
            tick = ticker(progress, 2 * steps, f"{method}{' + tight' if tight else ''}")
            state, z_rec = self.invert(photo, prompt, module, tight, image_scale, timesteps, alphas,
                                       seed, guidance, tick, own)
            notes = notes + list(getattr(state, "notes", []))  # what the method says of its run
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
             edit_method: str | None = None, skip: float | None = None,
             source_guidance: float | None = None, **options) -> editing.Edit:
        """Invert the photo under `source_prompt` (cached), then edit toward `target_prompt`
        with `edit_method` (None: the preset's first, the baseline). `options`: the editing
        method's own settings and the inversion method's (their specs'); settings left None
        take their authors' defaults, as do `skip` and `source_guidance` (the inversion's
        for an edit). Other methods' settings are ignored, so one set serves several methods.
        `guidance` None: the preset's."""
        method = method or self.methods[0]
        edit_method = edit_method or self.edit_methods[0]
        self.method(method)
        editor = editing.get(edit_method, self.preset)
        guidance = self.preset.guidance if guidance is None else guidance
        image_scale, guidance, steps, seed = self._checked(image_scale, guidance, steps, seed)
        _require_text(target_prompt, "target prompt")
        _require_text(source_prompt, "source prompt", allow_empty=True)
        _refuse_unknown(options, [*map(inversion.spec, inversion.names()), *map(editing.spec, editing.names())])
        inv = self.inversion_options(method, **inversion.spec(method).own(options))
        own = editing.own_settings(edit_method, **editor.SPEC.own(options))
        self.setup(progress)  # one-off model loading stays out of the edit's seconds
        settings = self.edit_settings(method, edit_method, skip=skip, source_guidance=source_guidance)
        return editing.edit(self.bench, image, source_prompt, target_prompt, method, tight, image_scale,
                            guidance, steps, seed, progress, edit_method=edit_method, inversion_options=inv,
                            **settings, **own)

    def edit_settings(self, method: str, edit_method: str, **given) -> dict:
        """`skip` and `source_guidance` of an edit's inversion: those given (checked), else
        the editing method's or the inversion's defaults (their specs')."""
        return editing.inversion_settings(method, edit_method, **given)

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
        inversion its spec pairs it with (its paper's), the others on `method`. `settings` as
        for `edit` (each method takes the ones that are its own); `run` as for `edit_sweep`."""
        settings.pop("edit_method", None)
        method = method or self.methods[0]
        runs = [(m, tight) for m in self.edit_methods for tight in (True, False)]
        shared = {o.name: settings[o.name] for o in inversion.EDIT_OPTIONS if o.name in settings}
        out = []
        for i, (m, tight) in enumerate(runs):
            on = editing.inversion_for(m, method)
            own = {**editing.spec(m).own(settings), **inversion.spec(on).own(settings), **shared}
            out.append((run or self.edit)(
                image, source_prompt, target_prompt, method=on, tight=tight, image_scale=image_scale,
                guidance=guidance, steps=steps, seed=seed,
                progress=segment(progress, i, len(runs), f"{m}{' + tight' if tight else ''}: "),
                edit_method=m, **own))
        return out

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
            return self.bench.generate(cond, steps, seed, ticker(progress, steps, "generating"))

    # -- garment tab -------------------------------------------------------------------------
    def dress(self, garment_image, prompt: str, method: str | None = None, steps: int | None = None,
              seed: int = 0, guidance: float = 7.5, progress: Progress | None = None,
              **options) -> garments.Dressed:
        """Generate `prompt` wearing `garment` with `method` (None: the preset's first);
        `options`: the method's own settings (its spec's: scales, steps, checkpoint...);
        other garment methods' settings are ignored, so one set serves several methods."""
        if not self.garment_methods:
            raise ValueError(f"the garment tab needs a UNet (epsilon) preset such as tiny or sdxl; "
                             f"{self.preset.name} is a flow-matching model")
        method = method or self.garment_methods[0]
        module = garments.get(method, self.preset)
        _require_text(prompt, "prompt")
        _refuse_unknown(options, [garments.spec(m) for m in garments.names()])
        own = module.SPEC.settings(self.preset.name, **module.SPEC.own(options))
        _, guidance, steps, seed = self._checked(0.0, guidance, steps, seed)
        return garments.dress(self.bench, garment_image, prompt, method, steps, seed, guidance, own, progress)


def _refuse_unknown(options: dict, specs) -> None:
    """ValueError for a setting no method of the family takes."""
    known = {o.name for s in specs for o in s.options if o.kind != "fixed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown setting {', '.join(unknown)}; the settings are: {', '.join(sorted(known))}")


def _require_text(value, what: str, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    if not allow_empty and not value.strip():
        raise ValueError(f"{what} is empty: say what the image should show")
