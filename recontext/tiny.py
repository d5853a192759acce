"""Build the offline `tiny` preset: random, seeded, SDXL-shaped models saved on disk.

Everything is written in the same folder layout as the Hub repositories, so the tiny
preset is then loaded by exactly the code that loads the real ones (`from_pretrained`,
`load_ip_adapter`). Two honest changes make inversion meaningful on random weights
(measured in OFFLINE.md): the VAE's `scaling_factor` gives latents unit variance, and
the UNet's `conv_out` is scaled by 0.1. Then the UNet is trained briefly (400 steps,
about 15 s on 2 CPU cores) to predict noise on procedural scenes and the sample photos:
a random UNet predicts none, and a LoRA on its attention alone cannot learn to, so
without this no adapter (HyperLoRA, fine-tuned LoRA) could learn anything on tiny.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import numpy as np
import torch
from filelock import FileLock
from safetensors.torch import save_file

TINY_VERSION = "v2"  # bump when the builder changes what it writes
SEED = 0
log = logging.getLogger(__name__)
TEXT_HIDDEN = 32
RESOLUTION = 64
PRETRAIN_STEPS, PRETRAIN_SCENES = 400, 64


def build(root: str) -> str:
    """Build the tiny preset into `root` once (safe across processes); return `root`."""
    done = os.path.join(root, "BUILT")
    if os.path.exists(done):
        return root
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
    with FileLock(os.path.abspath(root) + ".lock"):
        if os.path.exists(done):
            return root
        tmp = tempfile.mkdtemp(prefix=".tiny-", dir=os.path.dirname(os.path.abspath(root)))
        try:
            _build_into(tmp)
            with open(os.path.join(tmp, "BUILT"), "w") as f:
                f.write(TINY_VERSION + "\n")
            if os.path.exists(root):
                shutil.rmtree(root)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())  # the 256 byte-level symbols
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("i", "n"), ("o", "n</w>"), ("e", "r")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _text_config(tok, projection: bool):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tok), hidden_size=TEXT_HIDDEN, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=TEXT_HIDDEN,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )


def _calibration_images() -> list[np.ndarray]:
    from skimage import data
    from skimage.transform import resize

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return [resize(p, (RESOLUTION, RESOLUTION), anti_aliasing=True) for p in photos]


def _pretrain_unet(pipe, steps: int) -> None:
    """Teach the random UNet the diffusion loss on procedural scenes (empty prompt) and the
    sample photos: Adam, seeded, `steps` steps of one image each."""
    from .garment.synthetic import scene

    g = torch.Generator().manual_seed(SEED + 2)
    images = [np.asarray(scene(500 + i, RESOLUTION), dtype=np.float32) / 255
              for i in range(PRETRAIN_SCENES)] + _calibration_images()
    with torch.no_grad():
        x = torch.tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2) * 2 - 1
        latents = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
        text, _, pooled, _ = pipe.encode_prompt("", device="cpu", do_classifier_free_guidance=False)
        time_ids = pipe._get_add_time_ids((RESOLUTION,) * 2, (0, 0), (RESOLUTION,) * 2, dtype=text.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    added = {"text_embeds": pooled, "time_ids": time_ids}
    unet, sched = pipe.unet, pipe.scheduler
    opt = torch.optim.Adam(unet.parameters(), lr=1e-3)
    unet.train()
    for _ in range(steps):
        z0 = latents[torch.randint(0, len(latents), (1,), generator=g)]
        t = torch.randint(0, sched.config.num_train_timesteps, (1,), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        pred = unet(sched.add_noise(z0, noise, t), t, encoder_hidden_states=text,
                    added_cond_kwargs=added).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        loss.backward()
        opt.step()
        opt.zero_grad()
    unet.eval().requires_grad_(False)


def _vision_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=32, patch_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=32,
    )


def _ip_adapter_plus(unet, vision_hidden: int, generator) -> dict[str, torch.Tensor]:
    """A random IP-Adapter *plus* file in the original (Hub) key layout."""
    cross, dim, mult, queries, heads = unet.config.cross_attention_dim, 64, 4, 4, 1
    inner = heads * 64  # diffusers reads heads = to_q rows // 64

    def rand(*shape, scale=0.02):
        return torch.randn(*shape, generator=generator) * scale

    sd = {
        "image_proj.latents": rand(1, queries, dim, scale=dim**-0.5),
        "image_proj.proj_in.weight": rand(dim, vision_hidden), "image_proj.proj_in.bias": torch.zeros(dim),
        "image_proj.proj_out.weight": rand(cross, dim), "image_proj.proj_out.bias": torch.zeros(cross),
        "image_proj.norm_out.weight": torch.ones(cross), "image_proj.norm_out.bias": torch.zeros(cross),
    }
    for i in range(4):
        p = f"image_proj.layers.{i}."
        sd.update({
            p + "0.norm1.weight": torch.ones(dim), p + "0.norm1.bias": torch.zeros(dim),
            p + "0.norm2.weight": torch.ones(dim), p + "0.norm2.bias": torch.zeros(dim),
            p + "0.to_q.weight": rand(inner, dim), p + "0.to_kv.weight": rand(2 * inner, dim),
            p + "0.to_out.weight": rand(dim, inner),
            p + "1.0.weight": torch.ones(dim), p + "1.0.bias": torch.zeros(dim),
            p + "1.1.weight": rand(dim * mult, dim), p + "1.3.weight": rand(dim, dim * mult),
        })
    channels = unet.config.block_out_channels
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        # k and v of the image tokens: scaled like the text projections so the image matters.
        sd[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hidden, cross, scale=cross**-0.5)
        sd[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(hidden, cross, scale=cross**-0.5)
        key_id += 2
    return {k: v.contiguous() for k, v in sd.items()}


def _build_into(root: str) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextModel,
                              CLIPTextModelWithProjection, CLIPVisionModelWithProjection)

    torch.manual_seed(SEED)
    tok = _tokenizer()
    text_encoder = CLIPTextModel(_text_config(tok, projection=False))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tok, projection=True))
    unet = UNet2DConditionModel(
        sample_size=RESOLUTION // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, cross_attention_dim=2 * TEXT_HIDDEN,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + TEXT_HIDDEN, norm_num_groups=32,
    )
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=32, sample_size=RESOLUTION,
    )
    with torch.no_grad():  # unit-variance latents, measured on sample photos
        x = torch.tensor(np.stack(_calibration_images()), dtype=torch.float32).permute(0, 3, 1, 2) * 2 - 1
        std = vae.encode(x).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tok,
        tokenizer_2=tok, unet=unet, scheduler=scheduler, image_encoder=None, feature_extractor=None,
    )
    _pretrain_unet(pipe, PRETRAIN_STEPS)
    pipe.save_pretrained(os.path.join(root, "pipeline"))

    # IP-Adapter plus, in the h94/IP-Adapter layout.
    ip_root = os.path.join(root, "ip_adapter")
    encoder = CLIPVisionModelWithProjection(_vision_config())
    encoder.save_pretrained(os.path.join(ip_root, "models", "image_encoder"))
    g = torch.Generator().manual_seed(SEED + 1)
    os.makedirs(os.path.join(ip_root, "sdxl_models"))
    save_file(_ip_adapter_plus(unet, encoder.config.hidden_size, g),
              os.path.join(ip_root, "sdxl_models", "ip-adapter-plus_sdxl_vit-h.safetensors"))

    # A tiny CLIP (text + vision) for edit-alignment scores, laid out like openai/clip-vit-*.
    clip = CLIPModel(CLIPConfig(text_config=_text_config(tok, True).to_dict(),
                                vision_config=_vision_config().to_dict(), projection_dim=32))
    clip.save_pretrained(os.path.join(root, "clip"))
    tok.save_pretrained(os.path.join(root, "clip"))
    CLIPImageProcessor(size=32, crop_size=32).save_pretrained(os.path.join(root, "clip"))
    with open(os.path.join(root, "README.json"), "w") as f:
        json.dump({"what": "recontext tiny preset: random seeded weights, the UNet trained "
                   f"{PRETRAIN_STEPS} steps on procedural scenes and sample photos", "seed": SEED,
                   "version": TINY_VERSION, "vae_scaling_factor": 1.0 / std}, f, indent=2)


HYPERLORA_STEPS, HYPERLORA_PAIRS = 300, 32


def build_hyperlora(folder: str, models) -> None:
    """The tiny preset's HyperLoRA checkpoint: trained on synthetic pairs on first use
    (seeded; about 15 s on 2 CPU cores), under a file lock."""
    if os.path.exists(os.path.join(folder, "BUILT")):
        return
    from .garment.train import synthetic_pairs, train_hyperlora

    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with FileLock(folder + ".lock"):
        if os.path.exists(os.path.join(folder, "BUILT")):
            return
        shutil.rmtree(folder, ignore_errors=True)
        log.info("training the tiny HyperLoRA checkpoint (%d steps on %d synthetic pairs)",
                 HYPERLORA_STEPS, HYPERLORA_PAIRS)
        train_hyperlora(models, synthetic_pairs(HYPERLORA_PAIRS, models.preset.resolution), folder,
                        steps=HYPERLORA_STEPS, seed=SEED, save_every=HYPERLORA_STEPS, progress=False,
                        note=f"tiny preset: trained {HYPERLORA_STEPS} steps on {HYPERLORA_PAIRS} "
                             "synthetic pairs when first used")
        open(os.path.join(folder, "BUILT"), "w").close()
