"""Train the tiny world, stage by stage, reproducibly from a seed.

    python -m recontext train-tiny [--out recontext/tiny/weights] [--seed 0] [--stages all] [--device auto]

Stages, each a plain loop over the world's data (`world.py`), each writing one
safetensors file into `--out` when done (a stage whose file exists is skipped; an
interrupted stage resumes from its checkpoint in `--work`):

1. `vae`        AutoencoderKL on photo crops, scenes, garments and figures (MSE + L1 on
                the mode's decoding, a small L2 term keeping latents bounded)
2. `clip`       CLIPModel, contrastive on captioned scenes, garments and figures
3. `unet`       SDXL-shaped UNet (v-prediction, text-conditioned with caption dropout)
                trained together with its IP-Adapter *plus* (the image itself as condition)
4. `hyperlora`  the HyperLoRA hypernetwork on garment → worn-figure pairs
5. `widen`      the VAE widened and deepened (`arch.widen_vae`: the encoder computes the
                same latents, so the latent space the other stages learned stays put) and
                its larger decoder trained further (larger crops, perturbed latents), mostly
                on detailed photo crops

Every batch is drawn from a generator seeded by (seed, stage, step), so a resumed stage
sees the same data as an uninterrupted one. `MODEL_CARD.md` records the command, seed,
losses, device and wall time of each stage.

Devices (`--device cpu`, `cuda`, or `auto`: cuda where available). On the CPU every stage
runs exactly as the committed weights were trained: the batches of `BATCH["cpu"]`, numpy
noise, float32; a run is bitwise reproducible on one machine at one thread count. On CUDA
the same stages run with the batches of `BATCH["cuda"]`, the forward passes under bfloat16
autocast with TF32 matmuls, noise drawn on the GPU (by a torch generator seeded from the
step's numpy generator), the photo-crop batches of `vae` and `widen` rendered ahead by
worker processes: seeded, the same data for a given batch size, but not bitwise
reproducible (bfloat16, GPU kernels' summation order). On every device the trained
parameters and the optimiser's state stay float32, and the files written are the same
fp16 / float32 safetensors, loaded on a CPU exactly as before.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time

import torch

from ..garment.train import MASK_WEIGHT
from . import arch, world
from .arch import trained_vae, widened  # noqa: F401  (what flux_train and the tests read from here)
from .train_clip import train_clip
from .train_unet import BANK, bank, base_state, train_unet  # noqa: F401
from .train_vae import DECODER_LR, WIDE_PHOTOS, train_vae, train_widen
from .trainer import (BATCH, PX, Stage, device_for, device_name, normal, prefetch, rng_for,  # noqa: F401
                      to_tensor)

log = logging.getLogger(__name__)
STAGES = ("vae", "clip", "unet", "hyperlora", "widen")
DEFAULT_STAGES = STAGES
# steps per stage. Budgets are device minutes: on 2 CPU threads these took 12.8 (vae), 3.3
# (clip), 45.0 (unet, plus 2.8 setting up), 7.0 (hyperlora) and 18.3 (widen): weights/MODEL_CARD.md
STEPS = {"vae": 3000, "clip": 1000, "unet": 6000, "hyperlora": 6000, "widen": 1920}
CARD = "MODEL_CARD.md"
DONE = {"hyperlora": os.path.join("hyperlora", "hyperlora.safetensors"),
        "widen": "wide_decoder.safetensors"}  # else {stage}.safetensors
HYPERLORA_LR = 1e-3


# -- 5. HyperLoRA ----------------------------------------------------------------------------
def train_hyperlora_stage(out: str, work: str, seed: int, steps: int, pairs: int = 256,
                          device: torch.device = torch.device("cpu")) -> dict:
    """The garment tab's hypernetwork on the assembled preset, through the same
    `garment.train.train_hyperlora` the command line uses (pairs 0..pairs-1; the
    benchmarks hold out pairs from 10 000 on): one pair per step on every device, under
    bfloat16 autocast on CUDA."""
    from ..garment.train import synthetic_pairs, train_hyperlora
    from ..models import ModelOwner
    from ..presets import get
    from . import assemble

    root = os.path.join(work, "assembled-hyperlora")
    shutil.rmtree(root, ignore_errors=True)
    assemble(root, out)
    open(os.path.join(root, "BUILT"), "w").close()  # tiny.build(): already assembled
    preset = get("tiny")
    preset = type(preset)(**{**preset.__dict__, "base": os.path.join(root, "pipeline"),
                             "ip_adapter": os.path.join(root, "ip_adapter"),
                             "clip": os.path.join(root, "clip"), "hyperlora": None})
    models = ModelOwner(preset, device=device)
    start = time.perf_counter()
    ckpt = os.path.join(work, "hyperlora")
    losses = train_hyperlora(models, synthetic_pairs(pairs, PX), ckpt, steps=steps, seed=seed,
                             save_every=250, progress=False, lr=HYPERLORA_LR, low_timestep=300,
                             bf16=device.type == "cuda",
                             note=f"tiny world: {steps} steps on {pairs} synthetic pairs, seed {seed}")
    dest = os.path.join(out, "hyperlora")
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for name in ("config.json", "hyperlora.safetensors"):
        shutil.copy(os.path.join(ckpt, name), dest)
    k = max(1, len(losses) // 10)
    return {"steps": steps, "pairs": pairs, "loss_first": sum(losses[:k]) / k,
            "loss_last": sum(losses[-k:]) / k, "seconds": round(time.perf_counter() - start, 1)}


# -- the command -------------------------------------------------------------------------
TRAINERS = {"vae": train_vae, "clip": train_clip, "unet": train_unet, "hyperlora": train_hyperlora_stage,
            "widen": train_widen}


def main(out: str, work: str, seed: int = 0, stages=DEFAULT_STAGES, steps: dict | None = None,
         command: str = "python -m recontext train-tiny", device: str = "auto", batch: dict | None = None) -> dict:
    """Train `stages` into `out` on `device` (`device_for`); `steps` and `batch` override
    `STEPS` and `BATCH[device]` per stage ({"unet": 500}; steps["bank"]: the latent bank's size)."""
    # first, before a thread pool exists, so its threads inherit it: denormal numbers (tiny
    # gradients) would otherwise slow the CPU's float math a hundredfold
    torch.set_flush_denormal(True)
    unknown = [s for s in stages if s not in STAGES]
    batch = dict(batch or {})
    unknown += [f"{s} (--batch)" for s in batch if s not in BATCH["cpu"]]
    if unknown:
        raise ValueError(f"no stage {', '.join(unknown)}: the stages are {', '.join(STAGES)}")
    dev = device_for(device)
    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    steps = dict(steps or {})
    bank_size = steps.pop("bank", BANK)  # the latent bank's images (the unet stage's data)
    results = {}
    card_json = os.path.join(out, "training.json")
    if os.path.exists(card_json):
        with open(card_json) as f:
            results = {k: v for k, v in json.load(f).items() if k in STAGES}
    for name in stages:
        if os.path.exists(os.path.join(out, DONE.get(name, f"{name}.safetensors"))):
            log.info("%s: done already, skipped", name)
            continue
        n = steps.get(name, STEPS[name])
        log.info("%s: training %d steps on %s", name, n, dev)
        own = {"batch": batch[name]} if name in batch else {}
        if name == "unet":
            own["bank_size"] = bank_size
        results[name] = {**TRAINERS[name](out, work, seed, n, device=dev, **own), "seed": seed, "command": command,
                         "threads": torch.get_num_threads(), "device": device_name(dev)}
        with open(card_json, "w") as f:
            json.dump(results, f, indent=2)
        write_card(out, results)
    return results


DATA = {
    "vae": "batches of `batch` crops (16 where not recorded) of 32 px: 60% photo crops (scikit-image's training photos and LFW faces; random "
           "scale, flips, colour jitter), 20% procedural scenes, 20% garments and figures",
    "clip": "every caption of the scene grammar in 24 random geometries, 1500 garments and "
            "figures; batches of 48 distinct scene captions + 16 distinct others",
    "unet": f"a bank of {BANK} images (55% scenes, 20% garments and figures, 25% photo crops at "
            "128 px); UNet (v-prediction, from fresh weights) and IP-Adapter plus trained together: "
            "captions dropped 15%, adapter scale 0 for 30% of batches, else uniform 0.3-1.0 with each "
            "image conditioning its own denoising; timesteps uniform",
    "hyperlora": "256 procedural garment -> worn-figure pairs (seeds 0-255); prompts name the "
                 f"garment kind and scene, not its look; lr {HYPERLORA_LR:g}, timesteps 300-999, v-prediction loss "
                 f"weighted 1 + {MASK_WEIGHT:g} on the garment's region (the pairs' masks)",
    "widen": f"the VAE widened x{arch.VAE_WIDTH} with {arch.VAE_LAYERS} resnets per level (encoder: same latents), "
             "its decoder (from the `vae` stage's) trained with the encoder frozen on batches of `batch` crops (8 where not "
             "recorded) of 64 px: "
             f"{WIDE_PHOTOS:.0%} photo crops (the more detailed of two), {(1 - WIDE_PHOTOS) / 2:.0%} scenes, "
             f"{(1 - WIDE_PHOTOS) / 2:.0%} garments and figures; half the latents perturbed by 0.1 (unit-variance "
             f"units); lr {DECODER_LR:g}",
}


def where(r: dict) -> str:
    """Where a stage ran, for the card: "cpu, 2 threads" or "cuda (NVIDIA H200)"."""
    device = r.get("device", "cpu")
    return f"{device}, {r['threads']} threads" if device == "cpu" and r.get("threads") else device


def write_card(out: str, results: dict) -> None:
    devices = sorted({where(r) for r in results.values()})
    lines = ["# The tiny world's weights", "",
             "Trained by `python -m recontext train-tiny` (recontext/tiny/train.py) on "
             + ", ".join(devices) + "; "
             "every batch is drawn from a generator seeded by (seed, stage, step). Held out of every "
             "stage: scene seeds from 2^31, garments from 10 000, and the photos "
             + ", ".join(n for _, n in world.HELD_OUT_PHOTOS) + ".", "",
             "| stage | steps | seed | loss first → last | wall time (device) | data | other |",
             "|---|---|---|---|---|---|---|"]
    for name in STAGES:
        r = results.get(name)
        if not r:
            continue
        other = {k: v for k, v in r.items() if k not in
                 ("steps", "seed", "loss_first", "loss_last", "seconds", "setup_seconds", "command", "threads",
                  "device")}
        lines.append(f"| {name} | {r['steps']} | {r['seed']} | {r['loss_first']:.4f} → {r['loss_last']:.4f} "
                     f"| {r['seconds'] / 60:.1f} min ({where(r)}) | {DATA[name]} | {json.dumps(other)} |")
    loops = sum(r["seconds"] for r in results.values())
    setup = sum(r.get("setup_seconds", 0) for r in results.values())
    cmds = sorted({r.get("command", "") for r in results.values()})
    lines += ["", f"Total training time: {(loops + setup) / 60:.1f} min: {loops / 60:.1f} min in the stages' "
              f"loops (the table's wall times), {setup / 60:.1f} min setting up `unet` (rendering and encoding "
              f"its latent bank, assembling the pipeline, its image tokens) on {', '.join(devices)}. "
              "Budgets are device minutes: a stage's wall time on the device it names.",
              "Commands: " + "; ".join(f"`{c}`" for c in cmds) + ".",
              "Files: fp16 safetensors except `ip_adapter.safetensors` and `hyperlora/` (float32); "
              "`world.json` holds the VAE scaling factor (unit-variance latents).", ""]
    with open(os.path.join(out, CARD), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="recontext/tiny/weights")
    ap.add_argument("--work", default=".cache/tiny-train")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stages", default=",".join(DEFAULT_STAGES))
    ap.add_argument("--steps", default="", help="override: stage=N,stage=N")
    ap.add_argument("--batch", default="", help="override: stage=N,stage=N")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    a = ap.parse_args()
    over = {k: int(v) for k, v in (kv.split("=") for kv in a.steps.split(",") if kv)}
    batches = {k: int(v) for k, v in (kv.split("=") for kv in a.batch.split(",") if kv)}
    print(json.dumps(main(a.out, a.work, a.seed, a.stages.split(","), over,
                          command="python -m recontext train-tiny " + " ".join(sys.argv[1:]),
                          device=a.device, batch=batches), indent=2))
