"""Stage 3 of the tiny world (`train.py`): the UNet and its IP-Adapter *plus*, trained
together on the latent bank (images encoded once, also read by `flux_train.py`)."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import arch
from .arch import PREDICTION, load_weights, save_weights
from .trainer import BATCH, PX, Photos, Stage, garment_sample, normal, random_scene, rng_for, to_tensor


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
               image_drop: float = 0.3, device: torch.device = torch.device("cpu"),
               bank_size: int | None = None) -> dict:
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
    `ip_adapter.safetensors` (the Hub key layout). `bank_size`: the latent bank's images
    (default `BANK`)."""
    from diffusers import StableDiffusionXLPipeline

    from . import assemble

    batch = batch or BATCH[device.type]["unet"]
    start = time.perf_counter()
    data = bank(out, work, seed, bank_size, device=device)
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
