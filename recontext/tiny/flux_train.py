"""Train the tiny-flux preset, reproducibly from a seed.

    python -m recontext train-tiny-flux [--out recontext/tiny/flux_weights] [--seed 0] [--steps N] [--device auto]

One stage: the FLUX transformer, the tiny T5 and the XLabs-layout IP-Adapter trained
together with the rectified-flow loss (x_s = (1 - s) image + s noise, target velocity
noise - image) on the tiny world's latent bank (`train.bank`: scenes, garments and
figures, photo crops with their captions; made from the seed when it is not in `--work`).
The tiny world's VAE and CLIP are copied into `--out` first and stay frozen: the CLIP
text tower gives FLUX's pooled text embedding. The adapter's image encoder starts as the
CLIP's vision tower and trains with the adapter (see `flux.py`). Training always starts
from fresh seeded weights, whatever `--out` holds; only the checkpoint in `--work`
resumes. The pipeline is assembled and loaded as the studio loads it
(`FluxPipeline.from_pretrained`, `load_ip_adapter`), so the adapter trains in the very
processors diffusers runs.

Each batch: captions dropped 15% of the time (for classifier-free guidance); the adapter
scale is 0 for 30% of batches and uniform in 0.3-1.0 otherwise, the image conditioning its
own denoising (what Tight Inversion asks of the adapter); noise levels half uniform, half
logit-normal. Every batch is drawn from a generator seeded by (seed, step), so a resumed
run sees the same data; the checkpoint in `--work` is written every 50 steps.

Devices as in `train.py` (`--device cpu`, `cuda`, or `auto`: cuda where available): on the
CPU exactly as the committed weights were trained (batch `BATCH["cpu"]`, numpy noise, float32;
bitwise reproducible on one machine at one thread count); on CUDA batch `BATCH["cuda"]`,
bfloat16 autocast, TF32, noise drawn on the GPU, seeded but not bitwise reproducible. The
trained parameters and the optimiser's state stay float32; the files written are the same.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F

from . import WEIGHTS as WORLD_WEIGHTS
from . import arch, flux, train

log = logging.getLogger(__name__)
STEPS = 3000  # 12.5 device minutes on 2 CPU threads (flux_weights/MODEL_CARD.md)
BATCH = {"cpu": 8, "cuda": 128}  # images per step: the committed weights' on the CPU; enough to fill a GPU
CARD = "MODEL_CARD.md"


def rng_for(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, 1000, step])  # 1000: apart from train-tiny's stage indices


def copy_world(out: str, world: str = WORLD_WEIGHTS) -> None:
    """The tiny world's VAE (as its presets ship it: widened, its trained wide decoder laid over it) and
    CLIP, into `out`."""
    if os.path.exists(os.path.join(out, "vae.safetensors")):
        return
    os.makedirs(out, exist_ok=True)
    arch.save_weights(train.trained_vae(world), os.path.join(out, "vae.safetensors"))
    shutil.copy(os.path.join(world, "clip.safetensors"), os.path.join(out, "clip.safetensors"))


def latents(out: str, work: str, seed: int, n: int | None = None, device: torch.device = torch.device("cpu")) -> dict:
    """The bank's images, captions and latents scaled as FLUX's VAE scales them:
    (mode - shift) * scale, with shift and scale giving zero mean and unit variance
    (written to `out/world.json`). Latents are checked against the copied VAE and
    encoded again (on `device`) if the bank was made by another one. `n`: the bank's size
    (default `train.BANK`)."""
    data = train.bank(WORLD_WEIGHTS, work, seed, n, device=device)
    vae = arch.load_weights(arch.vae(), os.path.join(out, "vae.safetensors")).to(device)
    with torch.no_grad():
        check = vae.encode(train.to_tensor([_image(a) for a in data["images"][:4]]).to(device)).latent_dist.mode()
        z = data["latents"]
        if not torch.allclose(check.cpu(), z[:4], atol=1e-2, rtol=1e-2):
            log.info("the bank's latents come from another VAE: encoding %d images again", len(z))
            z = torch.cat([vae.encode(train.to_tensor([_image(a) for a in data["images"][i:i + 64]]).to(device))
                           .latent_dist.mode().cpu() for i in range(0, len(z), 64)])
    shift = float(z.mean())
    scale = float(1.0 / (z - shift).std())
    with open(os.path.join(out, "world.json"), "w") as f:
        json.dump({"vae_scaling_factor": scale, "vae_shift_factor": shift, "resolution": arch.RESOLUTION}, f,
                  indent=2)
    return {"images": data["images"], "captions": data["captions"], "latents": (z - shift) * scale}


def _image(a):
    from PIL import Image

    return Image.fromarray(a)


def load_pipeline(root: str):
    """The assembled preset loaded exactly as `models.ModelOwner` loads tiny-flux."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(os.path.join(root, "pipeline"), torch_dtype=torch.float32,
                                        local_files_only=True)
    pipe.load_ip_adapter(os.path.join(root, "ip_adapter"), weight_name=flux.IP_WEIGHT,
                         image_encoder_pretrained_model_name_or_path=os.path.join(root, "image_encoder"),
                         image_encoder_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(out: str, work: str, seed: int = 0, steps: int = STEPS, batch: int | None = None,
        command: str = "python -m recontext train-tiny-flux", export: bool = False, device: str = "auto",
        bank: int | None = None) -> dict:
    """Train (resuming from `work`) on `device` (`train.device_for`) and write the weights and
    model card into `out`. `batch`: images per step (default `BATCH[device]`); `bank`: the
    latent bank's size (default `train.BANK`). `export`: write what the checkpoint in `work`
    holds now, without training further (a run cut short; the card says how many of the
    planned steps it had done)."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    dev = train.device_for(device)
    batch = batch or BATCH[dev.type]
    os.makedirs(work, exist_ok=True)
    copy_world(out)
    data = None if export else latents(out, work, seed, bank, dev)
    root = os.path.join(work, "assembled-flux")
    shutil.rmtree(root, ignore_errors=True)
    torch.manual_seed(seed)
    # fresh transformer, T5 and adapter (seeded), the world's VAE and CLIP (whatever `out` holds)
    flux.assemble(root, out, fresh=True)
    pipe = load_pipeline(root).to(dev)
    model, t5, encoder = pipe.transformer.train(), pipe.text_encoder_2.train(), pipe.image_encoder.train()
    params = [p for m in (model, t5, encoder) for p in m.parameters()]
    stage = train.Stage("flux", work, {"transformer": model, "t5": t5, "image_encoder": encoder}, params,
                        lr=5e-4, steps=steps, device=dev)
    z_all = None if export else data["latents"].to(dev)
    n, side = (bank or train.BANK) if export else len(z_all), arch.RESOLUTION // pipe.vae_scale_factor
    img_ids = pipe._prepare_latent_image_ids(batch, side // 2, side // 2, dev, torch.float32)
    txt_ids = torch.zeros(flux.T5_LENGTH, 3, device=dev)
    # the image encoder's input for every bank image, once (each image is processed alone)
    pixels_all = None if export else torch.cat([
        pipe.feature_extractor([_image(a) for a in data["images"][i:i + 256]], return_tensors="pt").pixel_values
        for i in range(0, n, 256)]).to(dev)

    def loss_fn(step):
        rng = rng_for(seed, step)
        idx = rng.integers(0, n, batch)
        prompts = [data["captions"][i] if rng.random() >= 0.15 else "" for i in idx]
        scale = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.3, 1.0))
        with torch.no_grad():
            pooled = pipe._get_clip_prompt_embeds(prompts, device=dev)
        embeds = encoder(pixels_all[idx]).image_embeds[:, None]
        ids = pipe.tokenizer_2(prompts, padding="max_length", max_length=flux.T5_LENGTH, truncation=True,
                               return_tensors="pt").input_ids.to(dev)
        text = t5(ids)[0]
        pipe.set_ip_adapter_scale(scale)
        z0 = pipe._pack_latents(z_all[idx], batch, z_all.shape[1], side, side)
        noise = train.normal(rng, z0.shape, dev)
        u = rng.random(batch)
        s = np.where(rng.random(batch) < 0.5, u, 1 / (1 + np.exp(-rng.standard_normal(batch))))
        s = torch.from_numpy(s.astype(np.float32)).to(dev)
        x = (1 - s[:, None, None]) * z0 + s[:, None, None] * noise
        pred = model(hidden_states=x, timestep=s, pooled_projections=pooled, encoder_hidden_states=text,
                     txt_ids=txt_ids, img_ids=img_ids,
                     joint_attention_kwargs={"ip_adapter_image_embeds": [embeds]}, return_dict=False)[0]
        return F.mse_loss(pred, noise - z0)

    summary = {**stage.summary(), "planned_steps": steps, "steps": stage.step} if export else \
        {**stage.run(loss_fn, save_every=50), "planned_steps": steps}
    model.eval()
    arch.save_weights(train.base_state(model), os.path.join(out, "transformer.safetensors"))
    arch.save_weights(t5.eval(), os.path.join(out, "text_encoder_2.safetensors"))
    arch.save_weights(encoder.eval(), os.path.join(out, "image_encoder.safetensors"))
    arch.save_weights(flux.ip_adapter_state(model), os.path.join(out, flux.IP_WEIGHT), half=False)
    result = {**summary, "seed": seed, "batch": batch, "bank": n, "command": command,
              "threads": torch.get_num_threads(), "device": train.device_name(dev)}
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(result, f, indent=2)
    write_card(out, result)
    return result


def write_card(out: str, r: dict) -> None:
    lines = [
        "# The tiny-flux weights", "",
        "FLUX.1's architecture at the tiny world's size (see `recontext/tiny/flux.py`), trained by "
        f"`{r['command']}` (recontext/tiny/flux_train.py).", "",
        f"- seed {r['seed']}; {r['steps']} steps of batch {r['batch']}"
        + (f" (exported from the checkpoint: {r['planned_steps']} were planned)" if r['steps'] < r['planned_steps'] else "")
        + f"; AdamW 5e-4, one-cycle schedule over {r['planned_steps']} steps",
        f"- data: the tiny world's latent bank ({r['bank']} images: 55% procedural scenes, 20% garments "
        "and figures, 25% photo crops at 128 px, with captions), made from the same seed by "
        "`train.bank`; captions dropped 15%; IP-Adapter scale 0 for 30% of batches, else uniform "
        "0.3-1.0 with each image as its own condition; noise levels half uniform, half logit-normal",
        "- loss: rectified flow, MSE between the predicted and the true velocity (noise - image), "
        f"first → last {r['loss_first']:.4f} → {r['loss_last']:.4f}",
        f"- wall time {r['seconds'] / 60:.1f} min on {r.get('device', 'cpu')} ({r['threads']} CPU threads); "
        "budgets are device minutes",
        "- frozen, copied from the tiny world (`recontext/tiny/weights`): `vae.safetensors` (as the "
        "tiny preset ships it: widened, its trained wide decoder laid over it) and "
        "`clip.safetensors`; `world.json`: the VAE's scaling and shift factors (zero-mean, unit-variance latents)",
        "- trained: `transformer.safetensors`, `text_encoder_2.safetensors`, `image_encoder.safetensors` "
        "(the adapter's image encoder, started from the CLIP's vision tower) (fp16), "
        "`ip_adapter.safetensors` (XLabs key layout, float32)", ""]
    with open(os.path.join(out, CARD), "w") as f:
        f.write("\n".join(lines))
