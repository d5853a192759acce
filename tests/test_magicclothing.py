"""MagicClothing: the garment extractor feeding the UNet's self-attention, joint guidance,
processors put back, and the published checkpoint refused by name when absent."""

import numpy as np
import pytest

from recontext.garment.synthetic import garment

PROMPT = "a person wearing a t-shirt at the beach"


def px(img):
    return np.asarray(img, dtype=np.int16)


def test_runs_on_tiny_and_puts_the_processors_back(studio):
    unet = studio.models.pipe.unet
    before = dict(unet.attn_processors)
    d = studio.dress(garment(3), PROMPT, method="magicclothing", steps=6, seed=1)
    after = dict(unet.attn_processors)
    assert before.keys() == after.keys() and all(before[k] is after[k] for k in before)
    side = studio.preset.resolution
    assert d.image.size == (side, side) and d.method == "magicclothing" and d.generate_seconds > 0
    again = studio.dress(garment(3), PROMPT, method="magicclothing", steps=6, seed=1)
    assert again.cached is True and np.array_equal(px(d.image), px(again.image))
    other = studio.dress(garment(4), PROMPT, method="magicclothing", steps=6, seed=1)
    assert not np.array_equal(px(d.image), px(other.image))  # the garment reaches the image


def test_garment_guidance_changes_the_image(studio):
    off = studio.dress(garment(5), PROMPT, method="magicclothing", steps=6, seed=2, garment_guidance=0.0)
    on = studio.dress(garment(5), PROMPT, method="magicclothing", steps=6, seed=2, garment_guidance=2.5)
    assert not np.array_equal(px(off.image), px(on.image))
    assert on.settings["garment_guidance"] == 2.5


def test_joint_guidance_is_the_authors_formula():
    import torch

    from recontext.garment.methods.magicclothing import joint
    from recontext.models import Cond

    text = torch.stack([torch.zeros(2, 3), torch.ones(2, 3)])
    cond = joint(Cond(text, {"time_ids": torch.tensor([[0.0], [1.0]])}, 5.0), 2.5)
    assert cond.rows == 3 and torch.equal(cond.text[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(cond.added["time_ids"][:, 0], torch.tensor([0.0, 0.0, 1.0]))
    u, g, f = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)
    assert float(cond.mix((u, g, f))) == pytest.approx(1 + 5 * (4 - 2) + 2.5 * (2 - 1))


def test_missing_sd15_checkpoint_is_refused_with_the_file_named(monkeypatch, tmp_path):
    from recontext import presets
    from recontext.garment.methods import magicclothing
    from recontext.workbench import Workbench

    monkeypatch.setenv("RECONTEXT_MODELS_DIR", str(tmp_path))  # an empty models folder: offline
    preset = presets.get("sd15")
    assert magicclothing.source(preset)[1] == "magic_clothing_768_vitonhd_joint.safetensors"
    bench = Workbench(preset)
    with pytest.raises(ValueError, match="magic_clothing_768_vitonhd_joint.safetensors.*ShineChen1024/MagicClothing"):
        magicclothing.extractor(bench)
    assert not bench.models.loaded  # refused before the base model loads


def test_the_method_owns_its_extractor_and_attention():
    """The garment extractor and its attention are MagicClothing's own (its spec `needs` them,
    its module loads them); the model owner and the presets know nothing of them."""
    import inspect

    from recontext import attention, models, presets
    from recontext.garment.methods import magicclothing

    assert magicclothing.COMPONENTS["garment-extractor"] is magicclothing.extractor
    for module in (models, attention, presets):
        text = inspect.getsource(module)
        assert "GarmentAttention" not in text and "garment_extractor" not in text, module.__name__
    assert not hasattr(models.ModelOwner, "garment_attention")


def test_the_spec_declares_the_licence_and_presets():
    from recontext import garment as g

    spec = g.spec("magicclothing")
    assert "non-commercial" in spec.licence and spec.presets == ("tiny", "sd15")
    assert "garment_guidance" in spec.guidance and "garment-extractor" in spec.needs
    assert "magicclothing" in g.names() and g.work("magicclothing") == {"encodes": 1, "evaluations": 1}


@pytest.mark.timeout(1800)
def test_sd15_at_true_shapes_loads_the_published_layout(monkeypatch):
    """sd15 + magicclothing on the shape mirror: the SD 1.5 UNet, and an extractor file in
    the published checkpoint's layout (random weights), at 256 px, 2 steps."""
    import os

    import torch

    from recontext import Studio, presets
    from recontext.fixtures import build_shapes
    from recontext.garment.extractor import GarmentAttention
    from recontext.garment.methods.magicclothing import extractor as magicclothing_extractor
    from recontext.logs import quiet_libraries

    quiet_libraries()
    root = build_shapes(os.path.join(presets.cache_dir(), "shapes"), ["sd15"])  # pruned as RECONTEXT_SHAPES_PRUNE says
    assert os.path.exists(os.path.join(root, "ShineChen1024", "MagicClothing",
                                       "magic_clothing_768_vitonhd_joint.safetensors"))
    monkeypatch.setenv("RECONTEXT_MODELS_DIR", root)
    monkeypatch.setenv("RECONTEXT_RESOLUTION", "256")
    monkeypatch.setenv("RECONTEXT_WEIGHTS_DTYPE", "float16")  # computed in float32
    studio = Studio("sd15")
    unet = studio.models.pipe.unet
    before = dict(unet.attn_processors)
    d = studio.dress(garment(1), "a person on a beach", method="magicclothing", steps=2, guidance=5.0)
    assert d.image.size == (256, 256)
    after = dict(unet.attn_processors)
    assert all(before[k] is after[k] for k in before)
    extractor = magicclothing_extractor(studio.bench)
    recorded = [p for p in extractor.attn_processors.values() if isinstance(p, GarmentAttention)]
    assert len(recorded) == 16 and all(p.recorded is not None for p in recorded)  # SD 1.5: 16 self-attentions
    assert extractor.config.cross_attention_dim == 768 and extractor.dtype == torch.float16
