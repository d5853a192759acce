"""Garment → model: HyperLoRA prediction, serving, training; the baselines; bad input."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from recontext.garment.methods.hyperlora import find_checkpoint as hyperlora_checkpoint, predict
from recontext.garment.hyperlora import HyperLoRA
from recontext.garment.synthetic import COLOURS, describe, garment, pair, worn
from recontext.garment.train import (ADAPTER, Examples, diffusion_loss, read_manifest,
                                     synthetic_pairs, train_hyperlora)
from recontext.garment.hyperlora import functional_params

PROMPT = "a person wearing a t-shirt at the beach"


def px(img):
    return np.asarray(img, dtype=np.int16)


def test_garments_give_their_own_weights_and_images(studio):
    a1, _ = predict(studio.bench, garment(1))
    a2, cached = predict(studio.bench, garment(1))
    b, _ = predict(studio.bench, garment(2))
    assert cached and a1.keys() == b.keys()
    assert all(torch.equal(a1[k], a2[k]) for k in a1)
    assert any(not torch.equal(a1[k], b[k]) for k in a1)
    img_a = studio.dress(garment(1), PROMPT, method="hyperlora", steps=8, seed=3).image
    img_a2 = studio.dress(garment(1), PROMPT, method="hyperlora", steps=8, seed=3).image
    img_b = studio.dress(garment(2), PROMPT, method="hyperlora", steps=8, seed=3).image
    assert np.array_equal(px(img_a), px(img_a2))
    assert not np.array_equal(px(img_a), px(img_b))


def test_garment_calls_leave_the_other_tabs_unchanged(studio, photo):
    before = studio.reconstruct(photo, "a cat", method="ddim", tight=True, steps=6)
    side = studio.preset.resolution
    for method in ("hyperlora", "ip-adapter", "finetune-lora", "prompt-only"):
        g = studio.dress(garment(5), PROMPT, method=method, steps=4, finetune_steps=5)
        assert g.adapt_seconds >= 0 and g.generate_seconds > 0 and g.image.size == (side, side)
    after = studio.reconstruct(photo, "a cat", method="ddim", tight=True, steps=6)
    assert np.array_equal(px(before.image), px(after.image))
    assert studio.base_loads == 1


def test_checkpoint_reloads_to_identical_predictions(studio, tmp_path):
    folder = hyperlora_checkpoint(studio.bench)
    unet = studio.models.pipe.unet
    vision = studio.models.pipe.image_encoder.config.hidden_size
    tokens = studio.models.vision_tokens(garment(7))
    one, two = HyperLoRA.load(folder, unet, vision), HyperLoRA.load(folder, unet, vision)
    with torch.no_grad():
        w1, w2 = one(tokens), two(tokens)
    assert all(torch.equal(w1[k][0], w2[k][0]) and torch.equal(w1[k][1], w2[k][1]) for k in w1)
    one.save(tmp_path / "copy")
    with torch.no_grad():
        w3 = HyperLoRA.load(tmp_path / "copy", unet, vision)(tokens)
    assert all(torch.equal(w1[k][1], w3[k][1]) for k in w1)


def test_training_reaches_the_hypernetwork_and_resumes(studio, tmp_path):
    """Gradients of the diffusion loss flow through the predicted weights into every part
    of the hypernetwork, and a run stopped early resumes where it stopped."""
    models = studio.models
    pairs = synthetic_pairs(4, studio.preset.resolution)
    torch.manual_seed(0)
    out = tmp_path / "ckpt"
    losses = train_hyperlora(models, pairs, str(out), steps=6, save_every=3, progress=False)
    assert len(losses) == 6 and all(np.isfinite(losses))
    config = json.loads((out / "config.json").read_text())
    assert config["trained_steps"] == 6 and config["rank"] == 4
    losses = train_hyperlora(models, pairs, str(out), steps=9, progress=False)
    assert len(losses) == 9 and json.loads((out / "config.json").read_text())["trained_steps"] == 9
    hyper = HyperLoRA.load(str(out), models.pipe.unet).train()
    tokens, latents, cond, _ = Examples(models, pairs)[0]
    with models.lora(ADAPTER, [m[0] for m in hyper.config.modules], 4), torch.enable_grad():
        loss = diffusion_loss(models, latents, cond, torch.Generator().manual_seed(0),
                              functional_params(hyper(tokens), ADAPTER))
        loss.backward()
    for name in ("proj_in.weight", "queries", "to_coeffs.weight", "bases_a.0", "bases_b.0"):
        grad = dict(hyper.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_the_loss_counts_the_garment_region_more(studio, tmp_path):
    """A pair's mask (from the synthetic world, or a manifest's `mask` column) becomes a
    loss weight over the latents: 1 + mask_weight on the garment, 1 elsewhere."""
    models = studio.models
    garment_img, image, prompt = pair(3)
    _, mask = worn(3)
    for name, im in (("g.png", garment_img), ("i.png", image), ("m.png", Image.fromarray(mask.astype(np.uint8) * 255))):
        im.save(tmp_path / name)
    (tmp_path / "data.csv").write_text(f"garment,image,prompt,mask\ng.png,i.png,{prompt},m.png\ng.png,i.png,{prompt},\n")
    with_mask, without = read_manifest(str(tmp_path / "data.csv"))
    assert without.mask is None
    for p in (with_mask, synthetic_pairs(4, studio.preset.resolution)[3]):
        _, latents, _, weight = Examples(models, [p], mask_weight=9.0)[0]
        assert weight.shape[-2:] == latents.shape[-2:]
        assert weight.min() == 1 and weight.max() > 9  # the garment's cells reach 1 + 9
        # the heaviest cells are where the garment is, downsampled as the VAE does
        down = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(mask, dtype=torch.float32)[None, None],
                                                       latents.shape[-2:])
        assert torch.allclose(weight, 1 + 9 * down, atol=0.02)
    assert Examples(models, [with_mask])[0][3] is None and Examples(models, [without], 9.0)[0][3] is None


def test_training_lowers_the_loss(studio, tmp_path):
    """A few hundred steps on synthetic pairs lower the (garment-weighted) loss on those pairs
    by at least 5%, measured on the same noise and timesteps with the trained HyperLoRA's
    weights and without any LoRA (an untrained or broken one: exactly 0%). Trained and
    measured at timesteps from 300 up, as the tiny world's hyperlora stage trains (below 300
    the noisy latents already show the garment). With the training seeds 0-3, 600 steps lower
    that loss by 13.4%, 10.6%, 10.7% and 5.6%. What this asked before, 300 steps over all
    timesteps, held by the seed's luck: 7.8%, 0.5%, 5.5% with seeds 0-2, and 1.7% for seed 0
    once the encoder's latents moved by 1e-6 (the VAE widened)."""
    from recontext.garment.train import MASK_WEIGHT
    from recontext.tiny.claims import _add_same_noise_losses

    pairs = synthetic_pairs(16, studio.preset.resolution)
    out = tmp_path / "c"
    train_hyperlora(studio.models, pairs, str(out), steps=600, progress=False, low_timestep=300)
    models = studio.models
    hyper = HyperLoRA.load(str(out), models.pipe.unet, models.pipe.image_encoder.config.hidden_size)
    examples = Examples(models, pairs, MASK_WEIGHT)
    totals = {"trained": 0.0, "none": 0.0}
    with models.lock, torch.no_grad():
        for i in range(len(examples)):  # the base UNet
            _, latents, cond, weight = examples[i]
            _add_same_noise_losses(totals, models, latents, {"none": (cond, None)}, i, 4, weight, low=300)
        with models.lora(ADAPTER, [m[0] for m in hyper.config.modules], hyper.config.rank):
            for i in range(len(examples)):  # the same noise and timesteps, the trained LoRA
                tokens, latents, cond, weight = examples[i]
                params = functional_params(hyper(tokens), ADAPTER)
                _add_same_noise_losses(totals, models, latents, {"trained": (cond, params)}, i, 4, weight, low=300)
    assert totals["trained"] < 0.95 * totals["none"], totals


def test_bad_garment_inputs_say_what_is_wrong(studio, tmp_path):
    text = tmp_path / "shirt.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="not an image|cannot"):
        studio.dress(str(text), PROMPT)
    with pytest.raises(ValueError, match="prompt is empty"):
        studio.dress(garment(1), "  ")
    with pytest.raises(ValueError, match="unknown garment method .magic.; valid garment methods: hyperlora"):
        studio.dress(garment(1), PROMPT, method="magic")
    with pytest.raises(ValueError, match="missing"):
        studio.dress(garment(1), PROMPT, checkpoint=str(tmp_path))
    other = HyperLoRA.load(hyperlora_checkpoint(studio.bench))
    other.config.modules = other.config.modules[:3]
    other.config.preset = "sdxl"
    HyperLoRA(other.config).save(tmp_path / "sdxl-ckpt")
    with pytest.raises(ValueError, match="trained for preset 'sdxl'"):
        studio.dress(garment(1), PROMPT, checkpoint=str(tmp_path / "sdxl-ckpt"))
    with pytest.raises(ValueError, match="scale"):
        studio.dress(garment(1), PROMPT, scale=9)


def test_synthetic_pairs_match_their_prompts():
    g, scene, prompt = pair(3)
    assert g.size == (128, 128) and scene.size == (128, 128) and "wearing" in prompt
    assert Image.Image.getpixel(g, (0, 0)) == (255, 255, 255)
    look = describe(3)
    assert look["kind"] in prompt and look["colour"] not in prompt  # the photo carries the look


def test_the_garment_mask_covers_the_garment_in_the_scene():
    for seed in range(8):
        img, mask = worn(seed)
        colour = np.array(COLOURS[describe(seed)["colour"]], np.float32)
        inside = np.asarray(img, np.float32)[mask]
        # the fabric's base colour (patterns lighten part of it) fills the mask
        assert mask.sum() > 200 and np.mean(np.abs(inside - colour).sum(1) < 30) > 0.4, seed


def test_real_preset_without_checkpoint_says_how_to_get_one(monkeypatch):
    from types import SimpleNamespace

    from recontext import presets

    monkeypatch.delenv("RECONTEXT_HYPERLORA", raising=False)
    with pytest.raises(ValueError, match="unavailable.*train-hyperlora --preset sdxl"):
        hyperlora_checkpoint(SimpleNamespace(preset=presets.get("sdxl")))


def test_train_and_dress_from_the_command_line(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = lambda *a: subprocess.run([sys.executable, "-m", "recontext", *a], cwd=root,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    ckpt = tmp_path / "ckpt"
    p = run("train-hyperlora", "--preset", "tiny", "--synthetic", "4", "--steps", "4", "--out", str(ckpt))
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["steps"] == 4 and (ckpt / "hyperlora.safetensors").exists()
    out = tmp_path / "dressed.png"
    p = run("dress", os.path.join(root, "assets", "garments", "green-dotted-dress.png"), "--prompt",
            "a person in a park", "--checkpoint", str(ckpt), "--steps", "3", "--preset", "tiny",
            "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    assert Image.open(out).format == "PNG" and json.loads(p.stdout)["method"] == "hyperlora"
    p = run("train-hyperlora", "--preset", "tiny", "--steps", "4", "--out", str(ckpt))
    assert p.returncode == 2 and "--data MANIFEST.csv or --synthetic N" in p.stderr
