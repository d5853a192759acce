"""The one owner of every heavy object in a process.

The base pipeline is loaded lazily, once, with the preset's weights; IP-Adapter is
attached to its UNet right away and afterwards only switched by scale. Everything else
(the inversion loops, editing, the tabs) receives components from here and never loads
a model itself. Calls that touch shared state (adapter scales, LoRA switches) run under
`owner.lock`, so two requests from the web page never interleave on the one UNet.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from PIL import Image

from .cache import LRU
from .presets import Preset, check_mirror

log = logging.getLogger(__name__)


@dataclass
class Cond:
    """What the UNet is conditioned on. With guidance > 1 every tensor holds the
    unconditional half first, then the conditional one (the diffusers convention)."""

    text: torch.Tensor
    added: dict = field(default_factory=dict)
    guidance: float = 1.0
    # more than two guidance branches (MagicClothing's joint guidance): the latents go
    # through the UNet once per row of `text`, and `mix` combines the predictions (a tuple,
    # in the rows' order) into one; None: classifier-free guidance over two rows
    mix: object = None

    @property
    def guided(self) -> bool:
        return self.guidance > 1.0

    @property
    def rows(self) -> int:
        """How many times each latent goes through the model per call."""
        return len(self.text) if self.mix is not None else 2 if self.guided else 1


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


def image_key(image: Image.Image) -> str:
    """A content hash of an image: the cache key for embeddings and inversions."""
    h = hashlib.sha1(image.tobytes())
    h.update(f"{image.mode}{image.size}".encode())
    return h.hexdigest()


class _LinearUpcast(torch.autograd.Function):
    """`F.linear` with a frozen weight stored in a narrower dtype, cast to the input's dtype
    for the product; the backward pass casts it again instead of keeping the wide copy."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(weight)
        return F.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return grad @ weight.to(grad.dtype), None, None


class _Conv2dUpcast(torch.autograd.Function):
    """The same for `F.conv2d` (zero padding, as every diffusers convolution)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(weight)
        ctx.conv = (x.shape, stride, padding, dilation, groups)
        return F.conv2d(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype),
                        stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        shape, stride, padding, dilation, groups = ctx.conv
        gx = torch.nn.grad.conv2d_input(shape, weight.to(grad.dtype), grad, stride, padding, dilation, groups)
        return gx, None, None, None, None, None, None


def _linear_upcast(layer, x):
    return _LinearUpcast.apply(x.to(layer.compute_dtype), layer.weight, layer.bias)


def _conv_upcast(layer, x):
    return _Conv2dUpcast.apply(x.to(layer.compute_dtype), layer.weight, layer.bias, layer.stride,
                               layer.padding, layer.dilation, layer.groups)


def compute_in(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Run a frozen `module` in `dtype` while its Linear and Conv2d weights stay stored as
    loaded (e.g. float16): each is cast as its layer runs, forward and backward, so memory
    holds the narrow weights plus one layer's wide copy. Everything else (norms,
    embeddings, small parameters) is moved to `dtype`. How the full-size presets run on a
    CPU, where float16 / bfloat16 matmuls are slow and float32 weights do not fit."""
    for m in module.modules():
        if type(m) is torch.nn.Linear or (type(m) is torch.nn.Conv2d and m.padding_mode == "zeros"
                                          and not isinstance(m.padding, str)):
            m.compute_dtype = dtype
            m.forward = (_linear_upcast if type(m) is torch.nn.Linear else _conv_upcast).__get__(m)
            continue
        for p in m.parameters(recurse=False):
            p.data = p.data.to(dtype)
        for name, b in m.named_buffers(recurse=False):
            if b.is_floating_point():
                setattr(m, name, b.to(dtype))
    return module


def _size_multiple(pipe) -> int:
    if "transformer" in pipe.components:  # FLUX: the VAE's downsampling, then latents packed 2x2
        return max(16, pipe.vae_scale_factor * 2)
    return max(8, pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))


DTYPES = ("float16", "bfloat16", "float32")


def compute_dtype(preset: Preset, device: torch.device) -> torch.dtype:
    """`RECONTEXT_DTYPE` (float16, bfloat16 or float32): the dtype the models compute in, on
    any device (how the tests reproduce a GPU's float16 on a CPU). Default: the preset's on
    CUDA (float16 / bfloat16), float32 elsewhere."""
    name = os.environ.get("RECONTEXT_DTYPE")
    if not name:
        return preset.torch_dtype if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"RECONTEXT_DTYPE must be float16, bfloat16 or float32, got {name!r}")
    return getattr(torch, name)


class NonFiniteError(ValueError):
    """A model produced NaN or infinite values: reported, never decoded into a black picture."""


def check_finite(x: torch.Tensor, what: str, dtype: torch.dtype) -> None:
    """Refuse `x` (latents about to be decoded, or the decoded pixels) with a message naming
    `what` made it and the likely cause, when any value is NaN or infinite."""
    if bool(torch.isfinite(x).all()):
        return
    bad = int((~torch.isfinite(x)).sum())
    cause = (f"the model computes in {str(dtype).replace('torch.', '')}, which overflows here; "
             "set RECONTEXT_DTYPE=float32 (or bfloat16) and try again"
             if dtype in (torch.float16, torch.bfloat16) else
             "the model's weights or this request's settings (guidance, scale) made it diverge")
    raise NonFiniteError(f"{what}: the model returned {bad} non-finite values (NaN or infinity), so "
                         f"there is no picture to show. Likely cause: {cause}.")


def weights_dtype(compute: torch.dtype) -> torch.dtype:
    """`RECONTEXT_WEIGHTS_DTYPE` (float16, bfloat16 or float32): the dtype weights are kept in,
    when it differs from the one they compute in (see `compute_in`). Default: the same."""
    name = os.environ.get("RECONTEXT_WEIGHTS_DTYPE")
    if not name:
        return compute
    if name not in DTYPES:
        raise ValueError(f"RECONTEXT_WEIGHTS_DTYPE must be float16, bfloat16 or float32, got {name!r}")
    return getattr(torch, name)


def _flag(name: str) -> bool:
    """An on/off environment setting: 1 / true / yes / on turn it on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class ModelOwner:
    def __init__(self, preset: Preset, device: torch.device | str | None = None):
        self.preset = preset
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = compute_dtype(preset, self.device)
        self.weights_dtype = weights_dtype(self.dtype)  # storage
        self.base_loads = 0
        self._unet_evaluations = 0  # latents passed through the UNet (a guided call counts 2)
        self.lock = threading.RLock()
        self._pipe = None
        self._clip = None
        self._embeds = LRU(16)  # image key -> (photo, blank) IP-Adapter embeddings
        self._unfused = None  # the processors replaced by fused ones (None: not fused)
        self._safety = None

    # -- loading ---------------------------------------------------------------------
    @property
    def pipe(self):
        with self.lock:
            if self._pipe is None:
                self._pipe = self._load()
                self.base_loads += 1
            return self._pipe

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    def _load(self):
        from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler,
                               StableDiffusionPipeline, StableDiffusionXLPipeline)

        p = self.preset
        if p.build is not None:
            p.build()
        check_mirror(p)
        if p.flow:
            return self._load_flux()
        common = dict(torch_dtype=self.weights_dtype, local_files_only=p.offline)
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
        pipe = self._ready(pipe, (pipe.unet, pipe.vae, pipe.text_encoder,
                                  getattr(pipe, "text_encoder_2", None), pipe.image_encoder))
        if os.environ.get("RECONTEXT_GRADIENT_CHECKPOINTING", "1" if self.device.type == "cuda" else "0") == "1":
            # acts only while gradients are on (the fine-tuned LoRA, HyperLoRA training): the
            # UNet's activations are recomputed in the backward pass instead of kept
            pipe.unet.enable_gradient_checkpointing()
        if _flag("RECONTEXT_FUSE_QKV"):
            self._set_fused(pipe.unet, True)
        if _flag("RECONTEXT_CHANNELS_LAST"):
            pipe.unet.to(memory_format=torch.channels_last)
        if _flag("RECONTEXT_COMPILE"):  # compiled on the first call (seconds to minutes)
            pipe.unet.forward = torch.compile(pipe.unet.forward, mode="max-autotune-no-cudagraphs")
        return pipe

    def _load_flux(self):
        """FLUX.1 (a flow-matching transformer) with the XLabs IP-Adapter, loaded as diffusers
        documents it: `FluxPipeline.from_pretrained`, then `load_ip_adapter` with the CLIP
        image encoder's repo; the adapter's scale starts at 0."""
        from diffusers import FluxPipeline

        p = self.preset
        log.info("loading %s from %s", p.name, p.base)
        pipe = FluxPipeline.from_pretrained(p.base, torch_dtype=self.weights_dtype, local_files_only=p.offline)
        pipe.load_ip_adapter(p.ip_adapter, subfolder=p.ip_adapter_subfolder, weight_name=p.ip_adapter_weight,
                             image_encoder_pretrained_model_name_or_path=p.image_encoder_folder,
                             image_encoder_dtype=self.weights_dtype, local_files_only=p.offline)
        pipe.set_ip_adapter_scale(0.0)
        return self._ready(pipe, (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2,
                                  pipe.image_encoder))

    def _ready(self, pipe, modules):
        """A loaded pipeline on the device, its `modules` frozen (float16 weights computed
        in float32 where asked), its working size checked; shared by every model family."""
        p = self.preset
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        for module in modules:
            if module is None:
                continue
            module.requires_grad_(False).eval()
            if module is pipe.vae and self.vae_upcast(pipe.vae):  # as StableDiffusionXLPipeline does
                module.to(torch.float32)
            elif self.weights_dtype != self.dtype:
                compute_in(module, self.dtype)
        multiple = _size_multiple(pipe)
        if p.resolution % multiple:
            raise ValueError(f"preset {p.name}: resolution {p.resolution} (RECONTEXT_RESOLUTION) must be "
                             f"a multiple of {multiple} for this model")
        return pipe

    def vae_upcast(self, vae) -> bool:
        """The VAE runs in float32 while the rest computes in float16: its config asks for
        it (`force_upcast`, as diffusers' SDXL pipeline reads it; SDXL's own VAE overflows in
        float16, the fp16-fix VAE does not and says so)."""
        return self.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))

    @property
    def flow(self) -> bool:
        """A flow-matching model (velocity prediction), not an epsilon-prediction UNet."""
        return self.preset.flow

    @property
    def clip(self):
        """(CLIPModel, tokenizer, image processor) for edit-alignment scores, loaded once."""
        with self.lock:
            if self._clip is None:
                from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

                kw = dict(local_files_only=self.preset.offline)
                self.pipe  # the tiny preset's CLIP is built together with the pipeline
                model = CLIPModel.from_pretrained(self.preset.clip, dtype=self.weights_dtype, **kw)
                model = model.to(self.device).requires_grad_(False)
                if self.weights_dtype != self.dtype:
                    compute_in(model, self.dtype)
                self._clip = (model.eval(), CLIPTokenizer.from_pretrained(self.preset.clip, **kw),
                              CLIPImageProcessor.from_pretrained(self.preset.clip, **kw))
            return self._clip

    # -- geometry ----------------------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        """Image sides must be a multiple of this: the VAE's and the UNet's downsampling,
        and at least 8 (what the diffusers pipelines accept)."""
        return _size_multiple(self.pipe)

    # -- conditioning ------------------------------------------------------------------
    def text_cond(self, prompt: str, size: tuple[int, int], guidance: float = 1.0,
                  negative: str = "") -> Cond:
        """Text conditioning for an image of `size` = (width, height)."""
        pipe, guided = self.pipe, guidance > 1.0
        if self.flow:
            return self._flux_text_cond(prompt, guidance, negative)
        with torch.no_grad():
            if self.preset.pipeline == "sdxl":
                text, neg, pooled, neg_pooled = pipe.encode_prompt(
                    prompt, device=self.device, num_images_per_prompt=1,
                    do_classifier_free_guidance=guided,
                    # None lets diffusers zero it per force_zeros_for_empty_prompt (presets.encode_empty_negative)
                    negative_prompt=None if not negative and not self.preset.encode_empty_negative else negative)
                hw = (size[1], size[0])
                time_ids = pipe._get_add_time_ids(
                    hw, (0, 0), hw, dtype=text.dtype,
                    text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim,
                ).to(self.device)
                if guided:
                    text, pooled = torch.cat([neg, text]), torch.cat([neg_pooled, pooled])
                    time_ids = torch.cat([time_ids, time_ids])
                return Cond(text, {"text_embeds": pooled, "time_ids": time_ids}, guidance)
            text, neg = pipe.encode_prompt(prompt, self.device, 1, guided, negative)
            return Cond(torch.cat([neg, text]) if guided else text, {}, guidance)

    def _flux_text_cond(self, prompt: str, guidance: float, negative: str) -> Cond:
        """FLUX conditioning: T5 tokens, CLIP's pooled embedding, text position ids. A
        guidance-distilled model (FLUX.1-dev) takes `guidance` as an input; one without a
        guidance embedding is guided by classifier-free guidance (the negative prompt's
        conditioning first, as diffusers' `true_cfg_scale`)."""
        pipe = self.pipe
        n = self.preset.max_sequence_length
        with torch.no_grad():
            text, pooled, ids = pipe.encode_prompt(prompt, None, device=self.device, max_sequence_length=n)
            added = {"pooled_projections": pooled, "txt_ids": ids}
            if pipe.transformer.config.guidance_embeds:
                added["guidance"] = torch.full([1], float(guidance), device=self.device)
                return Cond(text, added, 1.0)
            if guidance > 1.0:
                neg, neg_pooled, _ = pipe.encode_prompt(negative, None, device=self.device, max_sequence_length=n)
                text = torch.cat([neg, text])
                added["pooled_projections"] = torch.cat([neg_pooled, pooled])
            return Cond(text, added, guidance)

    def image_embeds(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """(photo, blank) IP-Adapter embeddings, computed once per photo and kept."""
        key = image_key(image)
        with self.lock:
            if key not in self._embeds:
                pipe = self.pipe
                if self.flow:  # XLabs: CLIP image embeddings, one token set per image
                    blank = Image.new("RGB", image.size)
                    with torch.no_grad():
                        self._embeds.put(key, (pipe.encode_image(image, self.device, 1),
                                               pipe.encode_image(blank, self.device, 1)))
                    return self._embeds.get(key)
                plus = not type(pipe.unet.encoder_hid_proj.image_projection_layers[0]).__name__ == "ImageProjection"
                with torch.no_grad():
                    self._embeds.put(key, pipe.encode_image(image, self.device, 1, output_hidden_states=plus))
            return self._embeds.get(key)

    def has_image_embeds(self, image: Image.Image) -> bool:
        """Whether `image`'s IP-Adapter embeddings are already kept."""
        return image_key(image) in self._embeds

    def with_image(self, cond: Cond, image: Image.Image | None) -> Cond:
        """Add IP-Adapter image embeddings to `cond`: the photo's, or (None) a blank image's.

        The model needs image embeddings once an adapter is attached; without tight
        conditioning the scale is 0 and diffusers skips the adapter branch entirely.
        """
        if image is None:
            image = Image.new("RGB", (8, 8))
        pos, neg = self.image_embeds(image)
        embeds = torch.stack([neg, pos]) if cond.guided else pos[None]
        return replace(cond, added={**cond.added, "image_embeds": [embeds]})

    def set_image_scale(self, scale: float) -> None:
        self.pipe.set_ip_adapter_scale(float(scale))

    def vision_tokens(self, image: Image.Image) -> torch.Tensor:
        """The image encoder's penultimate hidden states (1, tokens, hidden), as IP-Adapter
        *plus* reads them: what HyperLoRA sees of a garment. The same encoder instance."""
        pipe = self.pipe
        pixels = pipe.feature_extractor(image.convert("RGB"), return_tensors="pt").pixel_values
        with torch.no_grad():
            out = pipe.image_encoder(pixels.to(self.device, pipe.image_encoder.dtype),
                                     output_hidden_states=True)
        return out.hidden_states[-2].float()

    # -- LoRA adapters on the shared UNet ----------------------------------------------
    @contextlib.contextmanager
    def lora(self, name: str, modules: list[str], rank: int, state: dict | None = None):
        """Run the block with LoRA adapter `name` (on `modules`, created the first time) on
        the UNet, loaded with `state` (keys as `peft.get_peft_model_state_dict` gives them).
        On leaving, every adapter is disabled again: the UNet is back to the base model."""
        from peft import LoraConfig, set_peft_model_state_dict

        unet = self.pipe.unet
        with self.lock:
            if name not in getattr(unet, "peft_config", {}):
                with warnings.catch_warnings():  # several adapters on one UNet is the plan
                    warnings.filterwarnings("ignore", "Already found a `peft_config`")
                    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(modules)),
                                     adapter_name=name)
                for pname, p in unet.named_parameters():
                    if f".{name}." in pname:  # trainable: float32 on every device, whatever
                        p.data = p.data.float()  # the UNet computes in (peft casts them to it)
                        p.requires_grad_(False)
            if state is not None:
                set_peft_model_state_dict(unet, state, adapter_name=name)
            unet.set_adapter(name)
            unet.enable_adapters()
            try:
                with self.unfused():
                    yield unet
            finally:
                unet.disable_adapters()

    # -- fused projections, memory layout, compilation ----------------------------------
    def fuse_qkv(self, on: bool = True) -> None:
        """Compute each transformer block's query, key and value with one matrix product
        (self-attention) and key and value with one (cross-attention), keeping IP-Adapter's
        image branch (`attention.FusedIPAdapter`); `on=False` puts the unfused processors
        back. LoRA adapters act on the separate projections: `lora` unfuses while one runs."""
        with self.lock:
            self._set_fused(self.pipe.unet, on)

    @property
    def fused(self) -> bool:
        return self._unfused is not None

    def _set_fused(self, unet, on: bool) -> None:
        from diffusers.models.attention_processor import FusedAttnProcessor2_0

        from .attention import FusedIPAdapter

        if on == (self._unfused is not None):
            return
        if not on:
            unet.set_attn_processor(self._unfused)
            self._unfused = None
            return
        originals = dict(unet.attn_processors)
        modules = dict(unet.named_modules())
        fused = {}
        for name, proc in originals.items():
            block = name.endswith(("attn1.processor", "attn2.processor")) and not name.startswith("encoder_hid_proj")
            if block:
                attn = modules[name.rsplit(".", 1)[0]]
                if not getattr(attn, "fused_projections", False):
                    attn.fuse_projections()
                    proj = attn.to_kv if attn.is_cross_attention else attn.to_qkv
                    proj.requires_grad_(False)
                    if self.weights_dtype != self.dtype:
                        compute_in(proj, self.dtype)
            fused[name] = (proc if not block else FusedIPAdapter(proc) if hasattr(proc, "to_k_ip")
                           else FusedAttnProcessor2_0())
        unet.set_attn_processor(fused)
        self._unfused = originals

    @contextlib.contextmanager
    def unfused(self):
        """Run the block with the separate query / key / value projections (what LoRA
        adapters and `torch.func.functional_call` on them act on)."""
        with self.lock:
            was = self.fused
            self._set_fused(self.pipe.unet, False)
            try:
                yield
            finally:
                self._set_fused(self.pipe.unet, was)

    # -- attention processors on the shared UNet ---------------------------------------
    @contextlib.contextmanager
    def _wrapped(self, wrap, layers: tuple[str, ...]):
        """Run the block with the UNet's transformer-block attention processors whose names
        end with `layers` replaced by `wrap(processor, name)` (not the attention inside
        IP-Adapter plus's image projection, a resampler also listed among them). On leaving,
        the original processor objects are put back. Call under `lock`."""
        unet = self.pipe.unet
        originals = dict(unet.attn_processors)
        unet.set_attn_processor({
            name: wrap(proc, name) if name.endswith(layers) and not name.startswith("encoder_hid_proj") else proc
            for name, proc in originals.items()})
        try:
            yield unet
        finally:
            unet.set_attn_processor(originals)

    @contextlib.contextmanager
    def attention(self, control):
        """Run the block with every self- and cross-attention layer of the UNet routed
        through `control` (see `attention.Controlled`, which wraps each processor in place,
        IP-Adapter's included). On leaving, the original processor objects are put back."""
        from .attention import Controlled

        with self.lock, self._wrapped(lambda proc, name: Controlled(proc, name, control),
                                      ("attn1.processor", "attn2.processor")) as unet:
            yield unet

    # -- MagicClothing's garment extractor and its attention ---------------------------
    def garment_extractor(self, source: tuple[str, str]):
        """The garment extractor named by `source` = (a folder or Hub repo, the file): a
        `UNet2DConditionModel` of the base model's configuration, built from the base's own
        `unet` folder, with the checkpoint's state dict laid over it by its keys, as
        MagicClothing loads it (ShineChen1024/MagicClothing, garment_adapter/
        garment_diffusion.py: `ref_unet.load_state_dict(state_dict, strict=False)`, the keys
        being diffusers' UNet parameter names). Its self-attention layers record their
        input (`attention.GarmentAttention` in "record" mode). Loaded once and kept.
        ValueError naming the file when it cannot be had."""
        from diffusers import UNet2DConditionModel
        from safetensors.torch import load_file

        from .attention import GarmentAttention

        with self.lock:
            cache = self.__dict__.setdefault("_extractors", {})
            if source in cache:
                return cache[source]
            path = self._extractor_file(*source)
            state = load_file(path)
            base = self.pipe.unet
            config = {**base.config, "encoder_hid_dim_type": None, "encoder_hid_dim": None}  # no IP-Adapter
            ref = UNet2DConditionModel.from_config(config)
            own = ref.state_dict()
            unknown = [k for k in state if k not in own]
            if unknown or not any(".attn1." in k for k in state):
                raise ValueError(f"garment extractor {path}: not a UNet state dict of this model "
                                 f"({len(unknown)} unknown keys, e.g. {unknown[:2]})")
            missing = [k for k in own if k not in state]
            if missing:  # strict=False, as the authors: the rest from the base UNet (LoRA layers unwrapped)
                plain = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items()
                         if ".lora_" not in k}
                ref.load_state_dict({k: plain[k] for k in missing if k in plain}, strict=False)
            ref.load_state_dict(state, strict=False)
            ref = ref.to(self.device, self.weights_dtype).eval().requires_grad_(False)
            if self.weights_dtype != self.dtype:
                compute_in(ref, self.dtype)
            ref.set_attn_processor({name: GarmentAttention(proc, name, "record")
                                    if name.endswith("attn1.processor") else proc
                                    for name, proc in ref.attn_processors.items()})
            cache[source] = ref
            return ref

    def _extractor_file(self, source: str, file: str) -> str:
        """A file of a folder, of a repo in the models mirror, or of the Hub cache / a download
        (only the cache when offline)."""
        from .presets import mirrored, models_dir

        if os.path.isdir(source):
            path = os.path.join(source, file)
            if os.path.exists(path):
                return path
            raise ValueError(f"garment extractor: {file} is missing from {source}")
        mirror = models_dir()
        if mirror and os.path.exists(os.path.join(mirrored(source, mirror), file)):
            return os.path.join(mirrored(source, mirror), file)
        from huggingface_hub import hf_hub_download

        offline = self.preset.offline or bool(mirror) or _flag("HF_HUB_OFFLINE")
        try:
            return hf_hub_download(source, file, local_files_only=offline)
        except Exception as e:
            why = "offline, and not in the local Hub cache" if offline else f"the download failed: {type(e).__name__}"
            raise ValueError(f"garment extractor: the file {file} of the Hub repo {source} is missing "
                             f"({why}); download it (huggingface-cli download {source} {file}) or put "
                             f"it in the models folder") from None

    @contextlib.contextmanager
    def garment_attention(self, states: dict, present, scale: float = 1.0):
        """Run the block with each self-attention layer of the UNet attending to the garment
        extractor's recorded hidden states `states` (layer name -> (1, tokens, channels)) as
        well as to its own: `present` (one number per guidance row) says which rows see the
        garment (0: zeros in their place, as the authors' unconditional row), `scale`
        multiplies them. On leaving, the original processor objects are put back."""
        from .attention import GarmentAttention

        with self.lock, self.unfused(), self._wrapped(
                lambda proc, name: GarmentAttention(proc, name, "read", states, present, scale),
                ("attn1.processor",)) as unet:
            yield unet

    # -- the three calls every method is made of ---------------------------------------
    def unet_call(self, x: torch.Tensor, t, cond: Cond, params: dict | None = None) -> torch.Tensor:
        """Predicted noise for latents `x` at timestep `t` (float32 in, float32 out).
        `params` replaces some of the UNet's parameters for this call, differentiably
        (`torch.func.functional_call`): how predicted LoRA weights are trained.
        A v-prediction UNet's output is turned into noise here (eps = sqrt(a) v + sqrt(1-a) x,
        Salimans & Ho 2022), so every method works in noise whatever the model predicts."""
        unet = self.pipe.unet
        xin = torch.cat([x] * cond.rows) if cond.rows > 1 else x
        self._unet_evaluations += xin.shape[0]
        kwargs = dict(encoder_hidden_states=cond.text, added_cond_kwargs=cond.added, return_dict=False)
        if params:
            out = torch.func.functional_call(unet, params, (xin.to(self.dtype), t), kwargs, strict=False)
        else:
            out = unet(xin.to(self.dtype), t, **kwargs)
        eps = out[0].float()
        if self.pipe.scheduler.config.prediction_type == "v_prediction":
            a = self.pipe.scheduler.alphas_cumprod[torch.as_tensor(t).cpu().round().long()].to(eps.device)
            if a.ndim:  # one timestep per latent (repeated for the guided rows)
                a = a.repeat(len(eps) // len(a)).reshape(-1, 1, 1, 1)
            eps = a.sqrt() * eps + (1 - a).sqrt() * xin.float()
        if cond.mix is not None:
            eps = cond.mix(eps.chunk(cond.rows))
        elif cond.guided:
            uncond, text = eps.chunk(2)
            eps = uncond + cond.guidance * (text - uncond)
        return eps

    def velocity(self, x: torch.Tensor, t, cond: Cond) -> torch.Tensor:
        """FLUX's predicted velocity dx/dsigma (noise - image) for latents `x` (batch,
        channels, h, w; float32 in and out) at noise level `t` = sigma in [0, 1]. Packs the
        latents 2x2 into tokens as FluxPipeline does, unpacks the prediction."""
        pipe = self.pipe
        xin = torch.cat([x, x]) if cond.guided else x
        b, c, h, w = xin.shape
        self._unet_evaluations += b
        tokens = pipe._pack_latents(xin.to(self.dtype), b, c, h, w)
        ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, self.device, self.dtype)
        added = cond.added
        out = pipe.transformer(
            hidden_states=tokens, timestep=torch.as_tensor(t, dtype=self.dtype, device=self.device).expand(b),
            guidance=added["guidance"].expand(b) if "guidance" in added else None,
            pooled_projections=added["pooled_projections"], encoder_hidden_states=cond.text,
            txt_ids=added["txt_ids"], img_ids=ids,
            joint_attention_kwargs={"ip_adapter_image_embeds": added["image_embeds"]},  # a new dict: diffusers pops it
            return_dict=False)[0]
        v = pipe._unpack_latents(out, h * pipe.vae_scale_factor, w * pipe.vae_scale_factor,
                                 pipe.vae_scale_factor).float()
        if cond.guided:
            uncond, text = v.chunk(2)
            v = uncond + cond.guidance * (text - uncond)
        return v

    @property
    def model_call(self):
        """What the inversion methods of this preset's family call: `velocity` for flow
        models, `unet_call` (predicted noise) for the others."""
        return self.velocity if self.flow else self.unet_call

    def levels(self, steps: int, latents: torch.Tensor):
        """The noise levels a method walks for `latents`: (timesteps, alphas_cumprod) for
        epsilon models, (sigmas 1..N, sigmas 0..N) for flow models (FLUX's shifted
        schedule for this many image tokens)."""
        from .inversion import flow_levels, levels

        if self.flow:
            return flow_levels(self.pipe.scheduler, steps, latents.shape[-2] * latents.shape[-1] // 4)
        return levels(self.pipe.scheduler, steps)

    def count_evaluations(self, n: int) -> None:
        """Latents another copy of the UNet evaluated (MagicClothing's garment extractor),
        counted with the UNet's own: the work a GPU request does."""
        self._unet_evaluations += int(n)

    def unet_evaluations(self) -> int:
        """How many latents the UNet has denoised so far (for benchmarks)."""
        return self._unet_evaluations

    def encode(self, image: Image.Image) -> torch.Tensor:
        """PIL image (sides a multiple of `size_multiple`) -> scaled latents, float32."""
        pipe = self.pipe
        x = pipe.image_processor.preprocess(image).to(self.device, pipe.vae.dtype)
        with torch.no_grad():
            z = pipe.vae.encode(x).latent_dist.mode()
        return (z.float() - (pipe.vae.config.shift_factor or 0.0)) * pipe.vae.config.scaling_factor

    @property
    def safety(self):
        """(checker, image processor, compute dtype) where the safety checker is on
        (`safety.enabled`), loaded once; None where it is off."""
        from . import safety

        if not safety.enabled():
            return None
        with self.lock:
            if self._safety is None:
                self.pipe  # the tiny presets' checker is built together with the pipeline
                checker, processor = safety.load(self.preset.safety_checker, self.device, self.weights_dtype,
                                                 self.preset.offline)
                if self.weights_dtype != self.dtype:  # float16 weights computed in float32 (a CPU)
                    compute_in(checker, self.dtype)
                self._safety = (checker, processor, self.dtype)
            return self._safety

    def decode(self, latents: torch.Tensor, what: str = "this run", checked: bool = True) -> Image.Image:
        """Latents -> PIL image. Non-finite latents, or a decoding that overflows, raise
        `NonFiniteError` naming `what` (the method) instead of giving a black picture. Where
        the safety checker is on and `checked`, a flagged picture becomes a notice."""
        pipe = self.pipe
        check_finite(latents, what, self.dtype)
        with torch.no_grad():
            z = latents / pipe.vae.config.scaling_factor + (pipe.vae.config.shift_factor or 0.0)
            x = pipe.vae.decode(z.to(pipe.vae.dtype)).sample
        check_finite(x, f"{what} (decoding the latents)", pipe.vae.dtype)
        image = pipe.image_processor.postprocess(x.float(), output_type="pil")[0]
        checker = self.safety if checked else None
        if checker is not None:
            from . import safety

            if safety.flagged(*checker, image):
                log.warning("%s: the safety checker flagged the output; a notice is shown instead", what)
                return safety.notice(image.size)
        return image

    def word_tokens(self, word: str) -> int:
        """How many text-encoder tokens a single word becomes (for token alignment)."""
        return len(self.pipe.tokenizer(word, add_special_tokens=False).input_ids)

    @property
    def text_length(self) -> int:
        return self.pipe.tokenizer.model_max_length

    def tokens_over_limit(self, prompt: str) -> int:
        """How many tokens of `prompt` the text encoder cannot see (0 if it fits)."""
        tok = self.pipe.tokenizer
        n = len(tok(prompt, truncation=False).input_ids)
        return max(0, n - tok.model_max_length)
