"""What a request costs on a GPU, and the ZeroGPU duration its handler asks for.

A request's work is counted from its arguments: model evaluations (one latent through the
UNet or transformer; a guided call counts two), VAE encodes and decodes, training steps
(the fine-tuned LoRA), and a fixed cost per run (metrics, conversions on the CPU). Each
count is priced with the preset's calibration: seconds measured on a named device. The
handler asks ZeroGPU for `MARGIN` times the estimate, within ZeroGPU's limit.

ZeroGPU's hardware may differ from the device a calibration was measured on (its docs
have named an H200 slice and an RTX Pro 6000 Blackwell): `bench/gpu.py` prints requested
over measured for every handler, so a run there says whether the margin still holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from . import editing, inversion

MARGIN = 1.6      # requested / estimated: requested / measured stays within 1.2-2 (see README)
LIMIT_S = 300     # the longest duration ZeroGPU grants one call (an org member's answer; undocumented)
FLOOR_S = 5       # never ask for less than this


@dataclass(frozen=True)
class Calibration:
    """Seconds of one unit of work on `device` at the preset's resolution."""

    device: str
    date: str
    source: str                # where the figures come from
    call_s: float              # one UNet / transformer evaluation, batch 1 (a guided call: 2)
    guided_call_s: float       # one guided call (batch 2), for reference
    overhead: float            # the studio's time over diffusers' own call for the same evaluations
    finetune_step_s: float     # one step of the fine-tuned LoRA baseline
    hyperlora_step_s: float    # one HyperLoRA training step
    encode_s: float            # one VAE encode
    decode_s: float            # one VAE decode
    run_s: float               # per run: metrics and conversions on the CPU
    load_s: float              # loading the base model (the first request of a process)
    measured: tuple = ()       # which of the figures were measured (the others are derived or estimated)

    @property
    def eval_s(self) -> float:
        return self.call_s * self.overhead


# H200, 2026-12-04 (`../shared/gpu` of the project's first CUDA run; bench/gpu.py at 25 steps):
# StableDiffusionXLPipeline.__call__ made 100 evaluations at 1024² in 5.05 s; a guided call
# (13.58 TFLOP) ran at 129 TFLOP/s; the studio was 1.33x the reference for DDIM; HyperLoRA
# trained at 0.77 steps/s; 200 fine-tune steps took about 110 s of the garment request
# (derived: the request's time less its sampling). VAE times and per-run CPU work were not
# measured: estimated from the reconstructions' time beyond their UNet evaluations.
_SDXL_H200 = Calibration(
    device="NVIDIA H200 (float16)", date="2026-12-04", source="first CUDA run, SDXL shape mirror",
    call_s=0.0505, guided_call_s=0.105, overhead=1.33, finetune_step_s=0.55, hyperlora_step_s=1.30,
    encode_s=0.2, decode_s=0.4, run_s=1.0, load_s=5.0,
    measured=("call_s", "guided_call_s", "overhead", "hyperlora_step_s", "load_s"))

CALIBRATION = {
    "sdxl": _SDXL_H200,
    # scaled from the H200 figures by the work per evaluation (pixels; SD 1.5's UNet is about
    # a third of SDXL's per pixel): estimates, not measured
    "sdxl-turbo": Calibration(**{**asdict(_SDXL_H200), "source": "sdxl's H200 figures x (512/1024)^2",
                                 "call_s": 0.0505 / 4, "guided_call_s": 0.105 / 4, "finetune_step_s": 0.55 / 4,
                                 "hyperlora_step_s": 1.30 / 4, "encode_s": 0.05, "decode_s": 0.1,
                                 "measured": ()}),
    "sd15": Calibration(**{**asdict(_SDXL_H200), "source": "sdxl's H200 figures x (512/1024)^2 x 1/3",
                           "call_s": 0.0505 / 12, "guided_call_s": 0.105 / 12, "finetune_step_s": 0.55 / 12,
                           "hyperlora_step_s": 1.30 / 12, "encode_s": 0.05, "decode_s": 0.1, "measured": ()}),
    # FLUX.1-dev's 12 B transformer at 1024² (4096 image + 512 text tokens): ~110 TFLOP a call,
    # about 8x an SDXL evaluation; guidance is an input (one evaluation per step). Estimated.
    "flux": Calibration(**{**asdict(_SDXL_H200), "source": "estimated from FLOPs (~8x an SDXL evaluation)",
                           "call_s": 0.4, "guided_call_s": 0.8, "finetune_step_s": 2.0, "hyperlora_step_s": 4.0,
                           "encode_s": 0.3, "decode_s": 0.6, "load_s": 20.0, "measured": ()}),
    # the tiny presets on this project's 2-core CPU machine, from bench/gpu.py --smoke's paths (with
    # other jobs on the machine): only for a CPU Space, which has no ZeroGPU
    "tiny": Calibration(device="2-core CPU (float32)", date="2026-12-04", source="bench/gpu.py --smoke",
                        call_s=0.02, guided_call_s=0.04, overhead=1.0, finetune_step_s=0.18,
                        hyperlora_step_s=0.26, encode_s=0.05, decode_s=0.1, run_s=0.7, load_s=5.0),
}
CALIBRATION["tiny-flux"] = CALIBRATION["tiny"]


@dataclass
class Work:
    """The units of work a request makes."""

    evaluations: int = 0
    encodes: int = 0
    decodes: int = 0
    finetune_steps: int = 0
    runs: int = 0

    def __add__(self, other: "Work") -> "Work":
        return Work(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def seconds(self, c: Calibration) -> float:
        return (self.evaluations * c.eval_s + self.encodes * c.encode_s + self.decodes * c.decode_s
                + self.finetune_steps * c.finetune_step_s + self.runs * c.run_s)


def _rows(preset, guidance: float) -> int:
    """Latents evaluated per step under `guidance`: 2 with classifier-free guidance, 1 for a
    guidance-distilled model (FLUX.1-dev takes guidance as an input)."""
    return 2 if guidance > 1.0 and preset.pipeline != "flux" else 1


def inversion_cost(preset, method: str, options: dict | None = None) -> int:
    """Evaluations per step of inverting and reconstructing with `method` (guidance 1), at
    its settings on this preset (`options` given, its own defaults otherwise)."""
    return inversion.cost(method, inversion.options(method, preset.name, **(options or {})))


def reconstruct(preset, methods, variants, steps: int, options: dict | None = None,
                guidance: float = 1.0) -> Work:
    """The inversion tab: each method (at its `options`: {method: {option: value}}), plain
    and / or tight, on one photo."""
    runs = [(m, v) for m in methods for v in variants]
    rows = _rows(preset, guidance)
    return (Work(encodes=1, decodes=1)  # the photo and its VAE round trip, once
            + sum((Work(evaluations=inversion_cost(preset, m, (options or {}).get(m)) * rows * steps,
                        decodes=1, runs=1) for m, _ in runs), Work()))


def _edit_setting(method: str, edit_method: str, steps: int, skip, source_guidance):
    """(steps kept after skipping the noisiest, source guidance) of an edit's inversion."""
    d = editing.inversion_settings(method, edit_method, skip=skip, source_guidance=source_guidance)
    return max(1, steps - round(d["skip"] * steps)), d["source_guidance"]


def edit(preset, method: str, edit_method: str, steps: int, guidance: float | None = None,
         skip: float | None = None, source_guidance: float | None = None, encode: bool = True,
         invert: bool = True, options: dict | None = None) -> Work:
    """One edit: invert and rebuild under the source prompt (unless `invert` is False: the
    inversion is cached), then edit: the target branch (at the edit's guidance, or unguided)
    and, for two-branch methods, the source branch."""
    kept, source_guidance = _edit_setting(method, edit_method, steps, skip, source_guidance)
    guidance = preset.guidance if guidance is None else guidance
    spec = editing.spec(edit_method)
    src = _rows(preset, source_guidance)
    per_step = (_rows(preset, guidance) if spec.target_guidance else 1) + (src if spec.calls_per_step() > 1 else 0)
    inverting = inversion_cost(preset, method, (options or {}).get(method)) * kept * src if invert else 0
    return Work(evaluations=inverting + per_step * kept, encodes=int(encode), decodes=1 + int(invert) + int(encode),
                runs=1)


def sweep(preset, method: str, edit_method: str, steps: int, scales, **settings) -> Work:
    """Tight edits at each scale: one inversion per scale."""
    return sum((edit(preset, method, edit_method, steps, encode=i == 0, **settings)
                for i in range(len(scales))), Work())


def compare(preset, method: str, steps: int, variants=(True, False), **settings) -> Work:
    """Every editing method, tight and plain, each on the inversion its spec pairs it with
    (else `method`); editing methods on the same inversion share it (the inversion cache)."""
    work, inverted = Work(), set()
    for m in editing.names(preset):
        on = editing.inversion_for(m, method)
        for tight in variants:
            key = (on, tight, _edit_setting(on, m, steps, settings.get("skip"), settings.get("source_guidance")))
            work += edit(preset, on, m, steps, encode=not work.runs, invert=key not in inverted, **settings)
            inverted.add(key)
    return work


def dress(preset, methods, steps: int, settings: dict | None = None, guidance: float = 7.5) -> Work:
    """The garment tab: each method generates once, at its spec's rows per step (2 under
    classifier-free guidance), after its own adapting work at its settings (`settings`:
    {method: {option: value}}, defaults otherwise): a fine-tune's steps, an extra model's
    encodes."""
    from . import garment

    work = Work()
    for m in methods:
        rows = garment.spec(m).calls_per_step() if guidance > 1.0 else 1
        work += Work(evaluations=rows * steps, decodes=1, runs=1)
        work += Work(**garment.work(m, (settings or {}).get(m)))
    return work


def generate(preset, steps: int, guidance: float | None = None) -> Work:
    return Work(evaluations=_rows(preset, preset.guidance if guidance is None else guidance) * steps,
                decodes=1, runs=1)


def work(job, preset) -> Work:
    """The work of `job` (a `jobs` dataclass, checked) on `preset`, counted from its own
    fields: methods, variants, steps, guidance, scales and each method's options."""
    from . import garment, jobs

    job = job.check()
    steps = preset.steps if job.steps is None else job.steps
    if isinstance(job, jobs.Reconstruct):
        return reconstruct(preset, job.methods or inversion.names(preset)[:1], job.variants, steps, job.options,
                           1.0 if job.guidance is None else job.guidance)
    if isinstance(job, jobs.Generate):
        return generate(preset, steps, job.guidance)
    if isinstance(job, jobs.Dress):
        methods = job.methods or garment.names(preset)[:1]
        return dress(preset, methods, steps, job.options,
                     preset.guidance if job.guidance is None else job.guidance)
    method = job.method or inversion.names(preset)[0]
    settings = {"guidance": job.guidance, "skip": job.skip, "source_guidance": job.source_guidance,
                "options": job.options}
    if job.kind == "compare":
        return compare(preset, method, steps, [v == "tight" for v in sorted(job.variants, key=lambda v: v != "tight")],
                       **settings)
    edit_method = job.edit_method or editing.names(preset)[0]
    runs = len(job.scales) if job.kind == "sweep" else len(job.variants)
    return sum((edit(preset, method, edit_method, steps, encode=i == 0, **settings) for i in range(runs)), Work())


def calls(job, preset) -> list:
    """The GPU calls `job` makes on ZeroGPU: a sweep or a comparison runs each edit as a call
    (a job) of its own, sized for it; any other job is one call."""
    from . import jobs

    job = job.check()
    if not isinstance(job, jobs.Edit) or job.kind == "one":
        return [job]
    method = job.method or inversion.names(preset)[0]
    return [sub for sub, _ in jobs.edit_runs(job, method, editing.names(preset), editing.inversion_for)]


def seconds(job, preset, loaded: bool = True) -> float:
    """The estimated seconds of `job`'s longest GPU call (`calls`)."""
    return max(estimate(preset, work(c, preset), loaded) for c in calls(job, preset))


def estimate(preset, work: Work, loaded: bool = True) -> float:
    """Seconds `work` takes on `preset`'s calibrated device (plus loading, when not loaded)."""
    c = CALIBRATION.get(preset.name, _SDXL_H200)
    return work.seconds(c) + (0.0 if loaded else c.load_s)


def requested(estimated_s: float) -> int:
    """The duration a handler asks ZeroGPU for: `MARGIN` x the estimate, within the limit."""
    return int(min(LIMIT_S, max(FLOOR_S, math.ceil(MARGIN * estimated_s))))


def fits(estimated_s: float) -> bool:
    """Whether a request fits one ZeroGPU call with the margin."""
    return MARGIN * estimated_s <= LIMIT_S


def page_jobs(preset) -> list[tuple[str, object]]:
    """(handler, the job it runs) for every GPU handler at the page's defaults, and the
    garment handler with every method."""
    from . import garment, jobs

    photo = jobs.Input(path="photo.png")
    edit = jobs.Edit(image=photo, target="an edit")  # the edit tab's defaults: tight, the first methods
    out = [("reconstruct", jobs.Reconstruct(image=photo, methods=inversion.names(preset), variants=jobs.VARIANTS)),
           ("edit", edit), ("edit_sweep", jobs.replace(edit, kind="sweep")),
           ("edit_compare", jobs.replace(edit, kind="compare", variants=jobs.VARIANTS))]
    if garment.names(preset):
        garment_photo = jobs.Input(path="garment.png")
        out += [("dress", jobs.Dress(garment=garment_photo, prompt="a person", methods=garment.page_methods(preset))),
                ("dress (every method)", jobs.Dress(garment=garment_photo, prompt="a person",
                                                    methods=garment.names(preset)))]
    return out


def page_requests(preset) -> list[dict]:
    """Every GPU handler at the page's defaults, and the garment handler with every method:
    [{"handler", "calls", "requested_s", "estimated_s", "fits"}], the figures of its longest GPU
    call (sweeps and comparisons run each edit as a call of its own), priced from the job the
    handler runs. What `python -m recontext zerogpu` prints."""
    out = []
    for name, job in page_jobs(preset):
        est = seconds(job, preset)
        out.append({"handler": name, "calls": len(calls(job, preset)), "requested_s": requested(est),
                    "estimated_s": round(est, 2), "fits": fits(est)})
    return out
