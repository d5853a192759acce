"""An attention processor whose probabilities an editing method can read and replace.

`Controlled` wraps the processor it replaces (diffusers' stock one, or IP-Adapter's) and
keeps a reference to it, not a copy: when the editing method's `control` has nothing to
do for this layer at this step, the wrapped processor runs unchanged; otherwise the text
attention is computed with explicit probabilities, handed to `control`, and IP-Adapter's
image branch is added with the wrapped processor's own `to_k_ip` / `to_v_ip` / `scale`,
so tight conditioning stays active while prompt-to-prompt or LEDITS++ edits the maps.
The model owner installs these and puts the originals back (`ModelOwner.attention`).

`control` is any object with
    wants(is_cross: bool, name: str) -> bool          this layer, now?
    __call__(probs, is_cross: bool, name: str) -> probs   probs: (batch, heads, queries, keys)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

from .precision import compute_in


class Controlled(torch.nn.Module):
    # a Module like IP-Adapter's processor, so diffusers swaps it in and out of the
    # Attention's submodules the same way (the wrapped weights stay where they are)
    def __init__(self, inner, name: str, control):
        super().__init__()
        self.inner, self.name, self.control = inner, name, control

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        is_cross = encoder_hidden_states is not None
        if not self.control.wants(is_cross, self.name):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                              *args, **kwargs)
        if kwargs.get("ip_adapter_masks") is not None:
            raise ValueError("IP-Adapter masks are not supported while attention is edited")
        image_states = []
        if isinstance(encoder_hidden_states, tuple):  # (text, [IP-Adapter image tokens])
            encoder_hidden_states, image_states = encoder_hidden_states

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4
        if spatial:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, queries, _ = hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)

        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        probs = self.control(probs.view(batch, attn.heads, queries, -1), is_cross, self.name)
        out = attn.batch_to_head_dim(torch.bmm(probs.reshape(batch * attn.heads, queries, -1).to(value.dtype),
                                               value))

        out = out + image_branch(self.inner, attn, query, image_states, batch)
        return finish(attn, out, residual, (b, c, h, w) if spatial else None)



def finish(attn, out, residual, shape=None):
    """An attention layer's output projection, its spatial shape (`shape`, or None for
    tokens) back, the residual and the output scale, as diffusers' processors end."""
    out = attn.to_out[1](attn.to_out[0](out))
    if shape is not None:
        out = out.transpose(-1, -2).reshape(shape)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def image_branch(processor, attn, query, image_states, batch):
    """IP-Adapter's decoupled cross-attention, with `processor`'s own weights and scale
    (`query`: (batch * heads, queries, dim) or (batch, heads, queries, dim))."""
    total = 0.0
    scales = getattr(processor, "scale", [])
    for states, scale, to_k, to_v in zip(image_states, scales, getattr(processor, "to_k_ip", []),
                                         getattr(processor, "to_v_ip", [])):
        if isinstance(scale, list):
            raise ValueError("per-image IP-Adapter scales are not supported while attention is edited")
        if scale == 0:
            continue
        heads, dim = attn.heads, query.shape[-1]
        q = query.view(batch, heads, -1, dim)
        k = to_k(states).view(batch, -1, heads, dim).transpose(1, 2)
        v = to_v(states).view(batch, -1, heads, dim).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        total = total + scale * o.transpose(1, 2).reshape(batch, -1, heads * dim).to(query.dtype)
    return total


class FusedIPAdapter(IPAdapterAttnProcessor2_0):
    """Cross-attention with the text's key and value from one fused projection
    (`attn.to_kv`, made by `Attention.fuse_projections`) and IP-Adapter's image branch kept:
    diffusers' `FusedAttnProcessor2_0` would drop the image tokens. The IP-Adapter weights and
    scale stay those of the processor it wraps (a reference, not a copy), so
    `set_ip_adapter_scale` reaches them as before."""

    def __init__(self, inner):
        torch.nn.Module.__init__(self)  # not the parent's: it would make new adapter weights
        self.inner = inner

    @property
    def scale(self):
        return self.inner.scale

    @scale.setter
    def scale(self, value):
        self.inner.scale = value

    @property
    def to_k_ip(self):
        return self.inner.to_k_ip

    @property
    def to_v_ip(self):
        return self.inner.to_v_ip

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 scale: float = 1.0, ip_adapter_masks=None):
        if ip_adapter_masks is not None or attention_mask is not None or attn.spatial_norm is not None \
                or attn.group_norm is not None or not isinstance(encoder_hidden_states, tuple):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, scale,
                              ip_adapter_masks)  # what this fast path does not cover
        text, image_states = encoder_hidden_states
        residual = hidden_states
        spatial = hidden_states.ndim == 4
        if spatial:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        query = attn.to_q(hidden_states)
        key, value = attn.to_kv(text).chunk(2, dim=-1)
        dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, dim).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * dim).to(query.dtype)
        out = out + image_branch(self.inner, attn, query, image_states, batch)
        return finish(attn, out, residual, (b, c, h, w) if spatial else None)


def fuse(unet, dtype: torch.dtype, weights: torch.dtype) -> dict:
    """Fuse the transformer blocks' projections and install the fused processors (IP-Adapter's
    image branch kept: `attention.FusedIPAdapter`); returns the processors they replaced."""
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

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
                if weights != dtype:
                    compute_in(proj, dtype)
        fused[name] = (proc if not block else FusedIPAdapter(proc) if hasattr(proc, "to_k_ip")
                       else FusedAttnProcessor2_0())
    unet.set_attn_processor(fused)
    return originals
