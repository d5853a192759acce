"""Shape fixtures: a local model mirror of every Hub repo the real presets name, with
random weights and the exact public configurations.

`python -m recontext fixtures shapes DIR [--presets sdxl,sdxl-turbo,sd15]` writes
`DIR/<org>/<name>/...` in the Hub's own file layout, so `RECONTEXT_MODELS_DIR=DIR` then
loads the presets through the ordinary `from_pretrained` / `load_ip_adapter` code at their
true shapes (weights change neither speed, memory nor shape bugs; outputs are noise).

- Configurations: copied value for value from the repos' config files; each is cited
  where it is written below. Tokenizers are a small byte-level CLIP tokenizer (its ids
  fit the real 49408-token embeddings, its end token has the highest id as in CLIP's).
- Weights: float16 safetensors. Drawing 3-4 billion fresh normal values takes many
  minutes on two CPU cores, so every tensor is a window, at a seeded random offset, of one
  seeded pool of normal values, scaled to the tensor's fan-in (biases 0, norm weights 1).
- Seeded; every repo is written into a temporary folder and moved into place when
  complete, and skipped when its `.complete` marker is there.
- MagicClothing's garment extractor (sd15): one safetensors file, a whole SD 1.5 UNet state
  dict in the published checkpoint's key layout (`write_garment_extractor`); a hard link to
  the mirror's sd15 UNet file, which holds exactly such a state dict, where it can be.
- `prune=True` (`--prune`) first removes the repos written for other presets: the CI disk
  holds one preset's mirror at a time. A full disk is reported as `MirrorDiskFull`, with
  the half-written repo removed.
- Not written: the SD 1.5 safety checker (never loaded: the studio passes
  `safety_checker=None`); the fp16 `variant` files (the plain names hold float16).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zlib

import torch
from filelock import FileLock

from .errors import StorageError

log = logging.getLogger(__name__)

SEED = 0
POOL = 1_000_003  # prime, so windows of a matrix do not line up with its rows
DONE = ".complete"

SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_TURBO = "stabilityai/sdxl-turbo"
SDXL_VAE_FIX = "madebyollin/sdxl-vae-fp16-fix"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
IP_ADAPTER = "h94/IP-Adapter"
CLIP_L = "openai/clip-vit-large-patch14"

# -- configurations ----------------------------------------------------------------------
# https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/unet/config.json
SDXL_UNET = dict(
    act_fn="silu", addition_embed_type="text_time", addition_embed_type_num_heads=64,
    addition_time_embed_dim=256, attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280],
    center_input_sample=False, class_embed_type=None, class_embeddings_concat=False, conv_in_kernel=3,
    conv_out_kernel=3, cross_attention_dim=2048, cross_attention_norm=None,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    downsample_padding=1, dual_cross_attention=False, encoder_hid_dim=None, encoder_hid_dim_type=None,
    flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
    mid_block_only_cross_attention=None, mid_block_scale_factor=1, mid_block_type="UNetMidBlock2DCrossAttn",
    norm_eps=1e-05, norm_num_groups=32, num_attention_heads=None, num_class_embeds=None,
    only_cross_attention=False, out_channels=4, projection_class_embeddings_input_dim=2816,
    resnet_out_scale_factor=1.0, resnet_skip_time_act=False, resnet_time_scale_shift="default",
    sample_size=128, time_cond_proj_dim=None, time_embedding_act_fn=None, time_embedding_dim=None,
    time_embedding_type="positional", timestep_post_act=None, transformer_layers_per_block=[1, 2, 10],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], upcast_attention=None,
    use_linear_projection=True,
)
# https://huggingface.co/stabilityai/sdxl-turbo/blob/main/unet/config.json: the same
# architecture, trained for 512 px (sample_size 64).
SDXL_TURBO_UNET = {**SDXL_UNET, "sample_size": 64}
# https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/vae/config.json
SDXL_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    force_upcast=True, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    norm_num_groups=32, sample_size=1024, scaling_factor=0.13025,
)
# https://huggingface.co/madebyollin/sdxl-vae-fp16-fix/blob/main/config.json: the same
# architecture, finetuned so float16 does not overflow.
SDXL_VAE_FP16_FIX = {**SDXL_VAE, "force_upcast": False}
# https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/text_encoder/config.json
# (CLIP ViT-L/14's text tower; the same file in stable-diffusion-v1-5 and sdxl-turbo)
CLIP_L_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-05,
    projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
# https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/text_encoder_2/config.json
# (OpenCLIP ViT-bigG/14's text tower)
BIGG_TEXT = dict(
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
    num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-05,
    projection_dim=1280, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
# https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/scheduler/scheduler_config.json
SDXL_SCHEDULER = dict(
    _class_name="EulerDiscreteScheduler", beta_end=0.012, beta_schedule="scaled_linear",
    beta_start=0.00085, clip_sample=False, interpolation_type="linear", num_train_timesteps=1000,
    prediction_type="epsilon", sample_max_value=1.0, set_alpha_to_one=False, skip_prk_steps=True,
    steps_offset=1, timestep_spacing="leading", trained_betas=None, use_karras_sigmas=False,
)
# https://huggingface.co/stabilityai/sdxl-turbo/blob/main/scheduler/scheduler_config.json
SDXL_TURBO_SCHEDULER = dict(
    _class_name="EulerAncestralDiscreteScheduler", beta_end=0.012, beta_schedule="scaled_linear",
    beta_start=0.00085, clip_sample=False, interpolation_type="linear", num_train_timesteps=1000,
    prediction_type="epsilon", sample_max_value=1.0, set_alpha_to_one=False, skip_prk_steps=True,
    steps_offset=1, timestep_spacing="trailing", trained_betas=None, use_karras_sigmas=False,
)
# https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/model_index.json
SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
    "add_watermarker": None, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
}
# https://huggingface.co/stabilityai/sdxl-turbo/blob/main/model_index.json
SDXL_TURBO_INDEX = {**SDXL_INDEX, "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
                    "feature_extractor": [None, None], "image_encoder": [None, None]}
# https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/blob/main/unet/config.json
SD15_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False, cross_attention_dim=768,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
    mid_block_scale_factor=1, norm_eps=1e-05, norm_num_groups=32, out_channels=4, sample_size=64,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
)
# https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/blob/main/vae/config.json
SD15_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, in_channels=3, out_channels=3, latent_channels=4,
    layers_per_block=2, norm_num_groups=32, sample_size=512,
)
# https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/blob/main/scheduler/scheduler_config.json
SD15_SCHEDULER = dict(
    _class_name="PNDMScheduler", beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085,
    num_train_timesteps=1000, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
    trained_betas=None, clip_sample=False,
)
# https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/blob/main/model_index.json
SD15_INDEX = {
    "_class_name": "StableDiffusionPipeline", "requires_safety_checker": True,
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
# https://huggingface.co/h94/IP-Adapter/blob/main/models/image_encoder/config.json (OpenCLIP
# ViT-H/14's vision tower, the encoder of every "vit-h" and SD 1.5 IP-Adapter)
VIT_H_VISION = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
    patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-05,
    num_channels=3,
)
# https://huggingface.co/openai/clip-vit-large-patch14/blob/main/config.json
CLIP_L_VISION = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    patch_size=14, image_size=224, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-05,
)
# https://huggingface.co/openai/clip-vit-large-patch14/blob/main/preprocessor_config.json
CLIP_PROCESSOR = dict(size=224, crop_size=224, do_center_crop=True, do_normalize=True, do_resize=True,
                      image_mean=[0.48145466, 0.4578275, 0.40821073],
                      image_std=[0.26862954, 0.26130258, 0.27577711], resample=3)
# The IP-Adapter *plus* projections (the Resampler of the IP-Adapter code, as
# diffusers' IPAdapterPlusImageProjection reads it): 16 queries, 4 layers, 64-wide heads,
# width = the UNet's cross-attention width for SDXL (1280 -> 2048 out), 768 for SD 1.5,
# feed-forward x4; shapes of h94/IP-Adapter's sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors
# and models/ip-adapter-plus_sd15.safetensors.
PLUS_SDXL = dict(dim=1280, queries=16, depth=4, ff_mult=4)

# FLUX.1-dev (flow presets). Written out as configurations only: its weights (a 12 B
# transformer, the 4.7 B T5-XXL encoder: ~34 GB in bfloat16) are beyond what `build_shapes`
# can draw on a CPU machine, so the shape mirror does not write the `flux` preset;
# `bench/flow_inversion.py --flux-shapes` builds the transformer from this on a GPU.
FLUX_DEV = "black-forest-labs/FLUX.1-dev"
FLUX_IP_ADAPTER = "XLabs-AI/flux-ip-adapter"
# https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/transformer/config.json
FLUX_TRANSFORMER = dict(attention_head_dim=128, axes_dims_rope=(16, 56, 56), guidance_embeds=True,
                        in_channels=64, joint_attention_dim=4096, num_attention_heads=24, num_layers=19,
                        num_single_layers=38, patch_size=1, pooled_projection_dim=768)
# https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/vae/config.json
FLUX_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, force_upcast=True, in_channels=3, out_channels=3,
    latent_channels=16, layers_per_block=2, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611,
    shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True,
)
# https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/scheduler/scheduler_config.json
FLUX_SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
                      num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
# https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/text_encoder_2/config.json
# (google/t5-v1_1-xxl's encoder)
FLUX_T5 = dict(d_ff=10240, d_kv=64, d_model=4096, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu",
               dense_act_fn="gelu_new", is_gated_act=True, vocab_size=32128, relative_attention_num_buckets=32,
               layer_norm_epsilon=1e-06)
# XLabs-AI/flux-ip-adapter ip_adapter.safetensors: `ip_adapter_proj_model.proj` maps the CLIP
# ViT-L/14 image embedding (768) to 4 tokens of 4096; per double-stream block (19),
# `double_blocks.{i}.processor.ip_adapter_double_stream_{k,v}_proj` (3072 x 4096, biased)
FLUX_IP = dict(tokens=4, embed_dim=768, blocks=19)
PLUS_SD15 = dict(dim=768, queries=16, depth=4, ff_mult=4)


# -- random weights --------------------------------------------------------------------
class Filler:
    """Seeded random weights, fast: windows of one pool of normal values."""

    def __init__(self, name: str):
        g = torch.Generator().manual_seed(SEED + zlib.crc32(name.encode()))
        self.pool = torch.randn(POOL, generator=g)
        self.g = g

    def __call__(self, shape, std: float) -> torch.Tensor:
        n = 1
        for s in shape:
            n *= s
        start = int(torch.randint(0, POOL, (1,), generator=self.g))
        window = (torch.cat([self.pool[start:], self.pool[:start]]) * std).half()
        out = torch.empty(n, dtype=torch.float16)
        for i in range(0, n, POOL):
            out[i:i + POOL] = window[:min(POOL, n - i)]
        return out.view(*shape)


def _init_value(name: str, shape, fill: Filler) -> torch.Tensor:
    if name.endswith("bias"):
        return torch.zeros(shape, dtype=torch.float16)
    if len(shape) <= 1:  # norm scales (and CLIP's class embedding and logit scale)
        return torch.ones(shape, dtype=torch.float16)
    fan_in = shape[-1] if len(shape) != 4 else shape[1] * shape[2] * shape[3]
    return fill(shape, (3 * fan_in) ** -0.5)  # the spread of PyTorch's default init


def random_model(build, name: str):
    """`build()` constructs a model; its parameters are created empty and filled in float16
    (buffers, e.g. position ids, are built normally)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = build()
    fill = Filler(name)
    for pname, p in list(model.named_parameters()):
        module_name, _, leaf = pname.rpartition(".")
        module = model.get_submodule(module_name)
        module._parameters[leaf] = torch.nn.Parameter(_init_value(pname, tuple(p.shape), fill),
                                                      requires_grad=False)
    for bname, b in list(model.named_buffers()):
        if b.is_floating_point():
            module_name, _, leaf = bname.rpartition(".")
            model.get_submodule(module_name)._buffers[leaf] = b.half()
    return model


def tokenizer():
    """A byte-level CLIP tokenizer: 256 byte symbols and their word-final forms, then the
    start and end tokens (the end token has the highest id, as in CLIP's own vocabulary)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


# -- writers ---------------------------------------------------------------------------
def _json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def _save(model, folder: str) -> None:
    model.save_pretrained(folder, safe_serialization=True)


def _unet(config: dict):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


def _text(config: dict, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(CLIPTextConfig(**config))


def _vae(config: dict):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


def write_pipeline(root: str, repo: str, index: dict, unet: dict, vae: dict, scheduler: dict,
                   texts: list[tuple[str, dict, bool]]) -> None:
    folder = os.path.join(root, repo)
    _json(os.path.join(folder, "model_index.json"), index)
    _json(os.path.join(folder, "scheduler", "scheduler_config.json"), scheduler)
    tok = tokenizer()
    for i, (name, config, projection) in enumerate(texts):
        _save(random_model(lambda: _text(config, projection), f"{repo}/{name}"), os.path.join(folder, name))
        tok.save_pretrained(os.path.join(folder, name.replace("text_encoder", "tokenizer")))
    _save(random_model(lambda: _vae(vae), f"{repo}/vae"), os.path.join(folder, "vae"))
    _save(random_model(lambda: _unet(unet), f"{repo}/unet"), os.path.join(folder, "unet"))
    if "feature_extractor" in index and index["feature_extractor"][0]:
        from transformers import CLIPImageProcessor

        CLIPImageProcessor(**CLIP_PROCESSOR).save_pretrained(os.path.join(folder, "feature_extractor"))


def ip_adapter_plus(unet_config: dict, vision_hidden: int, plus: dict, name: str) -> dict:
    """An IP-Adapter *plus* state dict in the original file's key layout, for a UNet."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        unet = _unet(unet_config)
    cross, dim, mult = unet_config["cross_attention_dim"], plus["dim"], plus["ff_mult"]
    shapes = {"image_proj.latents": (1, plus["queries"], dim),
              "image_proj.proj_in.weight": (dim, vision_hidden), "image_proj.proj_in.bias": (dim,),
              "image_proj.proj_out.weight": (cross, dim), "image_proj.proj_out.bias": (cross,),
              "image_proj.norm_out.weight": (cross,), "image_proj.norm_out.bias": (cross,)}
    for i in range(plus["depth"]):
        p = f"image_proj.layers.{i}."
        shapes.update({p + "0.norm1.weight": (dim,), p + "0.norm1.bias": (dim,),
                       p + "0.norm2.weight": (dim,), p + "0.norm2.bias": (dim,),
                       p + "0.to_q.weight": (dim, dim), p + "0.to_kv.weight": (2 * dim, dim),
                       p + "0.to_out.weight": (dim, dim), p + "1.0.weight": (dim,), p + "1.0.bias": (dim,),
                       p + "1.1.weight": (dim * mult, dim), p + "1.3.weight": (dim, dim * mult)})
    # One key/value projection pair per cross-attention layer, numbered as the original
    # file numbers them: every attention processor counts, the self-attention ones (even
    # numbers) hold nothing.
    for number, (proc, _) in enumerate(unet.attn_processors.items()):
        if proc.endswith("attn2.processor"):
            hidden = unet.get_submodule(proc[: -len(".processor")]).to_q.out_features
            for kv in ("k", "v"):
                shapes[f"ip_adapter.{number}.to_{kv}_ip.weight"] = (hidden, cross)
    fill = Filler(name)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("latents"):
            state[key] = fill(shape, dim ** -0.5)
        else:
            state[key] = _init_value(key, shape, fill)
    return state


def write_ip_adapter(root: str, presets: set[str]) -> None:
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = os.path.join(root, IP_ADAPTER)
    encoder = random_model(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H_VISION)),
                           f"{IP_ADAPTER}/image_encoder")
    _save(encoder, os.path.join(folder, "models", "image_encoder"))
    del encoder
    if presets & {"sdxl", "sdxl-turbo"}:
        os.makedirs(os.path.join(folder, "sdxl_models"), exist_ok=True)
        save_file(ip_adapter_plus(SDXL_UNET, VIT_H_VISION["hidden_size"], PLUS_SDXL, "plus-sdxl"),
                  os.path.join(folder, "sdxl_models", "ip-adapter-plus_sdxl_vit-h.safetensors"))
    if "sd15" in presets:
        save_file(ip_adapter_plus(SD15_UNET, VIT_H_VISION["hidden_size"], PLUS_SD15, "plus-sd15"),
                  os.path.join(folder, "models", "ip-adapter-plus_sd15.safetensors"))


def write_clip(root: str) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = os.path.join(root, CLIP_L)
    config = CLIPConfig(text_config=CLIP_L_TEXT, vision_config=CLIP_L_VISION, projection_dim=768)
    _save(random_model(lambda: CLIPModel(config), CLIP_L), folder)
    tokenizer().save_pretrained(folder)
    CLIPImageProcessor(**CLIP_PROCESSOR).save_pretrained(folder)


SAFETY_CHECKER = "CompVis/stable-diffusion-safety-checker"


def write_safety_checker(root: str) -> None:
    """CompVis/stable-diffusion-safety-checker's layout: a CLIP ViT-L/14 (its config.json) as
    `StableDiffusionSafetyChecker`, random weights, and the CLIP image processor."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    folder = os.path.join(root, SAFETY_CHECKER)
    config = CLIPConfig(text_config=CLIP_L_TEXT, vision_config=CLIP_L_VISION, projection_dim=768)
    config._attn_implementation = "eager"  # the checker's only one
    _save(random_model(lambda: StableDiffusionSafetyChecker(config), SAFETY_CHECKER), folder)
    CLIPImageProcessor(**CLIP_PROCESSOR).save_pretrained(folder)


# MagicClothing's garment extractor (the sd15 preset): one safetensors file holding a whole
# SD 1.5 UNet's state dict under diffusers' parameter names, which is how the authors load
# it (ShineChen1024/MagicClothing, garment_adapter/garment_diffusion.py: the file's tensors
# read with `safe_open` into a dict, then `ref_unet.load_state_dict(state_dict, strict=False)`
# on a copy of the pipeline's diffusers UNet).
GARMENT_EXTRACTOR = ("ShineChen1024/MagicClothing", "magic_clothing_768_vitonhd_joint.safetensors")


def write_garment_extractor(root: str, mirror: str) -> None:
    """The extractor file: random weights under the SD 1.5 UNet's parameter names. Where the
    mirror already holds the sd15 UNet (one safetensors file of exactly that state dict), the
    file is a hard link to it (1.7 GB not written twice: random weights either way)."""
    from safetensors.torch import save_file

    repo, file = GARMENT_EXTRACTOR
    out = os.path.join(root, repo, file)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    unet_file = os.path.join(mirror, SD15, "unet", "diffusion_pytorch_model.safetensors")
    if os.path.exists(unet_file):
        try:
            os.link(unet_file, out)
            return
        except OSError:  # another file system, or links refused: write it
            pass
    unet = random_model(lambda: _unet(SD15_UNET), f"{repo}/{file}")
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, out)


def _repos(presets: set[str], mirror: str) -> dict:
    """repo -> writer (of a temporary folder), for what `presets` name, in the order written."""
    jobs = {}
    if "sdxl" in presets:
        jobs[SDXL_BASE] = lambda r: write_pipeline(
            r, SDXL_BASE, SDXL_INDEX, SDXL_UNET, SDXL_VAE, SDXL_SCHEDULER,
            [("text_encoder", CLIP_L_TEXT, False), ("text_encoder_2", BIGG_TEXT, True)])
    if "sdxl-turbo" in presets:
        jobs[SDXL_TURBO] = lambda r: write_pipeline(
            r, SDXL_TURBO, SDXL_TURBO_INDEX, SDXL_TURBO_UNET, SDXL_VAE, SDXL_TURBO_SCHEDULER,
            [("text_encoder", CLIP_L_TEXT, False), ("text_encoder_2", BIGG_TEXT, True)])
    if presets & {"sdxl", "sdxl-turbo"}:
        jobs[SDXL_VAE_FIX] = lambda r: _save(random_model(lambda: _vae(SDXL_VAE_FP16_FIX), SDXL_VAE_FIX),
                                             os.path.join(r, SDXL_VAE_FIX))
    if "sd15" in presets:
        jobs[SD15] = lambda r: write_pipeline(r, SD15, SD15_INDEX, SD15_UNET, SD15_VAE, SD15_SCHEDULER,
                                              [("text_encoder", CLIP_L_TEXT, False)])
        jobs[GARMENT_EXTRACTOR[0]] = lambda r: write_garment_extractor(r, mirror)
    # one IP-Adapter repo holds the files of every preset: rebuilt when one is missing
    files = {"sdxl" if p.startswith("sdxl") else p for p in presets}
    jobs[IP_ADAPTER + "@" + ",".join(sorted(files))] = lambda r: write_ip_adapter(r, presets)
    jobs[CLIP_L] = write_clip
    jobs[SAFETY_CHECKER] = write_safety_checker
    return jobs


PRESETS = ("sdxl", "sdxl-turbo", "sd15")


class MirrorDiskFull(StorageError):
    """The disk filled while the mirror was written (what was half written is removed)."""


def build_shapes(root: str, presets=("sdxl",), prune: bool | None = None) -> str:
    """Write the mirror for `presets` into `root` (skipping repos already complete). With
    `prune`, first remove the repos no preset of `presets` needs, so a small disk holds one
    preset's mirror at a time (SDXL alone is about 10 GB). `prune=None` takes the
    `RECONTEXT_SHAPES_PRUNE` setting (1: prune), which `.ci/run` sets."""
    if prune is None:
        prune = os.environ.get("RECONTEXT_SHAPES_PRUNE") == "1"
    presets = set(presets)
    unknown = presets - set(PRESETS)
    if unknown:
        raise ValueError(f"fixtures shapes: unknown presets {sorted(unknown)}; choose from {', '.join(PRESETS)}")
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    with FileLock(os.path.join(root, ".build.lock")):
        jobs = _repos(presets, root)
        if prune:
            _prune(root, {key.partition("@")[0] for key in jobs})
        for key, write in jobs.items():
            repo, _, tag = key.partition("@")
            final = os.path.join(root, repo)
            marker = os.path.join(final, DONE)
            if os.path.exists(marker) and _covers(marker, tag):
                continue
            log.info("writing %s", repo)
            tmp = tempfile.mkdtemp(prefix=".building-", dir=root)
            try:
                write(tmp)
                with open(os.path.join(tmp, repo, DONE), "w") as f:
                    f.write(tag + "\n")
                if os.path.exists(final):
                    shutil.rmtree(final)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(os.path.join(tmp, repo), final)
            except Exception as e:
                if _no_space(e):
                    shutil.rmtree(tmp, ignore_errors=True)
                    free = shutil.disk_usage(root).free / 2**30
                    raise MirrorDiskFull(
                        f"fixtures shapes: the disk filled while writing {repo} into {root} "
                        f"({free:.1f} GB free after removing the half-written copy). A mirror takes about "
                        f"10 GB for sdxl, 5 GB for sd15: free some space, or pass --prune to drop the "
                        f"repos of presets not asked for.") from e
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return root


def _no_space(e: BaseException) -> bool:
    """True when `e` (or what caused it) is the disk filling; safetensors reports it as a
    SafetensorError whose text carries the OS error."""
    while e is not None:
        if isinstance(e, OSError) and e.errno == 28 or "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _prune(root: str, keep: set[str]) -> None:
    """Remove every repo this builder wrote (it carries the DONE marker) or half built under
    `root` that is not in `keep`; folders without the marker (real downloads) are left."""
    for org in os.listdir(root):
        path = os.path.join(root, org)
        if org.startswith(".building-"):
            shutil.rmtree(path, ignore_errors=True)
            continue
        if not os.path.isdir(path):
            continue
        for name in os.listdir(path):
            if f"{org}/{name}" not in keep and os.path.exists(os.path.join(path, name, DONE)):
                log.info("pruning %s/%s", org, name)
                shutil.rmtree(os.path.join(path, name), ignore_errors=True)
        if not os.listdir(path):
            os.rmdir(path)


def _covers(marker: str, tag: str) -> bool:
    with open(marker) as f:
        have = set(filter(None, f.read().strip().split(",")))
    return set(filter(None, tag.split(","))) <= have
