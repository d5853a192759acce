"""How the model owner (`models.ModelOwner`) loads what every method shares, each once: the
preset's pipeline (SD 1.5 / SDXL with IP-Adapter, or FLUX.1 with XLabs' IP-Adapter) as
diffusers documents it (`from_pretrained`, `load_ip_adapter`), frozen on the device in the
compute dtype; the CLIP model of the edit-alignment scores; the safety checker.
"""

from __future__ import annotations

import logging
import os

import torch

from .precision import compute_in
from .presets import Preset

log = logging.getLogger(__name__)


def flag(name: str) -> bool:
    """An on/off environment setting: 1 / true / yes / on turn it on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def speed_settings(unet, device: torch.device) -> None:
    """What the environment asks of a loaded UNet (after its projections are fused or not)."""
    if os.environ.get("RECONTEXT_GRADIENT_CHECKPOINTING", "1" if device.type == "cuda" else "0") == "1":
        # acts only while gradients are on (the fine-tuned LoRA, HyperLoRA training): the
        # UNet's activations are recomputed in the backward pass instead of kept
        unet.enable_gradient_checkpointing()
    if flag("RECONTEXT_CHANNELS_LAST"):
        unet.to(memory_format=torch.channels_last)
    if flag("RECONTEXT_COMPILE"):  # compiled on the first call (seconds to minutes)
        unet.forward = torch.compile(unet.forward, mode="max-autotune-no-cudagraphs")


class ProjectOnce(torch.nn.Module):
    """Wraps the UNet's IP-Adapter image projection (for *plus*, a Perceiver resampler).
    Its input, the image embeddings, stays the same tensor for a whole inversion, so
    the projection is computed once per tensor instead of at every UNet call."""

    def __init__(self, projection: torch.nn.Module):
        super().__init__()
        self.inner = projection
        self._last: tuple[list, object] | None = None

    @property
    def image_projection_layers(self):  # what diffusers' pipelines look up
        return self.inner.image_projection_layers

    def forward(self, image_embeds):
        if torch.is_grad_enabled():
            return self.inner(image_embeds)
        if self._last is None or len(self._last[0]) != len(image_embeds) or not all(
                a is b for a, b in zip(self._last[0], image_embeds)):
            # keep the inputs referenced, so `is` cannot match a new tensor at an old address
            self._last = (list(image_embeds), self.inner(image_embeds))
        return self._last[1]


def size_multiple(pipe) -> int:
    if "transformer" in pipe.components:  # FLUX: the VAE's downsampling, then latents packed 2x2
        return max(16, pipe.vae_scale_factor * 2)
    return max(8, pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))


def load_unet(p: Preset, weights: torch.dtype):
    """An SD 1.5 / SDXL pipeline with its scheduler and IP-Adapter (scale 0), loaded as
    diffusers documents it: `from_pretrained`, then `load_ip_adapter`."""
    from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler,
                           StableDiffusionPipeline, StableDiffusionXLPipeline)

    common = dict(torch_dtype=weights, local_files_only=p.offline)
    extra = {}
    if p.vae:
        extra["vae"] = AutoencoderKL.from_pretrained(p.vae, **common)
    cls = StableDiffusionXLPipeline if p.pipeline == "sdxl" else StableDiffusionPipeline
    if cls is StableDiffusionPipeline:
        extra.update(safety_checker=None, requires_safety_checker=False)
    log.info("loading %s from %s", p.name, p.base)
    pipe = cls.from_pretrained(p.base, **common, **extra)
    sched_cls = EulerDiscreteScheduler if p.scheduler == "euler" else DDIMScheduler
    pipe.scheduler = sched_cls.from_config(pipe.scheduler.config, **p.scheduler_kwargs)
    if pipe.scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"preset {p.name}: prediction type {pipe.scheduler.config.prediction_type!r} "
                         "is not supported (epsilon or v_prediction)")
    pipe.load_ip_adapter(p.ip_adapter, subfolder=p.ip_adapter_subfolder,
                         weight_name=p.ip_adapter_weight,
                         image_encoder_folder=p.image_encoder_folder, local_files_only=p.offline)
    pipe.set_ip_adapter_scale(0.0)
    pipe.unet.encoder_hid_proj = ProjectOnce(pipe.unet.encoder_hid_proj)
    return pipe, (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None), pipe.image_encoder)


def load_flux(p: Preset, weights: torch.dtype):
    """FLUX.1 (a flow-matching transformer) with the XLabs IP-Adapter, loaded as diffusers
    documents it: `FluxPipeline.from_pretrained`, then `load_ip_adapter` with the CLIP
    image encoder's repo; the adapter's scale starts at 0."""
    from diffusers import FluxPipeline

    log.info("loading %s from %s", p.name, p.base)
    pipe = FluxPipeline.from_pretrained(p.base, torch_dtype=weights, local_files_only=p.offline)
    pipe.load_ip_adapter(p.ip_adapter, subfolder=p.ip_adapter_subfolder, weight_name=p.ip_adapter_weight,
                         image_encoder_pretrained_model_name_or_path=p.image_encoder_folder,
                         image_encoder_dtype=weights, local_files_only=p.offline)
    pipe.set_ip_adapter_scale(0.0)
    return pipe, (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.image_encoder)


def vae_upcast(vae, dtype: torch.dtype) -> bool:
    """The VAE runs in float32 while the rest computes in float16: its config asks for
    it (`force_upcast`, as diffusers' SDXL pipeline reads it; SDXL's own VAE overflows in
    float16, the fp16-fix VAE does not and says so)."""
    return dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))


def ready(pipe, modules, p: Preset, device: torch.device, dtype: torch.dtype, weights: torch.dtype):
    """A loaded pipeline on the device, its `modules` frozen (float16 weights computed
    in float32 where asked), its working size checked; shared by every model family."""
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    for module in modules:
        if module is None:
            continue
        module.requires_grad_(False).eval()
        if module is pipe.vae and vae_upcast(pipe.vae, dtype):  # as StableDiffusionXLPipeline does
            module.to(torch.float32)
        elif weights != dtype:
            compute_in(module, dtype)
    multiple = size_multiple(pipe)
    if p.resolution % multiple:
        raise ValueError(f"preset {p.name}: resolution {p.resolution} (RECONTEXT_RESOLUTION) must be "
                         f"a multiple of {multiple} for this model")
    return pipe


def load_clip(p: Preset, device: torch.device, dtype: torch.dtype, weights: torch.dtype):
    """(CLIPModel, tokenizer, image processor) of the preset's CLIP, frozen on `device`."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    kw = dict(local_files_only=p.offline)
    model = CLIPModel.from_pretrained(p.clip, dtype=weights, **kw)
    model = model.to(device).requires_grad_(False)
    if weights != dtype:
        compute_in(model, dtype)
    return (model.eval(), CLIPTokenizer.from_pretrained(p.clip, **kw), CLIPImageProcessor.from_pretrained(p.clip, **kw))


def load_safety(p: Preset, device: torch.device, dtype: torch.dtype, weights: torch.dtype):
    """(checker, image processor, compute dtype): the preset's safety checker (see `safety`)."""
    from . import safety

    checker, processor = safety.load(p.safety_checker, device, weights, p.offline)
    if weights != dtype:  # float16 weights computed in float32 (a CPU)
        compute_in(checker, dtype)
    return checker, processor, dtype
