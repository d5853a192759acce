"""Training: HyperLoRA through the frozen UNet, and the per-garment LoRA baseline.

Both minimise the usual diffusion loss (predict the added noise at a random timestep).
HyperLoRA's predicted weights enter the UNet through `torch.func.functional_call`, so the
loss reaches the hypernetwork; the UNet, VAE and encoders stay frozen. `train_hyperlora`
uses accelerate: the same command runs data-parallel under `accelerate launch`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import images
from ..cache import LRU
from . import synthetic
from .hyperlora import TARGETS, HyperLoRA, HyperLoRAConfig, functional_params, target_modules

ADAPTER = "hypernetwork"  # the peft adapter the predicted weights load into
STATE = "training_state.pt"
MASK_WEIGHT = 9.0  # the garment region's extra weight in the loss, where a pair has a mask


def diffusion_loss(models, latents, cond, generator, params=None, low: int = 0,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """The model's own training loss at a random timestep: the noise error, or for a
    v-prediction model the v error, which is the noise error times 1/alpha_bar(t)
    (v - v' = (eps - eps') / sqrt(alpha_bar)); without that weight a v-model's noisiest
    steps, where a picture's colours are decided, would add almost nothing. Timesteps are
    drawn uniformly from `low` up. `weight` (1, 1, h, w) at the latents' size: a weighted
    mean over positions instead of the plain one."""
    sched = models.pipe.scheduler
    t = torch.randint(low, sched.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    noisy = sched.add_noise(latents.cpu(), noise, t).to(models.device)
    pred = models.unet_call(noisy, t.to(models.device), cond, params=params)
    error = (pred - noise.to(models.device)).square()
    if weight is None:
        error = error.mean(dim=(1, 2, 3))
    else:
        weight = weight.to(error)
        error = (error * weight).mean(dim=(1, 2, 3)) / weight.mean()
    if sched.config.prediction_type == "v_prediction":
        error = error / sched.alphas_cumprod[t].to(error)
    return error.mean()


# -- data ------------------------------------------------------------------------------
@dataclass
class Pair:
    garment: object   # path or PIL image
    image: object     # the garment worn, in a scene
    prompt: str
    mask: object = None  # where the garment is in `image` (path, PIL or array; white/True = garment)


def read_manifest(path: str) -> list[Pair]:
    """Rows `garment,image,prompt` and optionally `mask` (the garment's region in the image,
    white on black), paths relative to the manifest."""
    root = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ValueError(f"manifest {path!r} not found") from None
    if not rows or not {"garment", "image", "prompt"} <= set(rows[0]):
        raise ValueError(f"manifest {path!r}: needs the columns garment,image,prompt")
    pairs = []
    for n, row in enumerate(rows, start=2):
        for col in ("garment", "image") + (("mask",) if row.get("mask") else ()):
            if not os.path.exists(os.path.join(root, row[col] or "")):
                raise ValueError(f"manifest {path!r} line {n}: {col} file {row[col]!r} not found")
        pairs.append(Pair(os.path.join(root, row["garment"]), os.path.join(root, row["image"]),
                          row["prompt"] or "", os.path.join(root, row["mask"]) if row.get("mask") else None))
    return pairs


def synthetic_pairs(n: int, size: int, offset: int = 0) -> list[Pair]:
    """Garments `offset`.. `offset + n - 1` (`synthetic.pair`), each with its mask in the figure."""
    pairs = []
    for seed in range(offset, offset + n):
        figure, mask = synthetic.worn(seed, size)
        pairs.append(Pair(synthetic.garment(seed), figure, synthetic.scene_prompt(seed), mask=mask))
    return pairs


class Examples:
    """Pairs turned into model inputs on first use and kept: garment tokens, latents of
    the worn image, text conditioning, and the loss weight over the latents (1, plus
    `mask_weight` where the garment is; None without a mask or a weight)."""

    def __init__(self, models, pairs: list[Pair], mask_weight: float = 0.0):
        self.models, self.pairs, self._done = models, pairs, LRU(max(len(pairs), 1))
        self.mask_weight = mask_weight

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i: int):
        if i not in self._done:
            m, p = self.models, self.pairs[i]
            garment, _ = images.load_image(p.garment)
            img, _ = images.load_image(p.image)
            img, _ = images.fit(img, m.preset.resolution, m.size_multiple)
            m.set_image_scale(0.0)
            cond = m.with_image(m.text_cond(p.prompt, img.size), None)
            latents = m.encode(img)
            self._done.put(i, (m.vision_tokens(garment), latents, cond, self.weight(p, img.size, latents)))
        return self._done.get(i)

    def weight(self, pair: Pair, size: tuple[int, int], latents: torch.Tensor) -> torch.Tensor | None:
        if pair.mask is None or not self.mask_weight:
            return None
        return 1 + self.mask_weight * mask_area(pair.mask, size, latents)


def mask_area(mask, size: tuple[int, int], latents: torch.Tensor) -> torch.Tensor:
    """The mask's share of each latent position, (1, 1, h, w) in 0-1: `mask` (path, PIL or
    array; white/True = inside) fitted to `size` as its image was."""
    src = mask.astype(np.uint8) * 255 if getattr(mask, "dtype", None) == bool else mask
    mask, _ = images.load_image(src)  # clear errors for a file that is not an image
    mask = mask.convert("L").resize(size, Image.BILINEAR)
    area = torch.tensor(np.asarray(mask), dtype=torch.float32)[None, None] / 255
    return F.adaptive_avg_pool2d(area, latents.shape[-2:])


# -- HyperLoRA -------------------------------------------------------------------------
def train_hyperlora(models, pairs: list[Pair], out: str, steps: int, lr: float = 1e-3,
                    seed: int = 0, save_every: int = 100, rank: int = 4, bases: int = 8,
                    targets=TARGETS, accelerator=None, progress: bool = True, note: str = "",
                    low_timestep: int = 0, mask_weight: float | None = None, bf16: bool = False) -> list[float]:
    """Train (or resume, when `out` holds a training state) for `steps` steps in total,
    at timesteps from `low_timestep` up (where the garment's look is still undecided).
    Where a pair knows the garment's region, the loss there counts `1 + mask_weight` times
    as much as elsewhere: the garment is a small part of the picture, and without the weight
    the loss barely depends on it (tiny preset when the weight was chosen, held-out
    garments: colour error 0.565 unweighted, 0.498 at weight 9; bench/garment_fidelity.py). None: `MASK_WEIGHT`.
    `bf16`: the forward pass under bfloat16 autocast (float32 models on CUDA; the hypernetwork
    and its optimiser state stay float32).
    Returns the loss of every step run so far (resumed runs include the earlier ones)."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    acc = accelerator or Accelerator(cpu=models.device.type == "cpu")
    unet = models.pipe.unet
    vision_dim = models.pipe.image_encoder.config.hidden_size
    start, losses = 0, []
    if os.path.exists(os.path.join(out, STATE)):
        hyper = HyperLoRA.load(out, unet, vision_dim).train()
        state = torch.load(os.path.join(out, STATE), weights_only=False)
        start, losses = state["step"], state["losses"]
    else:
        torch.manual_seed(seed)
        hyper = HyperLoRA(HyperLoRAConfig([list(m) for m in target_modules(unet, targets)], vision_dim,
                                          models.preset.name, rank, bases, targets=list(targets),
                                          note=note))
    opt = torch.optim.AdamW(hyper.parameters(), lr=lr)
    if start:
        opt.load_state_dict(state["optimizer"])
    hyper.to(acc.device)
    hyper, opt = acc.prepare(hyper, opt)
    data = Examples(models, pairs, MASK_WEIGHT if mask_weight is None else mask_weight)
    gen = torch.Generator().manual_seed(seed * 100003 + start * 31 + acc.process_index)
    names = [m[0] for m in unet_modules(hyper)]

    def save(step):
        acc.wait_for_everyone()
        if acc.is_main_process:
            model = acc.unwrap_model(hyper)
            model.config.trained_steps = step
            model.save(out)
            torch.save({"step": step, "losses": losses, "optimizer": opt.state_dict(), "lr": lr,
                        "seed": seed}, os.path.join(out, STATE))

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train-hyperlora",
               disable=not (progress and acc.is_main_process))
    with models.lora(ADAPTER, names, rank), torch.enable_grad():
        for step in bar:
            tokens, latents, cond, weight = data[(step * acc.num_processes + acc.process_index) % len(data)]
            with torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=bf16):
                params = functional_params(hyper(tokens), ADAPTER)
                loss = diffusion_loss(models, latents, cond, gen, params, low=low_timestep, weight=weight)
            acc.backward(loss)
            opt.step()
            opt.zero_grad()
            losses.append(float(acc.reduce(loss.detach(), "mean")))
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
            if (step + 1) % save_every == 0 or step + 1 == steps:
                save(step + 1)
    return losses


def unet_modules(hyper) -> list:
    return getattr(hyper, "module", hyper).config.modules


# -- the per-garment LoRA baseline -----------------------------------------------------
FINETUNE_PROMPT = "a photo of sks garment"   # the identifier the fine-tuned LoRA learns
FINETUNE_ADAPTER = "finetune"


def finetune_lora(models, garment: Image.Image, steps: int, seed: int = 0, lr: float = 1e-3,
                  rank: int = 4, tick=None) -> dict[str, torch.Tensor]:
    """Fit a fresh LoRA on the UNet's attention to one garment photo for `steps` steps
    (DreamBooth-style, with an identifier prompt). Returns its state dict (peft keys)."""
    from peft import get_peft_model_state_dict

    img, _ = images.fit(garment, models.preset.resolution, models.size_multiple)
    latents = models.encode(img)
    names = [m[0] for m in target_modules(models.pipe.unet)]
    gen = torch.Generator().manual_seed(seed)
    with models.lora(FINETUNE_ADAPTER, names, rank) as unet:
        models.set_image_scale(0.0)
        cond = models.with_image(models.text_cond(FINETUNE_PROMPT, img.size), None)
        params = [p for n, p in unet.named_parameters() if f".{FINETUNE_ADAPTER}." in n]
        with torch.no_grad():  # a fresh LoRA for every garment: A random, B zero
            for n, p in unet.named_parameters():
                if f".lora_A.{FINETUNE_ADAPTER}." in n:
                    p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
                elif f".lora_B.{FINETUNE_ADAPTER}." in n:
                    p.zero_()
        opt = torch.optim.AdamW(params, lr=lr)  # params and its state: float32 (ModelOwner.lora)
        # a float16 backward pass underflows small gradients: scale the loss, and skip a step
        # whose gradients overflowed (GradScaler), so the weights never take a NaN
        scaler = torch.amp.GradScaler(models.device.type, enabled=models.dtype == torch.float16)
        for p in params:
            p.requires_grad_(True)
        try:
            with torch.enable_grad():
                for i in range(steps):
                    loss = diffusion_loss(models, latents, cond, gen)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    opt.zero_grad(set_to_none=True)
                    if tick:
                        tick(i)
        finally:
            for p in params:
                p.requires_grad_(False)
            del opt, scaler  # the optimiser's state is not kept past the fit
        return {k: v.detach().clone() for k, v in
                get_peft_model_state_dict(unet, adapter_name=FINETUNE_ADAPTER).items()}
