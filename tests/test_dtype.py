"""Half precision on the CPU: what a GPU in float16 does, reproduced with RECONTEXT_DTYPE.

The first CUDA run found the fine-tuned LoRA baseline returning a black picture in
float16 (its LoRA and AdamW state were float16: NaN from step 2). Here every path runs in
float16 on the tiny preset (at 64 px: float16 convolutions are slow on a CPU) and must give
finite, non-constant pictures; a model that returns NaN must give a clear error, never a
picture, and no saved run.
"""

import numpy as np
import pytest
import torch

from recontext import Studio
from recontext.garment import METHODS
from recontext.models import NonFiniteError

GARMENT = "assets/garments/green-plain-t-shirt.png"
PHOTO = "assets/photos/chelsea.png"


@pytest.fixture(scope="module")
def half():
    """A float16 studio at 64 px; the settings are read when it is made and loads, and are
    gone afterwards (the suite's shared studio stays float32)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECONTEXT_DTYPE", "float16")
        mp.setenv("RECONTEXT_RESOLUTION", "64")
        s = Studio("tiny")
        s.models.pipe
    return s


def shows_something(img) -> bool:
    a = np.asarray(img).astype(float)
    return np.isfinite(a).all() and a.std() > 2.0


def test_the_dtype_setting_reaches_the_models(half):
    m = half.models
    assert m.dtype == torch.float16 and m.pipe.unet.dtype == torch.float16
    assert m.pipe.vae.dtype == torch.float32  # its config asks for float32 (force_upcast), as in diffusers


def test_a_bad_dtype_is_refused(monkeypatch):
    monkeypatch.setenv("RECONTEXT_DTYPE", "float8")
    with pytest.raises(ValueError, match="RECONTEXT_DTYPE must be float16, bfloat16 or float32"):
        Studio("tiny").models


def test_the_finetune_keeps_float32_weights_that_change_and_stay_finite(half):
    from recontext.garment.train import finetune_lora
    from recontext.images import load_image

    garment, _ = load_image(GARMENT)
    state = finetune_lora(half.models, garment, steps=20, seed=0)
    assert state and all(v.dtype == torch.float32 for v in state.values())
    assert all(torch.isfinite(v).all() for v in state.values())
    moved = [float(v.abs().max()) for k, v in state.items() if ".lora_B." in k]  # B starts at zero
    assert max(moved) > 0, "20 steps left every LoRA B at zero: the fine-tune did not train"


@pytest.mark.parametrize("method", METHODS)
def test_every_dress_method_gives_a_picture_in_float16(half, method):
    g = half.dress(GARMENT, "a person on a beach", method, steps=4, finetune_steps=20)
    assert shows_something(g.image)


def test_every_inversion_and_edit_gives_a_picture_in_float16(half):
    for method in half.methods:
        for tight in (False, True):
            r = half.reconstruct(PHOTO, "a cat", method, tight, 0.4, steps=4)
            assert shows_something(r.image), (method, tight)
            assert np.isfinite(r.metrics["psnr"]) and r.metrics["psnr"] > 12, (method, tight, r.metrics)
    for edit_method in half.edit_methods:
        for tight in (False, True):
            e = half.edit(PHOTO, "a cat", "a tiger", "edit-friendly" if edit_method == "ledits++" else "ddim",
                          tight, 0.4, steps=4, edit_method=edit_method)
            assert shows_something(e.image) and shows_something(e.reconstruction), (edit_method, tight)


def test_a_model_that_returns_nan_gives_a_clear_error_and_no_run(studio, tmp_path, monkeypatch):
    from recontext.runs import RunStore
    from recontext.ui.inversion_tab import reconstruct

    unet = studio.models.pipe.unet
    real = unet.forward

    def nan(x, *args, **kwargs):
        return (torch.full_like(real(x, *args, **kwargs)[0], float("nan")),)

    monkeypatch.setattr(unet, "forward", nan)
    with pytest.raises(NonFiniteError, match=r"renoise \+ tight: the model returned \d+ non-finite values"):
        studio.reconstruct(PHOTO, "a cat", "renoise", True, 0.4, steps=3)
    with pytest.raises(NonFiniteError, match="prompt-only"):
        studio.dress(GARMENT, "a person", "prompt-only", steps=3)
    assert studio.models.dtype == torch.float32
    with pytest.raises(NonFiniteError, match=r"ddim \(reconstruction\).*weights or this request's settings"):
        studio.edit(PHOTO, "a cat", "a dog", "ddim", False, steps=3)
    runs = RunStore(str(tmp_path / "runs"))
    with pytest.raises(ValueError, match="non-finite"):  # the page shows ValueErrors as messages
        reconstruct(studio, PHOTO, "a cat", ["ddim"], ["plain"], 0.4, 3, 0, progress=lambda *a, **k: None,
                    runs=runs)
    assert runs.ids() == []
    monkeypatch.undo()
    assert shows_something(studio.reconstruct(PHOTO, "a cat", "ddim", False, steps=3).image)


def test_fused_projections_keep_the_image_branch(studio, photo):
    """Fused QKV gives the same reconstruction as the separate projections, and tight still
    differs from plain (IP-Adapter's image branch kept); LoRA runs unfused."""
    from recontext.attention import FusedIPAdapter

    m = studio.models

    def latents(tight):
        p = studio.prepare(photo)
        t, a = m.levels(6, p.latents)
        return studio.invert(p, "a cat", studio.method("ddim"), tight, 0.8, t, a, seed=0)[1]

    plain, tight = latents(False), latents(True)
    calls = []
    try:
        m.fuse_qkv(True)
        fused = [p for p in m.pipe.unet.attn_processors.values() if isinstance(p, FusedIPAdapter)]
        assert fused
        hook = next(mod for name, mod in m.pipe.unet.named_modules() if name.endswith("attn2.to_kv"))
        handle = hook.register_forward_hook(lambda *a: calls.append(1))
        fused_plain, fused_tight = latents(False), latents(True)
        handle.remove()
        with m.lora("check", ["to_q"], 2):
            assert not any(isinstance(p, FusedIPAdapter) for p in m.pipe.unet.attn_processors.values())
        assert m.fused
    finally:
        m.fuse_qkv(False)
    assert calls, "the fused projection never ran"
    assert torch.allclose(fused_plain, plain, atol=1e-4) and torch.allclose(fused_tight, tight, atol=1e-4)
    assert (fused_tight - fused_plain).abs().mean() > 1e-3
