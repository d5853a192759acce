"""Named presets: which weights, at what resolution, steps and dtype.

A preset only says *where* weights come from and how to run them; every preset is
loaded by the same code in `models.py`. `tiny` points at a folder that `tiny/`
assembles on first use from the committed weights of the tiny world; the others name Hub
repositories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

import torch


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    pipeline: str                  # "sdxl", "sd15" or "flux": which diffusers pipeline class
    base: str                      # repo id or folder for `from_pretrained`
    ip_adapter: str                # repo id or folder for `load_ip_adapter`
    ip_adapter_subfolder: str
    ip_adapter_weight: str
    image_encoder_folder: str      # relative to the IP-Adapter repo; flux: the encoder's own repo
    resolution: int                # native side length in pixels
    steps: int                     # default inversion / denoising steps
    dtype: str = "float32"         # "float16" on GPU presets
    vae: str | None = None         # replacement VAE (the fp16-fix one for SDXL)
    scheduler: str = "ddim"        # "ddim" or "euler"
    scheduler_kwargs: dict = field(default_factory=dict)
    clip: str | None = None        # CLIPModel for edit alignment scores
    local: bool = False            # weights come from a folder built on this machine
    hyperlora: str | None = None   # HyperLoRA checkpoint (folder or Hub repo); None: not configured
    folder: str | None = None      # a local preset's folder, where `build` assembles its weights
    mirror: str | None = None      # RECONTEXT_MODELS_DIR: the repos are read from <mirror>/<org>/<name>
    guidance: float = 7.5          # default guidance of edits and generation
    max_sequence_length: int = 512  # flux: T5 tokens
    safety_checker: str | None = "CompVis/stable-diffusion-safety-checker"  # see recontext.safety
    build: Callable[[], None] | None = None  # makes the local weights (the tiny world) before loading
    # SDXL, an empty negative prompt: False follows diffusers (zeros where the pipeline's config sets
    # force_zeros_for_empty_prompt, as SDXL base and Turbo do); True encodes "" (the tiny world was trained so)
    encode_empty_negative: bool = False

    @property
    def flow(self) -> bool:
        """A flow-matching model (FLUX): velocity prediction, the flow inversion methods."""
        return self.pipeline == "flux"

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def offline(self) -> bool:
        """Every file is on this machine: load with `local_files_only`."""
        return self.local or self.mirror is not None

    def repos(self) -> dict[str, str]:
        """What each source is: {"base": ..., "vae": ..., "ip_adapter": ..., "clip": ...}
        (flux: also "image_encoder_folder", the image encoder's own repo)."""
        out = {k: v for k, v in (("base", self.base), ("vae", self.vae), ("ip_adapter", self.ip_adapter),
                                 ("clip", self.clip), ("safety_checker", self.safety_checker)) if v}
        if self.flow:
            out["image_encoder_folder"] = self.image_encoder_folder
        return out


def models_dir() -> str | None:
    """`RECONTEXT_MODELS_DIR`: a local mirror of the Hub repos the presets name, in the Hub's
    own file layout (`DIR/<org>/<name>/...`), for air-gapped machines and pre-downloaded
    weights. `python -m recontext fixtures shapes DIR` writes one with random weights."""
    return os.environ.get("RECONTEXT_MODELS_DIR") or None


def mirrored(repo: str, root: str) -> str:
    """Where Hub repo `org/name` lies in the mirror `root`."""
    return os.path.join(root, *repo.split("/"))


def resolution_override() -> int | None:
    """`RECONTEXT_RESOLUTION`: the working side length in pixels instead of the preset's
    (e.g. the real architectures at 256 px on a CPU). Checked against the model's size
    multiple when the model loads."""
    value = os.environ.get("RECONTEXT_RESOLUTION")
    if not value:
        return None
    try:
        side = int(value)
    except ValueError:
        side = 0
    if side <= 0 or str(side) != value.strip():
        raise ValueError(f"RECONTEXT_RESOLUTION must be a positive whole number of pixels, got {value!r}")
    return side


def cache_dir() -> str:
    """Where locally built weights live (the tiny preset)."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "recontext")
    return os.environ.get("RECONTEXT_CACHE_DIR", default)


def _tiny() -> Preset:
    from . import tiny

    root = os.path.join(cache_dir(), f"tiny-{tiny.TINY_VERSION}")
    return Preset(
        name="tiny",
        description=(
            "The tiny world: small SDXL-shaped models (VAE, CLIP, UNet, IP-Adapter plus, "
            "HyperLoRA) trained by this project on procedural scenes captioned "
            "\"a {colour} {shape} on a {colour} background\", procedural garments and a few "
            "dozen sample photos, at 128 px. Expect toy images. Every method runs its real "
            "algorithm, but not every paper's claim shows here yet: Tight Inversion improves "
            "reconstructions only slightly (about 0.1 dB; the README has the measurements)."
        ),
        pipeline="sdxl",
        base=os.path.join(root, "pipeline"),
        ip_adapter=os.path.join(root, "ip_adapter"),
        ip_adapter_subfolder="sdxl_models",
        ip_adapter_weight="ip-adapter-plus_sdxl_vit-h.safetensors",
        image_encoder_folder="models/image_encoder",
        resolution=128,
        # 20, not SDXL's 50: on the tiny UNet, 50-step DDIM reconstructions of flat scenes
        # are chaotic (7 of 24 held-out scenes grow new shapes, inversion PSNR under 30 dB;
        # 0 of 24 at 20 steps, whose mean PSNR is also higher: 28.6 dB against 26.4)
        steps=20,
        clip=os.path.join(root, "clip"),
        local=True,
        hyperlora=os.path.join(root, "hyperlora"),  # trained with the world (tiny/train.py)
        folder=root,  # the garment extractor too (tiny/weights/, EXTRACTOR)
        safety_checker=os.path.join(root, "safety_checker"),  # a tiny one: flags nothing (safety.py)
        build=partial(tiny.build, root),
        encode_empty_negative=True,  # its UNet learnt the unconditional branch from the encoded ""
    )


def _tiny_flux() -> Preset:
    from .tiny import flux

    root = os.path.join(cache_dir(), f"tiny-{flux.version()}")
    return Preset(
        name="tiny-flux",
        description=(
            "The tiny world in FLUX.1's architecture: a small flow-matching transformer, T5 and "
            "CLIP text encoders and an XLabs-layout IP-Adapter, trained by this project on the "
            "tiny world's scenes and photos at 128 px. Expect toy images. Tight Inversion "
            "improves flow-Euler's reconstructions here, not yet RF-Inversion's (the README "
            "has the measurements)."
        ),
        pipeline="flux",
        base=os.path.join(root, "pipeline"),
        ip_adapter=os.path.join(root, "ip_adapter"),
        ip_adapter_subfolder="",
        ip_adapter_weight=flux.IP_WEIGHT,
        image_encoder_folder=os.path.join(root, "image_encoder"),
        resolution=128,
        steps=28,
        clip=os.path.join(root, "clip"),
        local=True,
        folder=root,
        guidance=3.5,
        max_sequence_length=flux.T5_LENGTH,
        safety_checker=os.path.join(root, "safety_checker"),
        build=partial(flux.build, root),
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
    "flux": dict(
        description=(
            "FLUX.1-dev (bfloat16) with the XLabs FLUX IP-Adapter, 28 steps, guidance 3.5, "
            "1024 px: Tight Inversion's large-model setting (RF-Inversion)."
        ),
        pipeline="flux",
        base="black-forest-labs/FLUX.1-dev",
        # diffusers' FLUX IP-Adapter docs: load_ip_adapter("XLabs-AI/flux-ip-adapter",
        # weight_name="ip_adapter.safetensors", image_encoder_pretrained_model_name_or_path=
        # "openai/clip-vit-large-patch14")
        ip_adapter="XLabs-AI/flux-ip-adapter",
        ip_adapter_subfolder="",
        ip_adapter_weight="ip_adapter.safetensors",
        image_encoder_folder="openai/clip-vit-large-patch14",
        resolution=1024,
        steps=28,
        dtype="bfloat16",
        clip="openai/clip-vit-large-patch14",
        guidance=3.5,
        max_sequence_length=512,
    ),
}

NAMES = ("tiny", "tiny-flux", "sd15", "sdxl", "sdxl-turbo", "flux")


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
    preset = (_tiny() if name == "tiny" else _tiny_flux() if name == "tiny-flux"
              else Preset(name=name, **_HUB[name]))
    side = resolution_override()
    if side:
        preset = replace(preset, resolution=side)
    root = models_dir()
    if root and not preset.local:
        preset = replace(preset, mirror=os.path.abspath(root),
                         **{k: mirrored(v, os.path.abspath(root)) for k, v in preset.repos().items()})
    return preset


def hub_repo(name: str, source: str = "base") -> str | None:
    """The Hub repo preset `name` names for `source` ("base", "vae", ...), whatever mirror
    is set; None for the presets built on this machine."""
    return _HUB.get(name, {}).get(source)


def _has_weights(folder: str) -> bool:
    return os.path.isdir(folder) and any(f.endswith((".safetensors", ".bin")) for f in os.listdir(folder))


def missing_files(preset: Preset) -> list[tuple[str, str]]:
    """What the loader needs from the mirror and the mirror lacks: [(repo, file)]."""
    import json

    if preset.mirror is None:
        return []
    need: list[tuple[str, str, str]] = []  # (local folder, file, weights folder or "")
    index = os.path.join(preset.base, "model_index.json")
    if not os.path.exists(index):
        return [(os.path.relpath(preset.base, preset.mirror), "model_index.json")]
    with open(index) as f:
        components = {k: v for k, v in json.load(f).items()
                      if not k.startswith("_") and isinstance(v, list) and v[0]}
    configs = {"scheduler": "scheduler_config.json", "feature_extractor": "preprocessor_config.json"}
    for name, (library, _) in components.items():
        if name == "safety_checker":  # never loaded (safety_checker=None)
            continue
        if name.startswith("tokenizer"):
            need.append((preset.base, f"{name}/tokenizer_config.json", ""))
            continue
        need.append((preset.base, f"{name}/{configs.get(name, 'config.json')}", ""))
        if name not in configs:
            weights = "diffusion_pytorch_model.safetensors" if library == "diffusers" else "model.safetensors"
            need.append((preset.base, f"{name}/{weights}", name))
    if preset.vae:
        need += [(preset.vae, "config.json", ""), (preset.vae, "diffusion_pytorch_model.safetensors", ".")]
    enc = preset.image_encoder_folder
    if preset.flow:  # the XLabs file at its repo's root; the image encoder is a repo of its own
        need += [(preset.ip_adapter, preset.ip_adapter_weight, ""), (enc, "config.json", ""),
                 (enc, "model.safetensors", ".")]
    else:
        need += [(preset.ip_adapter, f"{preset.ip_adapter_subfolder}/{preset.ip_adapter_weight}", ""),
                 (preset.ip_adapter, f"{enc}/config.json", ""),
                 (preset.ip_adapter, f"{enc}/model.safetensors", enc)]
    if preset.clip:
        need += [(preset.clip, f, "") for f in ("config.json", "tokenizer_config.json",
                                                "preprocessor_config.json")]
        need.append((preset.clip, "model.safetensors", "."))
    out = []
    for folder, file, weights in need:
        ok = (_has_weights(os.path.join(folder, weights)) if weights
              else os.path.exists(os.path.join(folder, file)))
        if not ok:
            out.append((os.path.relpath(folder, preset.mirror), file))
    return out


def check_mirror(preset: Preset) -> None:
    """Refuse a mirror that lacks a file the loader needs, naming the file and its repo."""
    gone = missing_files(preset)
    if gone:
        repo, file = gone[0]
        more = f" (and {len(gone) - 1} more files)" if len(gone) > 1 else ""
        raise ValueError(f"preset {preset.name}: the models folder {preset.mirror} lacks {file} of "
                         f"the Hub repo {repo} (expected at {os.path.join(preset.mirror, repo, file)}){more}")
