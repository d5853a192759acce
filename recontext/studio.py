"""`Studio`: the one object the tabs, the command line and the tests call.

It validates inputs, holds the model owner, and runs the methods. Every public call
takes plain Python values (PIL images or paths, strings, numbers) and returns a small
result object; none of it knows about the web page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from PIL import Image

from . import editing, images, inversion, jobs, metrics, presets
from . import garment as garments
from .jobs import SHARED, Input
from .progress import Progress, segment, stop, ticker, watched, weighted
from .workbench import Workbench


def check_range(name: str, value):
    """A shared setting checked (ValueError naming it and its range)."""
    return jobs.check_shared(name, value)


@dataclass
class Ran:
    """What `Studio.run` returns: the job, its results in order (Reconstruction, editing.Edit,
    garment.Dressed or a PIL image per run), and notes on runs left out (a garment method
    unavailable on this server)."""

    job: object
    results: list
    notes: list[str] = field(default_factory=list)


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

    def inversion_options(self, method: str, **given) -> dict:
        """An inversion method's own settings on this preset (its authors' defaults unless given)."""
        return inversion.options(method, self.preset.name, **given)

    def edit_settings(self, method: str, edit_method: str, **given) -> dict:
        """`skip` and `source_guidance` of an edit's inversion: those given (checked), else
        the editing method's or the inversion's defaults (their specs')."""
        return editing.inversion_settings(method, edit_method, **given)

    # -- the one path that executes ----------------------------------------------------------
    def run(self, job, progress: Progress | None = None, cancel=None, each=None) -> Ran:
        """Execute `job` (a `jobs.Reconstruct`, `Edit`, `Dress` or `Generate`, checked here).
        `cancel`: anything with `is_set()` (a `threading.Event`), checked at every model step
        and between runs: once set, `jobs.Cancelled` is raised within one step and nothing is
        kept. `each`: what runs each edit of a sweep or comparison (default `self.run`; on
        ZeroGPU a GPU call of its own, priced by that edit's job)."""
        job = job.check()
        stop(cancel)
        progress = watched(progress, cancel)
        if isinstance(job, jobs.Reconstruct):
            return self._reconstruct(job, progress, cancel)
        if isinstance(job, jobs.Edit):
            return self._edit(job, progress, cancel, each)
        if isinstance(job, jobs.Dress):
            return self._dress(job, progress, cancel)
        if isinstance(job, jobs.Generate):
            return Ran(job, [self._generate(job, progress)])
        raise ValueError(f"not a job: {type(job).__name__}")

    def _known(self, options: dict, family) -> None:
        unknown = sorted(set(options) - set(family.names()))
        if unknown:
            raise ValueError(f"options: {', '.join(unknown)} is not a method here; options are "
                             f"{{method: {{option: value}}}} for {', '.join(family.names(self.preset))}")

    def _reconstruct(self, job, progress, cancel) -> Ran:
        methods = job.methods or [self.methods[0]]
        modules = {m: self.method(m) for m in methods}
        self._known(job.options, inversion)
        own = {m: self.inversion_options(m, **job.options.get(m, {})) for m in methods}
        runs = [(m, v) for m in methods for v in job.variants]
        out = []
        for i, (m, v) in enumerate(runs):
            stop(cancel)
            out.append(self._reconstruct_one(job, modules[m], v == "tight", own[m],
                                             segment(progress, i, len(runs))))
        return Ran(job, out)

    def _reconstruct_one(self, job, module, tight, own, progress) -> Reconstruction:
        method, steps = module.SPEC.name, self.preset.steps if job.steps is None else job.steps
        guidance = 1.0 if job.guidance is None else job.guidance
        setup = self.setup(progress)
        start = time.perf_counter()
        with self.models.lock:
            photo = self.prepare(job.image.read())
            notes = photo.notes + self.prompt_notes(job.prompt)
            timesteps, alphas = self.models.levels(steps, photo.latents)
            tick = ticker(progress, 2 * steps, f"{method}{' + tight' if tight else ''}")
            state, z_rec = self.invert(photo, job.prompt, module, tight, job.image_scale, timesteps, alphas,
                                       job.seed, guidance, tick, own)
            notes = notes + list(getattr(state, "notes", []))  # what the method says of its run
            output = self.models.decode(z_rec, f"{method}{' + tight' if tight else ''}")
        result = metrics.reconstruction(photo.image, output, photo.latents, z_rec, photo.vae_roundtrip)
        return Reconstruction(
            image=images.to_size(output, photo.original_size), metrics=result,
            seconds=time.perf_counter() - start, method=method, tight=tight, image_scale=job.image_scale,
            source=photo.image, output=output, notes=notes, setup_seconds=setup)

    def _edit(self, job, progress, cancel, each) -> Ran:
        method = job.method or self.methods[0]
        self.method(method)
        self._known(job.options, _Editing)
        if job.kind == "one" and len(job.variants) == 1:
            return Ran(job, [self._edit_one(job, progress)])
        subs = jobs.edit_runs(job, method, self.edit_methods, editing.inversion_for)
        out = []
        for i, (sub, label) in enumerate(subs):
            stop(cancel)
            part = segment(progress, i, len(subs), label)
            ran = (each or self.run)(sub, progress=part, cancel=cancel)
            out += ran.results
        return Ran(job, out)

    def _edit_one(self, job, progress) -> editing.Edit:
        method = job.method or self.methods[0]
        edit_method = job.edit_method or self.edit_methods[0]
        self.method(method)
        editor = editing.get(edit_method, self.preset)
        guidance = self.preset.guidance if job.guidance is None else job.guidance
        steps = self.preset.steps if job.steps is None else job.steps
        inv = self.inversion_options(method, **job.options.get(method, {}))
        own = editing.own_settings(edit_method, **job.options.get(edit_method, {}))
        self.setup(progress)  # one-off model loading stays out of the edit's seconds
        settings = self.edit_settings(method, edit_method, skip=job.skip, source_guidance=job.source_guidance)
        return editing.edit(self.bench, job.image.read(), job.source, job.target, method, job.variants == ("tight",),
                            job.image_scale, guidance, steps, job.seed, progress, edit_method=editor.SPEC.name,
                            inversion_options=inv, **settings, **own)

    def _dress(self, job, progress, cancel) -> Ran:
        if not self.garment_methods:
            raise ValueError(f"the garment tab needs a UNet (epsilon) preset such as tiny or sdxl; "
                             f"{self.preset.name} is a flow-matching model")
        methods = job.methods or [self.garment_methods[0]]
        modules = {m: garments.get(m, self.preset) for m in methods}
        self._known(job.options, garments)
        own = {m: modules[m].SPEC.settings(self.preset.name, **job.options.get(m, {})) for m in methods}
        steps = self.preset.steps if job.steps is None else job.steps
        guidance = self.preset.guidance if job.guidance is None else job.guidance
        units = [steps + int(garments.work(m, own[m]).get("finetune_steps", 0)) for m in methods]
        out, notes = [], []
        for i, m in enumerate(methods):
            stop(cancel)
            try:
                out.append(garments.dress(self.bench, job.garment.read(), job.prompt, m, steps, job.seed, guidance,
                                          own[m], weighted(progress, sum(units[:i]), units[i], sum(units))))
            except ValueError as e:
                if "unavailable" in str(e) and len(methods) > 1:
                    notes.append(str(e))  # the other methods still run
                    continue
                raise
        return Ran(job, out, notes)

    def _generate(self, job, progress) -> Image.Image:
        guidance = self.preset.guidance if job.guidance is None else job.guidance
        steps = self.preset.steps if job.steps is None else job.steps
        side = self.preset.resolution
        with self.models.lock:
            cond = self.condition(job.prompt, Image.new("RGB", (side, side)), False, 0.0, guidance)
            return self.bench.generate(cond, steps, job.seed, ticker(progress, steps, "generating"))

    # -- the calls of one run each: thin wrappers that build a job --------------------------------
    def reconstruct(self, image, prompt: str = "", method: str | None = None, tight: bool = False,
                    image_scale: float = SHARED["image_scale"].default, steps: int | None = None, seed: int = 0,
                    guidance: float = 1.0, progress: Progress | None = None, **options) -> Reconstruction:
        """Invert a photo with `method` (None: the preset's first) and reconstruct it;
        metrics against the input. `options`: the method's own settings (its spec's); other
        inversion methods' settings are ignored, so one set serves several methods."""
        job = self.reconstruct_job(image, prompt, method, tight, image_scale, steps, seed, guidance, **options)
        return self.run(job, progress).results[0]

    def reconstruct_job(self, image, prompt: str = "", method: str | None = None, tight: bool = False,
                        image_scale: float = SHARED["image_scale"].default, steps: int | None = None,
                        seed: int = 0, guidance: float | None = None, **options) -> jobs.Reconstruct:
        """The `jobs.Reconstruct` of `reconstruct`'s loose arguments (flat `options`)."""
        _refuse_unknown(options, map(inversion.spec, inversion.names()))
        method = method or self.methods[0]
        self.method(method)  # one that does not run here: ValueError naming those that do
        return jobs.Reconstruct(image=Input.of(image), prompt=prompt, methods=[method],
                                variants=jobs.tight_variants(tight), image_scale=image_scale, steps=steps,
                                guidance=guidance, seed=seed, options=_per_method(options, [method], inversion))

    def edit_job(self, image, source_prompt: str, target_prompt: str, kind: str = "one", method: str | None = None,
                 tight: bool = True, image_scale: float = SHARED["image_scale"].default,
                 scales=jobs.SWEEP_SCALES, guidance: float | None = None, steps: int | None = None, seed: int = 0,
                 edit_method: str | None = None, variants=None, **options) -> jobs.Edit:
        """The `jobs.Edit` of the loose arguments the calls below take (flat `options`: each
        method takes its own; `skip` and `source_guidance` are the job's)."""
        _refuse_unknown({k: v for k, v in options.items() if k not in ("skip", "source_guidance")},
                        [*map(inversion.spec, inversion.names()), *map(editing.spec, editing.names())])
        skip, source_guidance = options.pop("skip", None), options.pop("source_guidance", None)
        return jobs.Edit(image=Input.of(image), source=source_prompt, target=target_prompt, kind=kind,
                         method=method, edit_method=edit_method,
                         variants=variants or jobs.tight_variants(tight), image_scale=image_scale,
                         scales=tuple(scales) if kind == "sweep" else (), guidance=guidance, steps=steps,
                         seed=seed, skip=skip, source_guidance=source_guidance,
                         options=_per_method(options, [*inversion.names(), *editing.names()], _Editing))

    def edit(self, image, source_prompt: str, target_prompt: str, method: str | None = None,
             tight: bool = True, image_scale: float = SHARED["image_scale"].default, guidance: float | None = None,
             steps: int | None = None, seed: int = 0, progress: Progress | None = None,
             edit_method: str | None = None, skip: float | None = None,
             source_guidance: float | None = None, **options) -> editing.Edit:
        """Invert the photo under `source_prompt` (cached), then edit toward `target_prompt`
        with `edit_method` (None: the preset's first, the baseline). `options`: the editing
        method's own settings and the inversion method's (their specs'); settings left None
        take their authors' defaults, as do `skip` and `source_guidance` (the inversion's
        for an edit). Other methods' settings are ignored, so one set serves several methods.
        `guidance` None: the preset's."""
        job = self.edit_job(image, source_prompt, target_prompt, "one", method, tight, image_scale, (), guidance,
                            steps, seed, edit_method, skip=skip, source_guidance=source_guidance, **options)
        return self.run(job, progress).results[0]

    def edit_sweep(self, image, source_prompt: str, target_prompt: str,
                   scales=editing.SWEEP_SCALES, method: str | None = None, guidance: float | None = None,
                   steps: int | None = None, seed: int = 0,
                   progress: Progress | None = None, run=None, **settings) -> list[editing.Edit]:
        """Tight edits at several image scales: one inversion per scale (each scale
        conditions its own), the photo's image embeddings computed once for all.
        `settings`: `edit_method` and its options, as for `edit`. `run`: what runs each
        edit's job (default `self.run`; on ZeroGPU, a GPU call of its own)."""
        if isinstance(scales, (int, float)) or not list(scales):
            raise ValueError("image scales: give at least one value")
        edit_method = settings.pop("edit_method", None)
        job = self.edit_job(image, source_prompt, target_prompt, "sweep", method, True, scales=scales,
                            guidance=guidance, steps=steps, seed=seed, edit_method=edit_method, **settings)
        return self.run(job, progress, each=run).results

    def edit_compare(self, image, source_prompt: str, target_prompt: str, method: str | None = None,
                     image_scale: float = SHARED["image_scale"].default, guidance: float | None = None,
                     steps: int | None = None, seed: int = 0, progress: Progress | None = None, run=None,
                     **settings) -> list[editing.Edit]:
        """The same edit by every editing method, tight and plain. Each method runs on the
        inversion its spec pairs it with (its paper's), the others on `method`. `settings` as
        for `edit` (each method takes the ones that are its own); `run` as for `edit_sweep`."""
        settings.pop("edit_method", None)
        job = self.edit_job(image, source_prompt, target_prompt, "compare", method, image_scale=image_scale,
                            guidance=guidance, steps=steps, seed=seed, variants=jobs.VARIANTS, **settings)
        return self.run(job, progress, each=run).results

    def generate(self, prompt: str, steps: int | None = None, guidance: float | None = None, seed: int = 0,
                 progress: Progress | None = None) -> Image.Image:
        """Plain text-to-image on the shared pipeline (no image conditioning); `guidance`
        None: the preset's."""
        return self.run(jobs.Generate(prompt=prompt, steps=steps, guidance=guidance, seed=seed), progress).results[0]

    def dress(self, garment_image, prompt: str, method: str | None = None, steps: int | None = None,
              seed: int = 0, guidance: float | None = None, progress: Progress | None = None,
              **options) -> garments.Dressed:
        """Generate `prompt` wearing `garment` with `method` (None: the preset's first);
        `options`: the method's own settings (its spec's: scales, steps, checkpoint...);
        other garment methods' settings are ignored, so one set serves several methods.
        `guidance` None: the preset's."""
        job = self.dress_job(garment_image, prompt, method, steps, seed, guidance, **options)
        return self.run(job, progress).results[0]

    def dress_job(self, garment_image, prompt: str, method: str | None = None, steps: int | None = None,
                  seed: int = 0, guidance: float | None = None, **options) -> jobs.Dress:
        """The `jobs.Dress` of `dress`'s loose arguments (flat `options`)."""
        if not self.garment_methods:
            return jobs.Dress(garment=Input.of(garment_image), prompt=prompt)  # Studio.run says why not
        method = method or self.garment_methods[0]
        _refuse_unknown(options, [garments.spec(m) for m in garments.names()])
        return jobs.Dress(garment=Input.of(garment_image), prompt=prompt, methods=[method], steps=steps,
                          guidance=guidance, seed=seed, options=_per_method(options, [method], garments))


class _Editing:  # the inversion and editing methods together: an edit job's options name either
    @staticmethod
    def names(preset=None):
        return [*inversion.names(preset), *editing.names(preset)]

    @staticmethod
    def spec(name):
        return (inversion.spec if name in inversion.names() else editing.spec)(name)


def _per_method(options: dict, methods, family) -> dict:
    """Flat settings ({option: value}, each method taking its own) as a job's options
    ({method: {option: value}}, for `methods`; settings left None are left out)."""
    out = {}
    for m in methods:
        own = {k: v for k, v in family.spec(m).own(options).items() if v is not None}
        if own:
            out[m] = own
    return out


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
