"""Named presets: which weights, at what resolution, steps and dtype.

A preset only says *where* weights come from and how to run them; every preset is
loaded by the same code in `models.py`. `tiny` points at a folder that `tiny/`
assembles on first use from the committed weights of the tiny world; the others name Hub
repositories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    pipeline: str                  # "sdxl" or "sd15": which diffusers pipeline class
    base: str                      # repo id or folder for `from_pretrained`
    ip_adapter: str                # repo id or folder for `load_ip_adapter`
    ip_adapter_subfolder: str
    ip_adapter_weight: str
    image_encoder_folder: str      # relative to the IP-Adapter repo
    resolution: int                # native side length in pixels
    steps: int                     # default inversion / denoising steps
    dtype: str = "float32"         # "float16" on GPU presets
    vae: str | None = None         # replacement VAE (the fp16-fix one for SDXL)
    scheduler: str = "ddim"        # "ddim" or "euler"
    scheduler_kwargs: dict = field(default_factory=dict)
    clip: str | None = None        # CLIPModel for edit alignment scores
    local: bool = False            # weights come from a folder built on this machine
    hyperlora: str | None = None   # HyperLoRA checkpoint (folder or Hub repo); None: not configured

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def cache_dir() -> str:
    """Where locally built weights live (the tiny preset)."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "recontext")
    return os.environ.get("RECONTEXT_CACHE_DIR", default)


def _tiny() -> Preset:
    from .tiny import TINY_VERSION

    root = os.path.join(cache_dir(), f"tiny-{TINY_VERSION}")
    return Preset(
        name="tiny",
        description=(
            "The tiny world: small SDXL-shaped models (VAE, CLIP, UNet, IP-Adapter plus, "
            "HyperLoRA) trained by this project on procedural scenes captioned "
            "\"a {colour} {shape} on a {colour} background\", procedural garments and a few "
            "dozen sample photos, at 128 px. Expect toy images; the methods behave as in "
            "their papers."
        ),
        pipeline="sdxl",
        base=os.path.join(root, "pipeline"),
        ip_adapter=os.path.join(root, "ip_adapter"),
        ip_adapter_subfolder="sdxl_models",
        ip_adapter_weight="ip-adapter-plus_sdxl_vit-h.safetensors",
        image_encoder_folder="models/image_encoder",
        resolution=128,
        steps=50,
        clip=os.path.join(root, "clip"),
        local=True,
        hyperlora=os.path.join(root, "hyperlora"),  # trained with the world (tiny/train.py)
    )


_HUB = {
    "sd15": dict(
        description="Stable Diffusion 1.5 with IP-Adapter plus (SD 1.5), DDIM, 512 px.",
        pipeline="sd15",
        base="stable-diffusion-v1-5/stable-diffusion-v1-5",
        ip_adapter="h94/IP-Adapter",
        ip_adapter_subfolder="models",
        ip_adapter_weight="ip-adapter-plus_sd15.safetensors",
        image_encoder_folder="models/image_encoder",
        resolution=512,
        steps=50,
        dtype="float16",
        clip="openai/clip-vit-large-patch14",
    ),
    "sdxl": dict(
        description=(
            "SDXL base 1.0 with IP-Adapter plus ViT-H and the fp16-fix VAE, DDIM, 1024 px: "
            "the Tight Inversion paper's setting."
        ),
        pipeline="sdxl",
        base="stabilityai/stable-diffusion-xl-base-1.0",
        vae="madebyollin/sdxl-vae-fp16-fix",
        ip_adapter="h94/IP-Adapter",
        ip_adapter_subfolder="sdxl_models",
        ip_adapter_weight="ip-adapter-plus_sdxl_vit-h.safetensors",
        image_encoder_folder="models/image_encoder",
        resolution=1024,
        steps=50,
        dtype="float16",
        clip="openai/clip-vit-large-patch14",
    ),
    "sdxl-turbo": dict(
        description="SDXL-Turbo with an Euler scheduler: few steps (4), 512 px, for fast demos.",
        pipeline="sdxl",
        base="stabilityai/sdxl-turbo",
        vae="madebyollin/sdxl-vae-fp16-fix",
        ip_adapter="h94/IP-Adapter",
        ip_adapter_subfolder="sdxl_models",
        ip_adapter_weight="ip-adapter-plus_sdxl_vit-h.safetensors",
        image_encoder_folder="models/image_encoder",
        resolution=512,
        steps=4,
        dtype="float16",
        scheduler="euler",
        scheduler_kwargs={"timestep_spacing": "trailing"},
        clip="openai/clip-vit-large-patch14",
    ),
}

NAMES = ("tiny", "sd15", "sdxl", "sdxl-turbo")


def resolve_name(name: str | None = None) -> str:
    """`auto` (the default) is `sdxl` where CUDA is present, otherwise `tiny`."""
    name = name or os.environ.get("RECONTEXT_PRESET") or "auto"
    if name == "auto":
        return "sdxl" if torch.cuda.is_available() else "tiny"
    if name not in NAMES:
        raise ValueError(f"unknown preset {name!r}; choose one of: auto, {', '.join(NAMES)}")
    return name


def get(name: str | None = None) -> Preset:
    name = resolve_name(name)
    if name == "tiny":
        return _tiny()
    return Preset(name=name, **_HUB[name])
