"""The device check: every path of every tab on CUDA at the `sdxl` preset's true shapes,
then speed, FLOP/s, memory and ZeroGPU durations.

Random weights with SDXL's exact architecture (the shape mirror of
`python -m recontext fixtures shapes`, built into the cache folder when missing), 1024 px,
float16, CUDA. Weights change neither speed nor memory, so these are the figures of the
real preset. Imports no gradio (the GPU machine has none). Prints, in order:

0. every path, each checked to give a finite, non-constant picture (or finite training
   losses): each inversion method with and without tight, each editing method with and
   without tight, a sweep, a comparison, plain generation, each garment method, HyperLoRA
   training steps; a path that fails is reported and the run goes on;
1. seconds for a 50-step inversion + reconstruction per method, with and without tight,
   beside diffusers' own `StableDiffusionXLPipeline.__call__` making the same number of UNet
   evaluations at the same latent shape (warmed up, median of 5; neither side's seconds
   include the studio's CPU metrics), and `gpu overhead ratio: X` (goal <= 1.05);
2. achieved UNet TFLOP/s of a guided call (FLOPs from `FlopCounterMode`) and its share of
   the GPU's dense float16 peak (goal >= 25%, stretch 45%): SDPA, channels_last, fused QKV
   with IP-Adapter kept (`ModelOwner.fuse_qkv`), and torch.compile with `--compile` (its
   compile time reported);
3. peak VRAM (`torch.cuda.max_memory_allocated`) of each tab's heaviest request at the
   defaults, the garment tab with every method (goal <= 16 GB), and the ZeroGPU duration each
   handler asks for (`recontext.zerogpu`) over the measured time (goal 1.2-2);
4. HyperLoRA training steps per second at 1024 and 512 px, with the peak memory (goal <= 16 GB).

    python bench/gpu.py [--steps 50] [--only paths,overhead,flops,memory,train] [--json FILE]
    python bench/gpu.py --smoke      # the same paths on the CPU with the tiny preset (2-5 min)

The smoke run's figures mean nothing beyond "every path runs and gives a picture"; it
exists so the script can be checked without a GPU.
"""

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = os.path.join(ROOT, "assets", "photos", "chelsea.png")
GARMENT = os.path.join(ROOT, "assets", "garments", "green-plain-t-shirt.png")

# Dense (no sparsity) float16 / bfloat16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s.
PEAKS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
         "H200": 989.4, "A100": 312.0, "L40S": 362.05, "L4": 121.0, "A10G": 70.0, "A10": 125.0}


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    for key in sorted(PEAKS, key=len, reverse=True):
        if key in name:
            return PEAKS[key]
    return None


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, *args, **kwargs):
    sync()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - start


def reset_peak():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# -- 0. every path ------------------------------------------------------------------------------
def pictures(result) -> list:
    """The pictures a path returned (a result object, a list of them, or an image)."""
    if isinstance(result, Image.Image):
        return [result]
    if isinstance(result, list):
        return [p for r in result for p in pictures(r)]
    return [getattr(result, "image")] + ([result.reconstruction] if hasattr(result, "reconstruction") else [])


def check_path(name: str, run, rows: list, losses: bool = False) -> None:
    """Run one path; record whether it ran, whether its outputs are finite and not constant."""
    reset_peak()
    try:
        out, seconds = timed(run)
        if losses:
            finite = bool(out) and all(np.isfinite(out))
        else:
            arrays = [np.asarray(p, dtype=np.float64) for p in pictures(out)]
            finite = bool(arrays) and all(np.isfinite(a).all() and a.std() > 1.0 for a in arrays)
        row = {"name": name, "ok": True, "finite": finite, "seconds": round(seconds, 3), "peak_gb": round(peak_gb(), 2)}
    except Exception as e:  # a failing path is a finding: report it, go on with the others
        row = {"name": name, "ok": False, "finite": False, "seconds": None, "peak_gb": round(peak_gb(), 2),
               "error": f"{type(e).__name__}: {str(e)[:300]}"}
    rows.append(row)
    status = "ok " if row["ok"] and row["finite"] else "FAIL"
    detail = row.get("error") or ("" if row["finite"] else "non-finite or constant output")
    print(f"  {status} {name:44s} {row['seconds'] or 0:7.2f} s  peak {row['peak_gb']:5.1f} GB  {detail}", flush=True)


def bench_paths(studio, photo, garment, steps: int, hyperlora: str, train_side: int) -> list:
    from recontext.garment import METHODS
    from recontext.garment.train import synthetic_pairs, train_hyperlora

    rows, s = [], studio
    for method in s.methods:
        for tight in (False, True):
            check_path(f"reconstruct {method}{' + tight' if tight else ''}",
                       lambda: s.reconstruct(photo, "a cat", method, tight, 0.4, steps), rows)
    for edit_method in s.edit_methods:
        on = "edit-friendly" if edit_method == "ledits++" else s.methods[0]
        for tight in (False, True):
            check_path(f"edit {edit_method} on {on}{' + tight' if tight else ''}",
                       lambda: s.edit(photo, "a cat", "a tiger", on, tight, 0.4, steps=steps,
                                      edit_method=edit_method), rows)
    check_path("edit sweep (3 scales)", lambda: s.edit_sweep(photo, "a cat", "a tiger", [0.0, 0.4, 0.8],
                                                              steps=steps), rows)
    check_path("edit compare", lambda: s.edit_compare(photo, "a cat", "a tiger", steps=steps), rows)
    check_path("generate", lambda: s.generate("a cat on a sofa", steps=steps), rows)
    for method in METHODS:
        check_path(f"dress {method}", lambda: s.dress(garment, "a person on a beach", method, steps=steps,
                                                      finetune_steps=20, checkpoint=hyperlora), rows)
    with tempfile.TemporaryDirectory() as out:
        check_path("HyperLoRA training (3 steps)", lambda: train_hyperlora(
            s.models, synthetic_pairs(2, train_side), out, steps=3, save_every=10**9, progress=False), rows,
            losses=True)
    return rows


# -- 1. overhead against diffusers' own pipeline --------------------------------------------
def ours(studio, photo, method: str, tight: bool, steps: int) -> tuple[float, int]:
    """The studio's inversion + reconstruction + decode, without its CPU metrics:
    (seconds, UNet evaluations)."""
    m = studio.models
    prepared = studio.prepare(photo)
    timesteps, alphas = m.levels(steps, prepared.latents)
    before = m.unet_evaluations()
    sync()
    start = time.perf_counter()
    _, z = studio.invert(prepared, "a cat", studio.method(method), tight, 0.4, timesteps, alphas, 0,
                         options=studio.inversion_options(method))
    m.decode(z)
    sync()
    return time.perf_counter() - start, m.unet_evaluations() - before


def reference(studio, photo, tight: bool, evaluations: int) -> float:
    """`StableDiffusionXLPipeline.__call__` on the same pipeline for `evaluations` UNet calls
    (guidance 1: one call per step) at the photo's working size, with its IP-Adapter
    embeddings when tight."""
    m = studio.models
    prepared = studio.prepare(photo)
    width, height = prepared.image.size
    with m.lock:
        cond = studio.condition("a cat", prepared.image, tight, 0.4 if tight else 0.0)
        _, seconds = timed(m.pipe, "a cat", num_inference_steps=evaluations, guidance_scale=1.0,
                           height=height, width=width, ip_adapter_image_embeds=cond.added["image_embeds"],
                           generator=torch.Generator().manual_seed(0))
    return seconds


def bench_overhead(studio, photo, steps: int, repeats: int) -> dict:
    rows, ratios = [], []
    for method in studio.methods:
        for tight in (False, True):
            ours(studio, photo, method, tight, 2)  # warm-up (allocator, kernels)
            mine, ref = [], []
            for _ in range(repeats):
                seconds, evaluations = ours(studio, photo, method, tight, steps)
                mine.append(seconds)
                ref.append(reference(studio, photo, tight, evaluations))
            ratio = statistics.median(mine) / statistics.median(ref)
            ratios.append(ratio)
            rows.append({"method": method, "tight": tight, "seconds": statistics.median(mine),
                         "reference_seconds": statistics.median(ref), "ratio": ratio})
            print(f"  {method:14s} tight={tight!s:5s} {rows[-1]['seconds']:7.2f} s  reference "
                  f"{rows[-1]['reference_seconds']:7.2f} s  ratio {ratio:.3f}", flush=True)
    print(f"gpu overhead ratio: {max(ratios):.3f}  (worst method; goal <= 1.05)", flush=True)
    return {"rows": rows, "ratio": max(ratios)}


# -- 2. UNet FLOP/s ---------------------------------------------------------------------------
def unet_inputs(studio, batch: int):
    m = studio.models
    side = studio.preset.resolution // m.pipe.vae_scale_factor
    cond = m.with_image(m.text_cond("a cat", (studio.preset.resolution,) * 2, 7.5 if batch == 2 else 1.0), None)
    x = torch.randn(batch, m.pipe.unet.config.in_channels, side, side, device=m.device, dtype=m.dtype)
    t = torch.tensor(500, device=m.device)
    return x, t, dict(encoder_hidden_states=cond.text, added_cond_kwargs=cond.added, return_dict=False)


def unet_flops(unet, x, t, kwargs) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, t, **kwargs)
    return counter.get_total_flops()


def unet_tflops(unet, x, t, kwargs, flops: int, calls: int) -> float:
    with torch.no_grad():
        for _ in range(3):
            unet(x, t, **kwargs)
        _, seconds = timed(lambda: [unet(x, t, **kwargs) for _ in range(calls)])
    return flops * calls / seconds / 1e12


def bench_flops(studio, calls: int, peak: float | None, compile_it: bool) -> dict:
    m = studio.models
    unet = m.pipe.unet
    m.set_image_scale(0.4)  # the image branch on, as in a tight run
    x, t, kwargs = unet_inputs(studio, batch=2)  # a guided call, as editing and generation make
    flops = unet_flops(unet, x, t, kwargs)
    print(f"UNet FLOPs per guided call (batch 2): {flops / 1e12:.3g} TFLOP", flush=True)
    out = {"flops_per_call": flops}

    def report(name, fn):
        try:
            tf = fn()
        except Exception as e:  # a variant the installed versions refuse: say so
            print(f"  {name:28s} not available: {type(e).__name__}: {str(e)[:120]}", flush=True)
            out[name] = None
            return
        share = f"{100 * tf / peak:5.1f}% of {peak:g} peak" if peak else "peak unknown (--peak-tflops)"
        print(f"  {name:28s} {tf:7.3g} TFLOP/s  {share}", flush=True)
        out[name] = tf

    report("sdpa (default processors)", lambda: unet_tflops(unet, x, t, kwargs, flops, calls))
    m.fuse_qkv(True)
    report("+ fused QKV (IP-Adapter kept)", lambda: unet_tflops(unet, x, t, kwargs, flops, calls))
    unet.to(memory_format=torch.channels_last)
    report("+ channels_last", lambda: unet_tflops(unet, x, t, kwargs, flops, calls))
    if compile_it:
        compiled = torch.compile(unet, mode="max-autotune-no-cudagraphs", fullgraph=False)
        _, seconds = timed(lambda: compiled(x, t, **kwargs))
        print(f"  torch.compile: first call (compiling) {seconds:.1f} s", flush=True)
        out["compile_seconds"] = seconds
        report("+ torch.compile", lambda: unet_tflops(compiled, x, t, kwargs, flops, calls))
    unet.to(memory_format=torch.contiguous_format)
    m.fuse_qkv(False)
    m.set_image_scale(0.0)
    return out


# -- 3. peak memory and ZeroGPU durations per tab ---------------------------------------------
def bench_tabs(studio, photo, garment, steps: int, hyperlora: str) -> list:
    from recontext import editing, garment as garments, zerogpu
    from recontext.cache import LRU

    p, methods = studio.preset, studio.methods
    requests = [
        (f"inversion: {len(methods)} methods x (plain, tight)", lambda: [
            studio.reconstruct(photo, "a cat", m, tight, 0.4, steps) for m in methods for tight in (False, True)],
         [zerogpu.reconstruct(p, methods, ("plain", "tight"), steps)]),
        ("edit: renoise + tight", lambda: studio.edit(photo, "a cat", "a tiger", "renoise", True, 0.4, 7.5, steps),
         [zerogpu.edit(p, "renoise", "regenerate", steps, 7.5)]),
        (f"edit sweep: {len(editing.SWEEP_SCALES)} scales (a GPU call each)", lambda: studio.edit_sweep(
            photo, "a cat", "a tiger", steps=steps),
         [zerogpu.edit(p, methods[0], "regenerate", steps, encode=i == 0) for i in range(len(editing.SWEEP_SCALES))]),
        ("garment: every method", lambda: [
            studio.dress(garment, "a person on a beach", m, steps=steps, checkpoint=hyperlora) for m in garments.METHODS],
         [zerogpu.dress(p, garments.METHODS, steps)]),
    ]
    rows = []
    for name, run, calls in requests:
        studio.inversion_cache = LRU(8)  # every request inverts afresh
        studio.garment_cache = LRU(16)
        reset_peak()
        _, seconds = timed(run)
        asked = sum(zerogpu.requested(zerogpu.estimate(p, w)) for w in calls)
        estimated = sum(zerogpu.estimate(p, w) for w in calls)
        rows.append({"request": name, "seconds": seconds, "peak_gb": peak_gb(), "estimated_s": estimated,
                     "zerogpu_seconds": asked, "requested_over_measured": asked / seconds})
        r = rows[-1]
        print(f"  {name:48s} {seconds:7.1f} s  peak {r['peak_gb']:5.1f} GB  estimated {estimated:6.1f} s  "
              f"ZeroGPU asks {asked} s ({r['requested_over_measured']:.2f}x; goal 1.2-2)", flush=True)
    return rows


# -- 4. HyperLoRA training ----------------------------------------------------------------------
def bench_training(studio, sides, steps: int) -> list:
    from recontext.garment.train import synthetic_pairs, train_hyperlora

    rows = []
    models = studio.models
    original = studio.preset
    for side in sides:
        models.preset = studio.preset = dataclasses.replace(original, resolution=side)
        pairs = synthetic_pairs(4, side)
        with tempfile.TemporaryDirectory() as out:
            train_hyperlora(models, pairs, out, steps=1, save_every=10**9, progress=False)  # warm-up
            reset_peak()
            _, seconds = timed(lambda: train_hyperlora(models, pairs, os.path.join(out, "b"), steps=steps,
                                                       save_every=10**9, progress=False))
        rows.append({"side": side, "steps_per_second": steps / seconds, "peak_gb": peak_gb()})
        print(f"  HyperLoRA training at {side} px: {steps / seconds:.2f} steps/s, peak {peak_gb():.1f} GB "
              "(goal <= 16 GB)", flush=True)
    models.preset = studio.preset = original
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50, help="steps of the overhead and memory figures")
    ap.add_argument("--path-steps", type=int, default=10, help="steps of each path's check")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--preset", default="sdxl", help="sdxl (default), sd15 or sdxl-turbo: the shape mirror to build "
                    "and run (flux: give a FLUX.1-dev mirror with --models-dir)")
    ap.add_argument("--models-dir", default=None, help="default: the shape mirror in the cache folder")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense fp16 peak")
    ap.add_argument("--vae-tiling", action="store_true", help="decode in tiles (less memory)")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (minutes)")
    ap.add_argument("--only", default="paths,overhead,flops,memory,train")
    ap.add_argument("--json", default=None, help='also write the figures to this file ({"paths": [...], ...})')
    ap.add_argument("--smoke", action="store_true", help="the tiny preset on the CPU: check the script runs")
    args = ap.parse_args()

    from recontext import Studio, presets, zerogpu
    from recontext.garment.hyperlora import HyperLoRA, HyperLoRAConfig, target_modules
    from recontext.logs import quiet_libraries

    quiet_libraries()
    if args.smoke:
        args.steps, args.path_steps, args.repeats = 3, 3, 1
        studio = Studio("tiny")
    elif not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs CUDA (or --smoke to check the script on a CPU)")
    else:
        from recontext.fixtures import build_shapes

        root = args.models_dir or build_shapes(os.path.join(presets.cache_dir(), "shapes"), [args.preset])
        os.environ["RECONTEXT_MODELS_DIR"] = root
        studio = Studio(args.preset)
    _, load_seconds = timed(lambda: studio.models.pipe)
    if args.vae_tiling:
        studio.models.pipe.vae.enable_tiling()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run)"
    side = studio.preset.resolution
    print(f"device: {device}; {studio.preset.name} at {side} px, {studio.models.dtype}, loaded in "
          f"{load_seconds:.1f} s", flush=True)
    photo = Image.open(PHOTO).convert("RGB")
    garment = Image.open(GARMENT).convert("RGB")
    hyper_dir = None
    if not studio.preset.flow:
        unet = studio.models.pipe.unet
        hyper_dir = tempfile.mkdtemp(prefix="hyperlora-")
        torch.manual_seed(0)
        HyperLoRA(HyperLoRAConfig([list(m) for m in target_modules(unet)],
                                  studio.models.pipe.image_encoder.config.hidden_size,
                                  studio.preset.name)).save(hyper_dir)

    only = set(args.only.split(","))
    figures = {"device": device, "preset": studio.preset.name, "resolution": side, "steps": args.steps,
               "calibration": dataclasses.asdict(zerogpu.CALIBRATION[studio.preset.name])}
    if "paths" in only:
        print("\n0. every path: finite, not constant", flush=True)
        figures["paths"] = bench_paths(studio, photo, garment, args.path_steps, hyper_dir,
                                       64 if args.smoke else 512)
        bad = [r["name"] for r in figures["paths"] if not (r["ok"] and r["finite"])]
        print(f"paths ok: {len(figures['paths']) - len(bad)} of {len(figures['paths'])}"
              + (f"; failed: {', '.join(bad)}" if bad else ""), flush=True)
    if "overhead" in only and not studio.preset.flow:
        print("\n1. inversion + reconstruction against the diffusers pipeline's own call", flush=True)
        figures["overhead"] = bench_overhead(studio, photo, args.steps, args.repeats)
    if "flops" in only and not studio.preset.flow:
        print("\n2. UNet throughput", flush=True)
        figures["flops"] = bench_flops(studio, 3 if args.smoke else 20, peak_tflops(device, args.peak_tflops),
                                       compile_it=args.compile and torch.cuda.is_available())
    if "memory" in only and not studio.preset.flow:
        print("\n3. each tab's heaviest request: time, peak memory, ZeroGPU request", flush=True)
        figures["tabs"] = bench_tabs(studio, photo, garment, args.steps, hyper_dir)
    if "train" in only and not studio.preset.flow:
        print("\n4. HyperLoRA training", flush=True)
        figures["train"] = bench_training(studio, (64,) if args.smoke else (1024, 512), 2 if args.smoke else 10)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2, default=str)
    failed = [r for r in figures.get("paths", []) if not (r["ok"] and r["finite"])]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
