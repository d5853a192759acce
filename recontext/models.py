"""The one owner of every heavy object in a process.

The base pipeline is loaded lazily, once, with the preset's weights (`loading.py`);
IP-Adapter is attached to its UNet right away and afterwards only switched by scale.
Everything else (the inversion loops, editing, the tabs) receives components from here and
never loads a model itself. `ModelOwner` keeps only what every method shares: the pipeline
and its model call, the VAE, the encoders, switching LoRA adapters and attention processors.
A method's own component (MagicClothing's garment extractor, HyperLoRA's checkpoint) is
loaded by the method's own file, as its spec `needs` (an extra model is kept here:
`component`); a method's own attention processor is installed and put back here
(`processors`). Calls that touch shared state (adapter scales, LoRA switches) run under
`owner.lock`, so two requests from the web page never interleave on the one UNet.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import warnings
from dataclasses import dataclass, field, replace

import torch
from PIL import Image

from . import loading
from .cache import LRU
from .precision import DTYPES, NonFiniteError, check_finite, compute_dtype, compute_in, weights_dtype  # noqa: F401
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


def image_key(image: Image.Image) -> str:
    """A content hash of an image: the cache key for embeddings and inversions."""
    h = hashlib.sha1(image.tobytes())
    h.update(f"{image.mode}{image.size}".encode())
    return h.hexdigest()


def flux_text_cond(pipe, device: torch.device, n: int, prompt: str, guidance: float, negative: str) -> Cond:
    """FLUX conditioning: T5 tokens, CLIP's pooled embedding, text position ids. A
    guidance-distilled model (FLUX.1-dev) takes `guidance` as an input; one without a
    guidance embedding is guided by classifier-free guidance (the negative prompt's
    conditioning first, as diffusers' `true_cfg_scale`)."""
    with torch.no_grad():
        text, pooled, ids = pipe.encode_prompt(prompt, None, device=device, max_sequence_length=n)
        added = {"pooled_projections": pooled, "txt_ids": ids}
        if pipe.transformer.config.guidance_embeds:
            added["guidance"] = torch.full([1], float(guidance), device=device)
            return Cond(text, added, 1.0)
        if guidance > 1.0:
            neg, neg_pooled, _ = pipe.encode_prompt(negative, None, device=device, max_sequence_length=n)
            text = torch.cat([neg, text])
            added["pooled_projections"] = torch.cat([neg_pooled, pooled])
        return Cond(text, added, guidance)


def encode_image(pipe, image: Image.Image, device: torch.device, flow: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(photo, blank) IP-Adapter embeddings of `image` by the pipeline's image encoder."""
    with torch.no_grad():
        if flow:  # XLabs (FLUX): CLIP image embeddings, one token set per image
            blank = Image.new("RGB", image.size)
            return pipe.encode_image(image, device, 1), pipe.encode_image(blank, device, 1)
        plus = not type(pipe.unet.encoder_hid_proj.image_projection_layers[0]).__name__ == "ImageProjection"
        return pipe.encode_image(image, device, 1, output_hidden_states=plus)


def add_lora(unet, name: str, modules: list[str], rank: int) -> None:
    """A new LoRA adapter `name` on the UNet's `modules` (peft), frozen; its weights float32 on
    every device, whatever the UNet computes in (peft casts them to it), as they are trained."""
    from peft import LoraConfig

    with warnings.catch_warnings():  # several adapters on one UNet is the plan
        warnings.filterwarnings("ignore", "Already found a `peft_config`")
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(modules)), adapter_name=name)
    for pname, p in unet.named_parameters():
        if f".{name}." in pname:
            p.data = p.data.float()
            p.requires_grad_(False)


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
        self._embeds = LRU(16)  # image key -> (photo, blank) IP-Adapter embeddings
        self._unfused = None  # the processors replaced by fused ones (None: not fused)
        self._components = {}  # the methods' own components (see `component`)

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
        p = self.preset
        if p.build is not None:
            p.build()
        check_mirror(p)
        pipe, modules = (loading.load_flux if p.flow else loading.load_unet)(p, self.weights_dtype)
        pipe = loading.ready(pipe, modules, p, self.device, self.dtype, self.weights_dtype)
        if not p.flow:
            self._set_fused(pipe.unet, loading.flag("RECONTEXT_FUSE_QKV"))
            loading.speed_settings(pipe.unet, self.device)
        return pipe

    def component(self, key, load):
        """A method's own component (an extra model, a checkpoint: what its spec `needs` beyond
        the pipeline), made by `load()` the first time `key` is asked for and kept, like the
        pipeline. The method's file knows how to load it; the owner keeps it."""
        with self.lock:
            if key not in self._components:
                self._components[key] = load()
            return self._components[key]

    @property
    def flow(self) -> bool:
        """A flow-matching model (velocity prediction), not an epsilon-prediction UNet."""
        return self.preset.flow

    @property
    def clip(self):
        """(CLIPModel, tokenizer, image processor) for edit-alignment scores, loaded once."""
        with self.lock:
            self.pipe  # the tiny preset's CLIP is built together with the pipeline
            return self.component("clip", lambda: loading.load_clip(self.preset, self.device, self.dtype, self.weights_dtype))

    # -- geometry ----------------------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        """Image sides must be a multiple of this: the VAE's and the UNet's downsampling,
        and at least 8 (what the diffusers pipelines accept)."""
        return loading.size_multiple(self.pipe)

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
        return flux_text_cond(self.pipe, self.device, self.preset.max_sequence_length, prompt, guidance, negative)

    def image_embeds(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """(photo, blank) IP-Adapter embeddings, computed once per photo and kept."""
        key = image_key(image)
        with self.lock:
            if key not in self._embeds:
                self._embeds.put(key, encode_image(self.pipe, image, self.device, self.flow))
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
            return pipe.image_encoder(pixels.to(self.device, pipe.image_encoder.dtype),
                                      output_hidden_states=True).hidden_states[-2].float()

    # -- LoRA adapters on the shared UNet ----------------------------------------------
    @contextlib.contextmanager
    def lora(self, name: str, modules: list[str], rank: int, state: dict | None = None):
        """Run the block with LoRA adapter `name` (on `modules`, created the first time) on
        the UNet, loaded with `state` (keys as `peft.get_peft_model_state_dict` gives them).
        On leaving, every adapter is disabled again: the UNet is back to the base model."""
        from peft import set_peft_model_state_dict

        unet = self.pipe.unet
        with self.lock:
            if name not in getattr(unet, "peft_config", {}):
                add_lora(unet, name, modules, rank)
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
        from .attention import fuse

        if on and self._unfused is None:
            self._unfused = fuse(unet, self.dtype, self.weights_dtype)
        elif not on and self._unfused is not None:
            unet.set_attn_processor(self._unfused)
            self._unfused = None

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
    def processors(self, wrap, layers: tuple[str, ...] = ("attn1.processor", "attn2.processor"),
                   unfused: bool = False):
        """Run the block with the UNet's transformer-block attention processors whose names
        end with `layers` replaced by `wrap(processor, name)`: a method's own processor,
        wrapping the one it replaces (not the attention inside IP-Adapter plus's image
        projection, a resampler also listed among them). `unfused`: with the separate query /
        key / value projections. On leaving, the original processor objects are put back."""
        with self.lock, (self.unfused() if unfused else contextlib.nullcontext()):
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

        with self.processors(lambda proc, name: Controlled(proc, name, control)) as unet:
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
        """Latents another copy of the UNet evaluated (a method's own component, such as a
        garment extractor), counted with the UNet's own: the work a GPU request does."""
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
            self.pipe  # the tiny presets' checker is built together with the pipeline
            return self.component("safety", lambda: loading.load_safety(self.preset, self.device, self.dtype,
                                                                         self.weights_dtype))

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
