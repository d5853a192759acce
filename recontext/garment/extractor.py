"""MagicClothing's own component: the garment extractor and its self-attention processor
(Chen et al. 2024; ShineChen1024/MagicClothing). The method (`methods/magicclothing.py`)
names which extractor a preset uses and loads it through here; the model owner keeps the
loaded extractor (`ModelOwner.component`) and installs the processor on the shared UNet
and puts the original back (`ModelOwner.processors`).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..attention import finish
from ..precision import compute_in


class GarmentAttention(torch.nn.Module):
    """MagicClothing's self-attention (garment_adapter/attention_processor.py,
    `REFAttnProcessor2_0`), wrapping the processor it replaces (a reference, not a copy).

    - "record", on the garment extractor: keeps the layer's input hidden states
      (`recorded`, gradients kept for training), then runs the wrapped processor.
    - "read", on the denoising UNet: the layer's keys and values are computed from its own
      hidden states followed by the extractor's recorded ones for the same layer
      (`states[name]`, times `scale`; rows whose `present` is 0 get zeros in their place, as
      the authors' unconditional row). The authors run the queries over both halves and keep
      the first; queries from the first half alone give the same output.
    """

    def __init__(self, inner, name: str, mode: str, states: dict | None = None, present=None,
                 scale: float = 1.0):
        super().__init__()
        if mode not in ("record", "read"):
            raise ValueError(f"GarmentAttention mode must be record or read, got {mode!r}")
        self.inner, self.name, self.mode = inner, name, mode
        self.states, self.scale, self.recorded = states or {}, float(scale), None
        self.present = [1.0] if present is None else present  # read at each call: a list its owner may fill later

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                temb=None, *args, **kwargs):
        if self.mode == "record":
            self.recorded = hidden_states
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        ref = self.states.get(self.name)
        if ref is None or encoder_hidden_states is not None or attention_mask is not None \
                or attn.spatial_norm is not None or attn.group_norm is not None or hidden_states.ndim != 3:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        batch = hidden_states.shape[0]
        present = torch.as_tensor(list(self.present), dtype=hidden_states.dtype, device=hidden_states.device)
        present = present.repeat_interleave(batch // len(present)) * self.scale
        ref = ref.to(hidden_states.dtype).repeat(batch // ref.shape[0], 1, 1) * present[:, None, None]
        context = torch.cat([hidden_states, ref], dim=1)
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, dim).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * dim).to(query.dtype)
        return finish(attn, out, hidden_states)


def recording(unet) -> None:
    """Make the self-attention layers of the extractor `unet` record their input."""
    unet.set_attn_processor({n: GarmentAttention(p, n, "record") if n.endswith("attn1.processor") else p
                             for n, p in unet.attn_processors.items()})


def recorded(unet) -> dict:
    """What the extractor's self-attention layers recorded on its last call: layer name ->
    (batch, tokens, channels)."""
    return {n: p.recorded for n, p in unet.attn_processors.items() if isinstance(p, GarmentAttention)}


def reading(models, states: dict, present, scale: float = 1.0):
    """A context in which each self-attention layer of the shared UNet attends to the
    extractor's recorded hidden states `states` as well as to its own: `present` (one
    number per guidance row) says which rows see the garment (0: zeros in their place, as
    the authors' unconditional row), `scale` multiplies them. The model owner installs the
    processors and puts the originals back."""
    return models.processors(lambda proc, name: GarmentAttention(proc, name, "read", states, present, scale),
                             ("attn1.processor",), unfused=True)


def find_file(source: str, file: str, offline: bool) -> str:
    """A file of a folder, of a repo in the models mirror, or of the Hub cache / a download
    (only the cache when `offline`, a models mirror is set, or HF_HUB_OFFLINE is on).
    ValueError naming the file and how to get it when it cannot be had."""
    from ..presets import mirrored, models_dir

    if os.path.isdir(source):
        path = os.path.join(source, file)
        if os.path.exists(path):
            return path
        raise ValueError(f"garment extractor: {file} is missing from {source}")
    mirror = models_dir()
    if mirror and os.path.exists(os.path.join(mirrored(source, mirror), file)):
        return os.path.join(mirrored(source, mirror), file)
    from huggingface_hub import hf_hub_download

    offline = offline or bool(mirror) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in (
        "1", "true", "yes", "on")
    try:
        return hf_hub_download(source, file, local_files_only=offline)
    except Exception as e:
        why = "offline, and not in the local Hub cache" if offline else f"the download failed: {type(e).__name__}"
        raise ValueError(f"garment extractor: the file {file} of the Hub repo {source} is missing "
                         f"({why}); download it (huggingface-cli download {source} {file}) or put "
                         f"it in the models folder") from None


def load(models, path: str):
    """The garment extractor in the file `path`: a `UNet2DConditionModel` of the base
    model's configuration, built from the base's own `unet` folder, with the checkpoint's
    state dict laid over it by its keys, as MagicClothing loads it (garment_adapter/
    garment_diffusion.py: `ref_unet.load_state_dict(state_dict, strict=False)`, the keys
    being diffusers' UNet parameter names), frozen on the model owner's device and dtype.
    Its self-attention layers record their input. ValueError when the file is not a UNet
    state dict of this model."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    state = load_file(path)
    base = models.pipe.unet
    config = {**base.config, "encoder_hid_dim_type": None, "encoder_hid_dim": None}  # no IP-Adapter
    ref = UNet2DConditionModel.from_config(config)
    own = ref.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown or not any(".attn1." in k for k in state):
        raise ValueError(f"garment extractor {path}: not a UNet state dict of this model "
                         f"({len(unknown)} unknown keys, e.g. {unknown[:2]})")
    missing = [k for k in own if k not in state]
    if missing:  # strict=False, as the authors: the rest from the base UNet (LoRA layers unwrapped)
        plain = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items() if ".lora_" not in k}
        ref.load_state_dict({k: plain[k] for k in missing if k in plain}, strict=False)
    ref.load_state_dict(state, strict=False)
    ref = ref.to(models.device, models.weights_dtype).eval().requires_grad_(False)
    if models.weights_dtype != models.dtype:
        compute_in(ref, models.dtype)
    recording(ref)
    return ref
