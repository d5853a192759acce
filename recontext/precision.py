"""Dtypes: which dtype the models compute in and keep their weights in, computing frozen
float16 weights in float32 layer by layer (`compute_in`), and refusing non-finite results.
Used by the model owner (`models.py`) on everything it loads."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F


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


DTYPES = ("float16", "bfloat16", "float32")


def compute_dtype(preset, device: torch.device) -> torch.dtype:
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
