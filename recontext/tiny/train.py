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

import contextlib
import json
import logging
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..garment import synthetic
from ..garment.train import MASK_WEIGHT
from .. import images, metrics
from . import arch, world
from .arch import PREDICTION, load_weights, save_weights, trained_vae, widened
from .world import HELD_OUT_SEED

log = logging.getLogger(__name__)
STAGES = ("vae", "clip", "unet", "hyperlora", "widen")
DEFAULT_STAGES = STAGES
# steps per stage. Budgets are device minutes: on 2 CPU threads these took 12.8 (vae), 3.3
# (clip), 45.0 (unet, plus 2.8 setting up), 7.0 (hyperlora) and 18.3 (widen): weights/MODEL_CARD.md
STEPS = {"vae": 3000, "clip": 1000, "unet": 6000, "hyperlora": 6000, "widen": 1920}
# images per step, per device: on the CPU what the committed weights were trained with; on a
# GPU enough to fill it (models this small are bound by kernel launches). `clip` draws 48
# distinct scene captions + 16 distinct others on every device (there are 90 captions), and
# `hyperlora` one garment pair per step (each pair predicts its own LoRA weights).
BATCH = {"cpu": {"vae": 16, "unet": 16, "widen": 8},
         "cuda": {"vae": 256, "unet": 256, "widen": 64}}
# each stage's number in its batches' seeds, fixed: the numbers the committed weights were
# drawn with (stages since merged into `unet` or `widen` kept theirs out of use)
STAGE_IDS = {"vae": 0, "clip": 1, "unet": 2, "hyperlora": 5, "widen": 7}
CARD = "MODEL_CARD.md"
DONE = {"hyperlora": os.path.join("hyperlora", "hyperlora.safetensors"),
        "widen": "wide_decoder.safetensors"}  # else {stage}.safetensors
PX = arch.RESOLUTION
DECODER_LR = 1e-3
WIDE_PHOTOS = 0.8  # the widen stage's share of photo crops (scenes and garments are easy)
HYPERLORA_LR = 1e-3


def rng_for(seed: int, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, STAGE_IDS[stage], step])


# -- devices ---------------------------------------------------------------------------------
def device_for(name: str = "auto") -> torch.device:
    """`cpu`, `cuda` or `auto` (cuda where available) as a device; on CUDA, TF32 matmuls and
    convolutions allowed (float32 tensors, products at TF32 precision)."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def device_name(device: torch.device) -> str:
    """What the model card says a stage ran on: "cpu" or "cuda (NVIDIA H200)"."""
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def autocast(device: torch.device):
    """bfloat16 autocast on CUDA; nothing on the CPU (float32, as the committed weights were trained)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def normal(rng: np.random.Generator, shape, device: torch.device) -> torch.Tensor:
    """Standard normal noise of `shape` from the step's generator: drawn by numpy on the CPU
    (as the committed weights were trained); on a GPU drawn there, by a torch generator
    seeded from `rng`."""
    if device.type == "cpu":
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    g = torch.Generator(device).manual_seed(int(rng.integers(1 << 62)))
    return torch.randn(shape, generator=g, device=device)


def prefetch(make, start: int, stop: int, workers: int = 0):
    """`make(step)` for steps start..stop-1, in order: in this process (`workers` 0), or made
    ahead by `workers` processes (forked: `make` needs no pickling) into pinned memory."""
    if not workers:
        return map(make, range(start, stop))
    from torch.utils.data import DataLoader

    return iter(DataLoader(range(start, stop), batch_size=None, collate_fn=make, num_workers=workers,
                           pin_memory=torch.cuda.is_available(), prefetch_factor=4,
                           multiprocessing_context="fork"))


def workers_for(device: torch.device) -> int:
    """Processes rendering a stage's batches ahead: none on the CPU (the cores train), up to
    8 beside a GPU."""
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL RGB images -> (n, 3, h, w) in [-1, 1]."""
    a = np.stack([np.asarray(i.convert("RGB"), np.float32) for i in images]) / 127.5 - 1
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


class Photos:
    """The training photos, loaded once (grey ones as RGB)."""

    def __init__(self):
        self.images = [world.load_photo(p) for p in world.photo_paths()]
        self.faces = world.faces()

    def crop(self, rng, px: int) -> Image.Image:
        if rng.random() < 0.1:  # a small grey face, scaled up
            f = Image.fromarray(self.faces[rng.integers(len(self.faces))]).convert("RGB")
            return world.random_crop(f.resize((px, px), Image.BICUBIC), rng, px)
        return world.random_crop(self.images[rng.integers(len(self.images))], rng, px)

    def detailed_crop(self, rng, px: int) -> Image.Image:
        """The more detailed of two crops (`detail`): flat sky and walls teach a decoder little."""
        a, b = self.crop(rng, px), self.crop(rng, px)
        return a if detail(a) >= detail(b) else b


def detail(img: Image.Image) -> float:
    """Mean absolute difference between neighbouring grey pixels, across and down."""
    a = np.asarray(img.convert("L"), np.float32)
    return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())


def random_scene(rng) -> tuple[Image.Image, str, np.ndarray]:
    return world.scene(int(rng.integers(1 << 30)))


def garment_sample(rng) -> tuple[Image.Image, str]:
    """A garment on white or a figure wearing one, with its caption."""
    seed = int(rng.integers(1 << 30))
    if rng.random() < 0.5:
        return synthetic.garment(seed, PX), synthetic.garment_caption(seed)
    return synthetic.scene(seed, PX), (synthetic.prompt(seed) if rng.random() < 0.5
                                       else synthetic.scene_prompt(seed))


# -- checkpointing ---------------------------------------------------------------------
class Stage:
    """Resumable training state of one stage: module(s), optimiser, step, losses."""

    def __init__(self, name: str, work: str, modules: dict, params, lr: float, steps: int,
                 device: torch.device = torch.device("cpu")):
        self.name, self.steps, self.modules, self.device = name, steps, modules, device
        self.path = os.path.join(work, f"{name}.pt")
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr, total_steps=steps,
                                                         pct_start=min(max(0.05, 3 / steps), 0.75),
                                                         anneal_strategy="cos")
        self.step, self.losses, self.seconds = 0, [], 0.0
        if os.path.exists(self.path):
            state = torch.load(self.path, weights_only=False, map_location="cpu")  # to the modules' device below
            if state["sched"]["total_steps"] != steps:
                raise ValueError(f"{self.path} is a checkpoint of a {state['sched']['total_steps']}-step {name} "
                                 f"run, not {steps}: delete it to start afresh, or ask for its steps")
            for k, m in modules.items():
                m.load_state_dict(state["modules"][k])
            self.opt.load_state_dict(state["opt"])
            self.sched.load_state_dict(state["sched"])
            self.step, self.losses, self.seconds = state["step"], state["losses"], state["seconds"]
            log.info("%s: resumed at step %d", name, self.step)

    def save(self):
        tmp = self.path + ".tmp"
        torch.save({"modules": {k: m.state_dict() for k, m in self.modules.items()},
                    "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "step": self.step,
                    "losses": self.losses, "seconds": self.seconds}, tmp)
        os.replace(tmp, self.path)

    def run(self, loss_fn, save_every: int = 200, report=None, data=None):
        """Train to `self.steps`: `loss_fn(step)`, or with `data` (the step's batch, made on the
        CPU) `loss_fn(step, data(step))`, the batches made ahead by worker processes beside a
        GPU (`prefetch`). The forward pass runs under `autocast`."""
        start = time.perf_counter() - self.seconds
        batches = data and prefetch(data, self.step, self.steps, workers_for(self.device))
        while self.step < self.steps:
            with autocast(self.device):
                loss = loss_fn(self.step, next(batches)) if data else loss_fn(self.step)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            self.losses.append(loss.item())
            self.step += 1
            self.seconds = time.perf_counter() - start
            if self.step % 50 == 0 or self.step == self.steps:
                recent = self.losses[-50:]
                log.info("%s step %d/%d loss %.5f (%.0f s)", self.name, self.step, self.steps,
                         sum(recent) / len(recent), self.seconds)
            if report and self.step % save_every == 0:
                report(self.step)
            if self.step % save_every == 0 or self.step == self.steps:
                self.save()
        return self.summary()

    def summary(self) -> dict:
        k = max(1, min(100, len(self.losses) // 10))
        return {"steps": self.steps, "loss_first": sum(self.losses[:k]) / k,
                "loss_last": sum(self.losses[-k:]) / k, "seconds": round(self.seconds, 1)}


# -- 1. the autoencoder ----------------------------------------------------------------
def train_vae(out: str, work: str, seed: int, steps: int, batch: int | None = None, crop: int = 32,
              device: torch.device = torch.device("cpu")) -> dict:
    """The narrow VAE on crops of `crop` px, `batch` per step (default `BATCH[device]["vae"]`)."""
    batch = batch or BATCH[device.type]["vae"]
    torch.manual_seed(seed)
    vae = arch.vae(width=1, layers=1).to(device).train()
    photos = Photos()
    stage = Stage("vae", work, {"vae": vae}, vae.parameters(), lr=3e-4, steps=steps, device=device)

    def batch_images(step):
        rng = rng_for(seed, "vae", step)
        out_ = []
        for _ in range(batch):
            r = rng.random()
            if r < 0.6:
                out_.append(photos.crop(rng, crop))
            else:
                img = random_scene(rng)[0] if r < 0.8 else garment_sample(rng)[0]
                out_.append(world.random_crop(img, rng, crop))
        return to_tensor(out_)

    def loss_fn(step, x):
        x = x.to(device, non_blocking=True)
        z = vae.encode(x).latent_dist.mode()  # the studio encodes with the mode: train with it
        y = vae.decode(z).sample
        return F.mse_loss(y, x) + 0.1 * F.l1_loss(y, x) + 1e-4 * z.square().mean()

    summary = stage.run(loss_fn, report=lambda s: log.info("vae psnr %s", vae_psnr(vae.eval())) or vae.train(),
                        data=batch_images)
    vae.eval()
    summary["psnr"] = vae_psnr(vae)
    summary["batch"] = batch
    save_weights(vae, os.path.join(out, "vae.safetensors"))
    return summary


def decoder_batch(photos, rng, batch: int, crop: int, photo_share: float) -> torch.Tensor:
    """Crops: `photo_share` photos (`Photos.detailed_crop`), the rest scenes and garments or
    figures half and half."""
    imgs = []
    for _ in range(batch):
        r = rng.random()
        imgs.append(photos.detailed_crop(rng, crop) if r < photo_share else world.random_crop(
            random_scene(rng)[0] if r < (1 + photo_share) / 2 else garment_sample(rng)[0], rng, crop))
    return to_tensor(imgs)


def decoder_loss(encoder, decoder, x, rng, noise: float, unit: float) -> torch.Tensor:
    """Reconstruction loss of `decoder` on `encoder`'s latents (mode) of `x`, half of them
    perturbed by `noise` (unit-variance units)."""
    with torch.no_grad():
        z = encoder.encode(x).latent_dist.mode()
        jitter = normal(rng, z.shape, z.device) * noise * unit
        z = z + jitter * torch.from_numpy((np.arange(len(x)) % 2).astype(np.float32)).to(z.device)[:, None, None, None]
    y = decoder.decode(z).sample
    return F.mse_loss(y, x) + 0.1 * F.l1_loss(y, x)


def latent_unit(out: str) -> float:
    with open(os.path.join(out, "world.json")) as f:
        return 1.0 / json.load(f)["vae_scaling_factor"]


def decoder_parameters(vae) -> list:
    vae.requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def train_widen(out: str, work: str, seed: int, steps: int, batch: int | None = None, crop: int = 64,
                noise: float = 0.1, lr: float = DECODER_LR, device: torch.device = torch.device("cpu")) -> dict:
    """The VAE widened and deepened to `arch.vae()` (its encoder computing the same latents,
    its decoder starting as the `vae` stage's), then the larger decoder trained with the
    encoder frozen, so that the latent space the UNet, IP-Adapter and HyperLoRA learned stays
    put: on crops of 64 px (`decoder_batch`, `WIDE_PHOTOS` of them photos), with half the
    latents perturbed by `noise` (unit-variance units; `decoder_loss`) so that the small
    errors of a sampled latent decode smoothly instead of as speckle. Latents come from the
    narrow encoder (the same function, faster). `batch` crops per step (default
    `BATCH[device]["widen"]`). Saved as `wide_decoder.safetensors`."""
    batch = batch or BATCH[device.type]["widen"]
    unit = latent_unit(out)
    torch.manual_seed(seed)
    small = trained_vae(out, wide=False).requires_grad_(False)
    vae = widened(small).train()  # not from an earlier run's wide_decoder: every run starts alike
    small, vae = small.to(device), vae.to(device)
    params = decoder_parameters(vae)
    photos = Photos()
    stage = Stage("widen", work, {"vae": vae}, params, lr=lr, steps=steps, device=device)

    def crops(step):  # the step's crops, and its generator to draw the latents' noise from next
        rng = rng_for(seed, "widen", step)
        return decoder_batch(photos, rng, batch, crop, WIDE_PHOTOS), rng

    def loss_fn(step, data):
        x, rng = data
        return decoder_loss(small, vae, x.to(device, non_blocking=True), rng, noise, unit)

    summary = stage.run(loss_fn, data=crops)
    vae.eval()
    summary["psnr"] = vae_psnr(vae)
    summary["batch"] = batch
    save_weights({k: v for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))},
                 os.path.join(out, "wide_decoder.safetensors"))
    return summary


@torch.no_grad()
def vae_psnr(vae, multiple: int = 8) -> dict:
    """Round-trip PSNR (dB) of the example photos and of the held-out ones, averaged, as
    the tiny studio judges it (`claims.vae_psnr`): each whole photo fitted to the working
    size (sides a multiple of `multiple`), the decoding rounded to 8 bits."""
    from diffusers.image_processor import VaeImageProcessor  # decodes to 8 bits as the studio does

    def psnr(paths):
        out = []
        for p in paths:
            img, _ = images.fit(world.load_photo(p), PX, multiple)
            y = vae.decode(vae.encode(to_tensor([img]).to(vae.device)).latent_dist.mode()).sample
            out.append(metrics.psnr(img, VaeImageProcessor().postprocess(y, output_type="pil")[0]))
        return round(float(np.mean(out)), 2)

    return {"examples": psnr(world.example_photos()), "held_out": psnr(world.photo_paths(held_out=True))}


# -- 2. CLIP -------------------------------------------------------------------------------


def clip_bank(seed: int, proc, scenes_per_caption: int = 24, garments: int = 1500):
    """Pixels and captions for contrastive training, rendered once: every caption of the
    grammar in `scenes_per_caption` random geometries, garments on white and figures."""
    rng = np.random.default_rng([seed, 98])
    images, caps = [], []
    for cap in world.captions():
        colour, shape, background = _parse(cap)
        for _ in range(scenes_per_caption):
            g = world.describe(int(rng.integers(1 << 30)))
            images.append(world.draw(colour, shape, background, g["size"], g["cx"], g["cy"])[0])
            caps.append(cap)
    for _ in range(garments):
        img, cap = garment_sample(rng)
        images.append(img)
        caps.append(cap)
    pixels = torch.cat([proc(images[i:i + 500], return_tensors="pt").pixel_values
                        for i in range(0, len(images), 500)])
    return pixels, caps


def clip_batch(rng, caps: list[str], scenes: int = 48, others: int = 16) -> list[int]:
    """Indices of bank items whose captions are all different: `scenes` of the grammar
    and `others` garments or figures."""
    by_caption: dict[str, list[int]] = {}
    for i, c in enumerate(caps):
        by_caption.setdefault(c, []).append(i)
    grammar = set(world.captions())
    picked = []
    for names, n in ((sorted(grammar), scenes), (sorted(set(by_caption) - grammar), others)):
        for c in rng.choice(len(names), n, replace=False):
            items = by_caption[names[c]]
            picked.append(items[rng.integers(len(items))])
    return picked


def _parse(cap: str) -> tuple[str, str, str]:
    w = cap.split()
    return w[1], w[2], w[5]


def train_clip(out: str, work: str, seed: int, steps: int, device: torch.device = torch.device("cpu")) -> dict:
    """CLIP, contrastive, on batches of 64 distinct captions (`clip_batch`) on every device."""
    torch.manual_seed(seed)
    tok, proc = arch.tokenizer(), arch.image_processor()
    clip = arch.clip(tok).to(device).train()
    stage = Stage("clip", work, {"clip": clip}, clip.parameters(), lr=1e-3, steps=steps, device=device)
    pixels_all, caps_all = clip_bank(seed, proc)
    pixels_all = pixels_all.to(device)

    def loss_fn(step):
        idx = clip_batch(rng_for(seed, "clip", step), caps_all)
        pixels = pixels_all[idx]
        ids = tok([caps_all[i] for i in idx], padding=True, return_tensors="pt").to(device)
        out_ = clip(input_ids=ids.input_ids, attention_mask=ids.attention_mask, pixel_values=pixels,
                    return_loss=True)
        return out_.loss

    summary = stage.run(loss_fn, save_every=250)
    clip.eval()
    summary["retrieval_top1_held_out"] = clip_retrieval(clip, tok, proc)
    save_weights(clip, os.path.join(out, "clip.safetensors"))
    return summary


@torch.no_grad()
def clip_retrieval(clip, tok, proc, n: int = 200) -> float:
    """Fraction of held-out scenes whose own caption ranks first among all 90."""
    caps = world.captions()
    ids = tok(caps, padding=True, return_tensors="pt").to(clip.device)
    text = F.normalize(clip.get_text_features(**ids).pooler_output, dim=-1)
    scenes = [world.scene(HELD_OUT_SEED + i) for i in range(n)]
    pixels = proc([s[0] for s in scenes], return_tensors="pt").pixel_values.to(clip.device)
    image = F.normalize(clip.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    best = (image @ text.T).argmax(1)
    return float(np.mean([caps[int(b)] == s[1] for b, s in zip(best, scenes)]))


# -- the latent bank: images encoded once for the UNet, IP-Adapter stages ----------------
BANK = 8000


def bank(out: str, work: str, seed: int, n: int | None = None, device: torch.device = torch.device("cpu")) -> dict:
    """`n` training images (scenes 55%, garments and figures 20%, photo crops 25%) with
    captions, VAE latents (mode, encoded on `device`, kept on the CPU) and the VAE scaling
    factor giving unit variance. Kept in `work`; each image is drawn from its own seeded
    generator."""
    n = n or BANK
    path = os.path.join(work, f"bank-{n}.pt")
    if os.path.exists(path):
        return torch.load(path, weights_only=False)
    vae = load_weights(arch.vae(width=1, layers=1), os.path.join(out, "vae.safetensors")).to(device)
    photos = Photos()
    images, caps = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, 99, i])
        r = rng.random()
        if r < 0.55:
            img, cap, _ = random_scene(rng)
        elif r < 0.75:
            img, cap = garment_sample(rng)
        else:
            img, cap = photos.crop(rng, PX), ""
        images.append(np.asarray(img, np.uint8))
        caps.append(cap)
    latents = []
    with torch.no_grad():
        for i in range(0, n, 64):
            x = to_tensor([Image.fromarray(a) for a in images[i:i + 64]]).to(device)
            latents.append(vae.encode(x).latent_dist.mode().cpu())
    latents = torch.cat(latents)
    data = {"images": np.stack(images), "captions": caps, "latents": latents,
            "scaling_factor": float(1.0 / latents.std())}
    torch.save(data, path)
    with open(os.path.join(out, "world.json"), "w") as f:
        json.dump({"vae_scaling_factor": data["scaling_factor"], "resolution": PX}, f, indent=2)
    return data


def text_batch(pipe, prompts: list[str]):
    """(encoder hidden states, added cond kwargs) for a batch of prompts at 128 px, exactly
    as `ModelOwner.text_cond` computes them, on the pipeline's device."""
    with torch.no_grad():
        text, _, pooled, _ = pipe.encode_prompt(prompts, device=pipe.device, do_classifier_free_guidance=False)
        time_ids = pipe._get_add_time_ids((PX, PX), (0, 0), (PX, PX), dtype=text.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim
                                          ).to(pipe.device)
    return text, {"text_embeds": pooled, "time_ids": time_ids.repeat(len(prompts), 1)}


def captioned_batch(pipe, data, rng, batch: int, drop: float):
    """Indices of `batch` bank items and their text conditioning, each caption dropped
    (to "") with probability `drop`: the batch draw of every UNet stage."""
    idx = rng.integers(0, len(data["captions"]), batch)
    prompts = [data["captions"][i] if rng.random() >= drop else "" for i in idx]
    return (idx, *text_batch(pipe, prompts))


def noised(sched, z0, rng):
    """(noisy latents, timesteps drawn uniformly, the noise added), on `z0`'s device."""
    t = torch.from_numpy(rng.integers(0, sched.config.num_train_timesteps, len(z0))).to(z0.device)
    noise = normal(rng, z0.shape, z0.device)
    return sched.add_noise(z0, noise, t), t, noise


def target(sched, z0, noise, t):
    """What the UNet learns to predict: the noise, or v for a v-prediction scheduler."""
    return sched.get_velocity(z0, noise, t) if sched.config.prediction_type == "v_prediction" else noise


# -- 3. the UNet and its IP-Adapter plus, together ----------------------------------------
def train_unet(out: str, work: str, seed: int, steps: int, batch: int | None = None, drop: float = 0.15,
               image_drop: float = 0.3, device: torch.device = torch.device("cpu")) -> dict:
    """The SDXL-shaped UNet, trained from fresh weights to predict v together with its
    IP-Adapter *plus*, both loaded the way the studio loads them (the assembled preset,
    `load_ip_adapter`). v = sqrt(a) eps - sqrt(1-a) x0 (Salimans & Ho 2022): a small epsilon
    model samples badly, its errors magnified up to 15x in the sampler's x0 at t=999;
    `ModelOwner.unet_call` turns v back into noise, so every method runs unchanged.

    Why together: an adapter trained afterwards on the frozen UNet learns nothing that
    generalises here (the UNet already predicts what it can without the image, and the
    adapter only memorises training images: measured, held-out loss no better than without
    the image). Trained from the first step, the UNet learns to read the image tokens where
    they help, as tiny-flux's transformer does. Each batch: captions dropped `drop` of the
    time (for guidance); the adapter scale 0 for `image_drop` of batches (the plain model,
    exactly what scale 0 runs), else uniform in 0.3-1.0 with each image conditioning its own
    denoising (what Tight Inversion asks of it). `batch` latents per step (default
    `BATCH[device]["unet"]`). Saved as `unet.safetensors` (the UNet's own weights) and
    `ip_adapter.safetensors` (the Hub key layout)."""
    from diffusers import StableDiffusionXLPipeline

    from . import assemble

    batch = batch or BATCH[device.type]["unet"]
    start = time.perf_counter()
    data = bank(out, work, seed, device=device)
    root = os.path.join(work, "assembled-unet")
    shutil.rmtree(root, ignore_errors=True)
    torch.manual_seed(seed)
    unet = arch.unet()
    initial = arch.ip_adapter_plus(unet, arch.vision_config().hidden_size, torch.Generator().manual_seed(seed + 1))
    assemble(root, out, unet=unet, ip_adapter=initial)
    pipe = StableDiffusionXLPipeline.from_pretrained(os.path.join(root, "pipeline"), local_files_only=True)
    pipe.load_ip_adapter(os.path.join(root, "ip_adapter"), subfolder="sdxl_models",
                         weight_name="ip-adapter-plus_sdxl_vit-h.safetensors",
                         image_encoder_folder="models/image_encoder", local_files_only=True)
    pipe.to(device)
    unet = pipe.unet.train()
    unet.requires_grad_(True)
    mapping = hub_key_map(unet, initial)
    sched = arch.scheduler(PREDICTION)
    z_all = (data["latents"] * data["scaling_factor"]).to(device)
    tokens = vision_bank(pipe, data["images"])
    stage = Stage("unet", work, {"unet": unet}, unet.parameters(), lr=5e-4, steps=steps, device=device)
    setup = time.perf_counter() - start  # the bank (unless already in `work`), the assembly, the image tokens

    def loss_fn(step):
        rng = rng_for(seed, "unet", step)
        idx, text, added = captioned_batch(pipe, data, rng, batch, drop)
        pipe.set_ip_adapter_scale(0.0 if rng.random() < image_drop else float(rng.uniform(0.3, 1.0)))
        x, t, noise = noised(sched, z_all[idx], rng)
        pred = unet(x, t, encoder_hidden_states=text,
                    added_cond_kwargs={**added, "image_embeds": [tokens[idx][:, None]]}).sample
        return F.mse_loss(pred, target(sched, z_all[idx], noise, t))

    with torch.enable_grad():
        summary = stage.run(loss_fn, save_every=100)
    summary["setup_seconds"] = round(setup, 1)
    summary["batch"] = batch
    save_weights(base_state(unet.eval()), os.path.join(out, "unet.safetensors"))
    save_weights({k: fetch(unet, src).detach() for k, src in mapping.items()},
                 os.path.join(out, "ip_adapter.safetensors"), half=False)
    return summary


def base_state(model) -> dict:
    """A UNet's or transformer's own weights, its IP-Adapter (the attention processors'
    image projections and `encoder_hid_proj`) left out."""
    return {k: v for k, v in model.state_dict().items()
            if ".processor." not in k and not k.startswith("encoder_hid_proj.")}


def ip_parameters(unet) -> dict[str, torch.nn.Parameter]:
    """The IP-Adapter's own parameters inside the UNet: the image projection and each
    cross-attention processor's to_k_ip / to_v_ip."""
    out = {f"encoder_hid_proj.{n}": p for n, p in unet.encoder_hid_proj.named_parameters()}
    for name, proc in unet.attn_processors.items():
        if hasattr(proc, "to_k_ip"):
            for n, p in proc.named_parameters():
                out[f"{name}.{n}"] = p
    return out


def fetch(unet, src):
    """The tensor a Hub key maps to: one parameter, or several concatenated (to_kv)."""
    params = ip_parameters(unet)
    return torch.cat([params[n] for n in src]) if isinstance(src, list) else params[src]


def hub_key_map(unet, hub: dict) -> dict:
    """Where each key of the Hub-layout file went when diffusers loaded it: found by value
    (every tensor of a probe file is distinct), so saving writes the same layout back."""
    probe_vals = {}
    g = torch.Generator().manual_seed(12345)
    for k, v in hub.items():
        probe_vals[k] = torch.randn(v.shape, generator=g)
    image_proj = {k[len("image_proj."):]: v for k, v in probe_vals.items() if k.startswith("image_proj.")}
    module = unet._convert_ip_adapter_image_proj_to_diffusers(image_proj, low_cpu_mem_usage=False)
    found = {f"encoder_hid_proj.image_projection_layers.0.{n}": p.detach()
             for n, p in module.named_parameters()}
    mapping = {}
    for k, v in image_proj.items():
        match = [n for n, p in found.items() if p.shape == v.shape and torch.equal(p, v)]
        if not match:  # to_kv: the concatenation of to_k and to_v
            ks = [n for n, p in found.items() if p.shape[0] * 2 == v.shape[0] and torch.equal(p, v[:p.shape[0]])]
            vs = [n for n, p in found.items() if p.shape[0] * 2 == v.shape[0] and torch.equal(p, v[p.shape[0]:])]
            match = [[ks[0], vs[0]]]
        mapping["image_proj." + k] = match[0]
    cross = [n for n, p in unet.attn_processors.items() if hasattr(p, "to_k_ip")]
    for i, name in enumerate(cross):
        for kv in ("k", "v"):
            mapping[f"ip_adapter.{2 * i + 1}.to_{kv}_ip.weight"] = f"{name}.to_{kv}_ip.0.weight"
    names = set(ip_parameters(unet))
    for v in mapping.values():
        for n in (v if isinstance(v, list) else [v]):
            if n not in names:
                raise RuntimeError(f"IP-Adapter parameter {n} not found in the UNet")
    return mapping


def vision_tokens(pipe, images: list[Image.Image]) -> torch.Tensor:
    """Penultimate hidden states of the image encoder, as IP-Adapter plus reads them."""
    pixels = pipe.feature_extractor(images, return_tensors="pt").pixel_values.to(pipe.device)
    with torch.no_grad():
        return pipe.image_encoder(pixels, output_hidden_states=True).hidden_states[-2]


def vision_bank(pipe, images: np.ndarray) -> torch.Tensor:
    return torch.cat([vision_tokens(pipe, [Image.fromarray(a) for a in images[i:i + 256]])
                      for i in range(0, len(images), 256)])


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
    global BANK
    BANK = steps.pop("bank", BANK)
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
