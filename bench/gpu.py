"""The `sdxl` preset at its true shapes on a GPU: speed, FLOP/s, memory, ZeroGPU durations.

Random weights with SDXL's exact architecture (the shape mirror of
`python -m recontext fixtures shapes`, built into the cache folder when missing), 1024 px,
float16, CUDA. Weights change neither speed nor memory, so these are the figures of the
real preset. Prints, in order:

1. seconds for a 50-step inversion + reconstruction per method, with and without tight,
   beside diffusers' own `StableDiffusionXLPipeline.__call__` making the same number of
   UNet evaluations (the reference), and `gpu overhead ratio: X` (goal <= 1.05);
2. achieved UNet TFLOP/s (FLOPs of one call from `torch.utils.flop_counter.FlopCounterMode`,
   x calls / seconds) and the fraction of the GPU's dense float16 peak (goal >= 45%), for
   the plain UNet (SDPA), channels_last, fused QKV, and torch.compile;
3. peak VRAM (`torch.cuda.max_memory_allocated`) of each tab's heaviest request at the
   defaults (goal <= 16 GB), with the VAE tiled where `--vae-tiling` is given;
4. the ZeroGPU duration each handler would request against the measured time;
5. HyperLoRA training steps per second at 1024 and 512 px, with the peak memory.

    python bench/gpu.py [--steps 50] [--peak-tflops N] [--only overhead,flops,memory,zerogpu,train]
    python bench/gpu.py --smoke      # CPU, 64 px, 2 steps: checks the script itself runs

The smoke run's figures mean nothing; it exists so the script can be checked without a GPU.
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

import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = os.path.join(ROOT, "assets", "photos", "chelsea.png")

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


# -- 1. overhead against diffusers' own pipeline --------------------------------------------
def reference(studio, photo: Image.Image, tight: bool, evaluations: int) -> float:
    """`StableDiffusionXLPipeline.__call__` on the same pipeline for `evaluations` UNet calls
    (guidance 1: one call per step), with the photo's IP-Adapter embeddings when tight."""
    m = studio.models
    with m.lock:
        cond = studio.condition("a cat", photo, tight, 0.4 if tight else 0.0)
        side = studio.preset.resolution
        _, seconds = timed(m.pipe, "a cat", num_inference_steps=evaluations, guidance_scale=1.0,
                           height=side, width=side, ip_adapter_image_embeds=cond.added["image_embeds"],
                           generator=torch.Generator().manual_seed(0))
    return seconds


def bench_overhead(studio, photo, steps: int, repeats: int) -> dict:
    from recontext import inversion

    rows, ratios = [], []
    for method in inversion.METHODS:
        for tight in (False, True):
            ours, ref = [], []
            for _ in range(repeats):
                before = studio.models.unet_evaluations()
                r = studio.reconstruct(photo, prompt="a cat", method=method, tight=tight, steps=steps)
                sync()
                ours.append(r.seconds)
                ref.append(reference(studio, photo, tight, studio.models.unet_evaluations() - before))
            ratio = statistics.median(ours) / statistics.median(ref)
            ratios.append(ratio)
            rows.append({"method": method, "tight": tight, "seconds": statistics.median(ours),
                         "reference_seconds": statistics.median(ref), "ratio": ratio})
            print(f"{method:14s} tight={tight!s:5s} {rows[-1]['seconds']:7.2f} s  reference "
                  f"{rows[-1]['reference_seconds']:7.2f} s  ratio {ratio:.3f}", flush=True)
    print(f"gpu overhead ratio: {max(ratios):.3f}  (worst method; goal <= 1.05)", flush=True)
    return {"rows": rows, "ratio": max(ratios)}


# -- 2. UNet FLOP/s ---------------------------------------------------------------------------
def unet_inputs(studio, batch: int):
    m = studio.models
    side = studio.preset.resolution // m.pipe.vae_scale_factor
    cond = m.with_image(m.text_cond("a cat", (studio.preset.resolution,) * 2, 7.5 if batch == 2 else 1.0), None)
    x = torch.randn(batch, 4, side, side, device=m.device, dtype=m.dtype)
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


def bench_flops(studio, calls: int, peak: float | None, compile_ok: bool) -> dict:
    unet = studio.models.pipe.unet
    x, t, kwargs = unet_inputs(studio, batch=2)  # a guided call, as editing and generation make
    flops = unet_flops(unet, x, t, kwargs)
    print(f"UNet FLOPs per guided call (batch 2): {flops / 1e12:.2f} TFLOP", flush=True)
    out = {"flops_per_call": flops}

    def report(name, fn):
        try:
            tf = fn()
        except Exception as e:  # a variant the installed versions refuse: say so
            print(f"  {name:28s} not available: {type(e).__name__}: {str(e)[:120]}", flush=True)
            out[name] = None
            return
        share = f"{100 * tf / peak:5.1f}% of {peak:g} peak" if peak else "peak unknown (--peak-tflops)"
        print(f"  {name:28s} {tf:7.1f} TFLOP/s  {share}", flush=True)
        out[name] = tf

    report("sdpa (default processors)", lambda: unet_tflops(unet, x, t, kwargs, flops, calls))
    unet.to(memory_format=torch.channels_last)
    report("sdpa + channels_last", lambda: unet_tflops(unet, x, t, kwargs, flops, calls))

    def fused():
        unet.fuse_qkv_projections()  # replaces the IP-Adapter processors: measured, then undone
        try:
            return unet_tflops(unet, x, t, kwargs, flops, calls)
        finally:
            unet.unfuse_qkv_projections()

    report("+ fused QKV", fused)
    if compile_ok:
        compiled = torch.compile(unet, mode="max-autotune-no-cudagraphs", fullgraph=False)
        report("+ torch.compile", lambda: unet_tflops(compiled, x, t, kwargs, flops, calls))
    unet.to(memory_format=torch.contiguous_format)
    return out


# -- 3 and 4. peak memory per tab, ZeroGPU durations ------------------------------------------
def requested_seconds(calls: float) -> int:
    from recontext.ui.common import gpu_seconds

    return gpu_seconds(calls)


def bench_tabs(studio, photo, garment, steps: int, hyperlora: str) -> list:
    from recontext import editing, inversion
    from recontext.cache import LRU
    from recontext.garment import FINETUNE_STEPS

    methods = list(inversion.METHODS)
    requests = [
        ("inversion: 3 methods x (plain, tight)", lambda: [
            studio.reconstruct(photo, "a cat", m, tight, 0.4, steps) for m in methods for tight in (False, True)],
         sum(inversion.COST[m] for m in methods) * 2 * steps),
        ("edit: renoise + tight", lambda: studio.edit(photo, "a cat", "a tiger", "renoise", True, 0.4, 7.5, steps),
         (inversion.COST["renoise"] + 2) * steps),
        (f"edit sweep: {len(editing.SWEEP_SCALES)} scales", lambda: studio.edit_sweep(
            photo, "a cat", "a tiger", steps=steps), (inversion.COST["ddim"] + 2) * steps * len(editing.SWEEP_SCALES)),
        ("garment: hyperlora + ip-adapter + finetune-lora", lambda: [
            studio.dress(garment, "a person on a beach", "hyperlora", steps=steps, checkpoint=hyperlora),
            studio.dress(garment, "a person on a beach", "ip-adapter", 0.6, steps=steps),
            studio.dress(garment, "a person on a beach", "finetune-lora", steps=steps, seed=1)],
         2 * steps * 3 + 3 * FINETUNE_STEPS),
    ]
    rows = []
    for name, run, calls in requests:
        studio.inversion_cache = LRU(8)  # every request inverts afresh
        reset_peak()
        _, seconds = timed(run)
        asked = requested_seconds(calls)
        rows.append({"request": name, "seconds": seconds, "peak_gb": peak_gb(), "zerogpu_seconds": asked,
                     "requested_over_measured": asked / seconds})
        r = rows[-1]
        print(f"  {name:48s} {seconds:7.1f} s  peak {r['peak_gb']:5.1f} GB  ZeroGPU asks {asked} s "
              f"({r['requested_over_measured']:.2f}x; goal 1-2x)", flush=True)
    return rows


# -- 5. HyperLoRA training ----------------------------------------------------------------------
def bench_training(studio, sides, steps: int) -> list:
    from recontext.garment.train import synthetic_pairs, train_hyperlora

    rows = []
    models = studio.models
    for side in sides:
        models.preset = studio.preset = dataclasses.replace(studio.preset, resolution=side)
        pairs = synthetic_pairs(4, side)
        with tempfile.TemporaryDirectory() as out:
            train_hyperlora(models, pairs, out, steps=1, save_every=10**9, progress=False)  # warm-up
            reset_peak()
            sync()
            start = time.perf_counter()
            train_hyperlora(models, pairs, os.path.join(out, "b"), steps=steps, save_every=10**9, progress=False)
            sync()
            seconds = time.perf_counter() - start
        rows.append({"side": side, "steps_per_second": steps / seconds, "peak_gb": peak_gb()})
        print(f"  HyperLoRA training at {side} px: {steps / seconds:.2f} steps/s, peak {peak_gb():.1f} GB",
              flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models-dir", default=None, help="default: the shape mirror in the cache folder")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense fp16 peak")
    ap.add_argument("--vae-tiling", action="store_true", help="decode in tiles (less memory)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--only", default="overhead,flops,memory,train")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--smoke", action="store_true", help="CPU, 64 px, 2 steps: check the script runs")
    args = ap.parse_args()

    from recontext import Studio, presets
    from recontext.fixtures import build_shapes
    from recontext.garment.hyperlora import HyperLoRA, HyperLoRAConfig, target_modules
    from recontext.logs import quiet_libraries

    quiet_libraries()
    if args.smoke:
        args.steps, args.repeats = 2, 1
        os.environ.setdefault("RECONTEXT_RESOLUTION", "64")
        os.environ.setdefault("RECONTEXT_WEIGHTS_DTYPE", "float16")
    elif not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs CUDA (or --smoke to check the script on a CPU)")
    root = args.models_dir or build_shapes(os.path.join(presets.cache_dir(), "shapes"), ["sdxl"])
    os.environ["RECONTEXT_MODELS_DIR"] = root
    studio = Studio("sdxl")
    _, load_seconds = timed(lambda: studio.models.pipe)
    if args.vae_tiling:
        studio.models.pipe.vae.enable_tiling()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run)"
    side = studio.preset.resolution
    print(f"device: {device}; sdxl shapes at {side} px, {studio.models.dtype}, loaded in {load_seconds:.1f} s",
          flush=True)
    photo = Image.open(PHOTO).convert("RGB")
    garment = photo.resize((512, 512))
    unet = studio.models.pipe.unet
    hyper_dir = tempfile.mkdtemp(prefix="hyperlora-sdxl-")
    torch.manual_seed(0)
    HyperLoRA(HyperLoRAConfig([list(m) for m in target_modules(unet)],
                              studio.models.pipe.image_encoder.config.hidden_size, "sdxl")).save(hyper_dir)

    only = set(args.only.split(","))
    figures = {"device": device, "resolution": side, "steps": args.steps}
    if "overhead" in only:
        print("\n1. inversion + reconstruction against StableDiffusionXLPipeline.__call__", flush=True)
        figures["overhead"] = bench_overhead(studio, photo, args.steps, args.repeats)
    if "flops" in only:
        print("\n2. UNet throughput", flush=True)
        figures["flops"] = bench_flops(studio, 3 if args.smoke else 20, peak_tflops(device, args.peak_tflops),
                                       compile_ok=torch.cuda.is_available() and not args.no_compile)
    if "memory" in only:
        print("\n3-4. each tab's heaviest request at the defaults: time, peak memory, ZeroGPU request", flush=True)
        figures["tabs"] = bench_tabs(studio, photo, garment, args.steps, hyper_dir)
    if "train" in only:
        print("\n5. HyperLoRA training on SDXL shapes", flush=True)
        figures["train"] = bench_training(studio, (64,) if args.smoke else (1024, 512), 2 if args.smoke else 10)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
