"""Text editing: cached inversions, the identity edit, the scale sweep, bad prompts."""

import math

import numpy as np
import pytest

CAT = "a photo of a cat"


def test_new_target_prompt_reuses_the_inversion(studio, photo):
    before = studio.inversions
    a = studio.edit(photo, CAT, "a photo of a tiger", steps=8, seed=3)
    b = studio.edit(photo, CAT, "a photo of a dog", steps=8, seed=3)
    c = studio.edit(photo, CAT, "a photo of a dog", guidance=3.0, steps=8, seed=4)
    assert studio.inversions == before + 1
    assert a.inverted and not b.inverted and not c.inverted
    assert not np.array_equal(np.asarray(a.output), np.asarray(b.output))
    studio.edit(photo, "another caption", "a photo of a dog", steps=8, seed=3)
    assert studio.inversions == before + 2


@pytest.mark.parametrize("method", ["ddim", "edit-friendly"])
def test_identity_edit_reproduces_the_reconstruction(studio, photo, method):
    # the target prompt and guidance are the inversion's own (edit-friendly inverts at 3.5)
    guidance = studio.edit_settings(method, "regenerate")["source_guidance"]
    e = studio.edit(photo, CAT, CAT, method=method, tight=True, image_scale=0.4, guidance=guidance, steps=8)
    assert np.array_equal(np.asarray(e.output), np.asarray(e.reconstruction_working))
    assert e.image.size == photo.size and e.reconstruction.size == photo.size


def test_edit_friendly_edits_replay_the_noise_maps(studio, photo):
    e = studio.edit(photo, CAT, "a photo of a tiger", method="edit-friendly", guidance=5.0, steps=8)
    assert not np.array_equal(np.asarray(e.output), np.asarray(e.reconstruction_working))


def test_sweep_returns_one_finite_result_per_scale_and_plots(studio, photo, tmp_path):
    from recontext.editing import sweep_plot

    scales = (0.0, 0.5, 1.0)
    before = studio.inversions
    sweep = studio.edit_sweep(photo, CAT, "a photo of a tiger", scales=scales, steps=5)
    assert [e.scale for e in sweep] == list(scales)
    assert studio.inversions == before + len(scales)
    for e in sweep:
        assert math.isfinite(e.metrics["preservation_ssim"]) and math.isfinite(e.metrics["clip_target"])
        assert -1 <= e.metrics["clip_target"] <= 1
    path = tmp_path / "sweep.png"
    sweep_plot(sweep, "a photo of a tiger").savefig(path)
    assert path.stat().st_size > 5000


def test_sweep_reuses_the_photo_embeddings(studio, photo):
    studio.edit_sweep(photo, CAT, "a tiger", scales=(0.1, 0.3), steps=3)
    calls = []
    original = studio.models.pipe.encode_image
    studio.models.pipe.encode_image = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        studio.edit_sweep(photo, CAT, "a lion", scales=(0.7, 0.9), steps=3)
    finally:
        studio.models.pipe.encode_image = original
    assert calls == []


def test_bad_prompts_get_clear_messages(studio, photo):
    with pytest.raises(ValueError, match="target prompt is empty"):
        studio.edit(photo, CAT, "   ", steps=2)
    e = studio.edit(photo, CAT, "a tiger " * 100, steps=2)
    assert any("target prompt is longer" in n and "cut off" in n for n in e.notes)
    with pytest.raises(ValueError, match="guidance"):
        studio.edit(photo, CAT, "a tiger", guidance=100, steps=2)


def test_cli_edit_sweep_writes_pngs_json_and_plot(tmp_path):
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-m", "recontext", "edit", "assets/photos/coffee.png",
                        "--source", "a cup of coffee", "--target", "a cup of tea", "--sweep", "0,0.5",
                        "--steps", "3", "--out", str(tmp_path), "--preset", "tiny"],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["scale"] for e in report["edits"]] == [0.0, 0.5]
    for name in ("sweep.png", "reconstruction.png", "edit_scale0.png", "edit_scale0.5.png"):
        assert (tmp_path / name).exists(), name
