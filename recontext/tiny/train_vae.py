"""Stages 1 and 5 of the tiny world (`train.py`): the autoencoder (`vae`), then the same VAE
widened and deepened with its larger decoder trained further (`widen`)."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

from .. import images, metrics
from . import arch, world
from .arch import save_weights, trained_vae, widened
from .trainer import BATCH, PX, Photos, Stage, garment_sample, normal, random_scene, rng_for, to_tensor

log = logging.getLogger(__name__)

DECODER_LR = 1e-3
WIDE_PHOTOS = 0.8  # the widen stage's share of photo crops (scenes and garments are easy)


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
