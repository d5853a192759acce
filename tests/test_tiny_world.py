"""The tiny world behaves: each paper claim, measured on the committed weights and on
inputs held out of training (see recontext/tiny/claims.py)."""

import numpy as np
import pytest

from recontext.tiny import claims, world


def test_vae_round_trip_on_the_example_photos(studio):
    psnr = claims.vae_psnr(studio, world.example_photos())
    assert np.mean(psnr) >= 27, psnr


@pytest.mark.xfail(strict=False, reason="not reached yet (issue 10): held-out photos average 22.6 dB, not 24 (bench/tiny_world.py)")
def test_vae_generalises_to_photos_it_never_saw(studio):
    psnr = claims.vae_psnr(studio, world.photo_paths(held_out=True))
    assert np.mean(psnr) >= 24, psnr


def test_widening_the_vae_keeps_its_latents():
    """The shipped VAE is the trained one widened (arch.widen_vae): its encoder must give the
    latents the UNet was trained on, and before the widen stage its decoder the same images."""
    import torch

    from recontext.tiny import WEIGHTS, train

    small = train.trained_vae(WEIGHTS, wide=False)
    widened = train.widened(small)
    shipped = train.trained_vae(WEIGHTS)
    assert sum(p.numel() for p in shipped.decoder.parameters()) > 3 * sum(p.numel() for p in small.decoder.parameters())
    x = train.to_tensor([world.center_square(world.load_photo(p)) for p in world.example_photos()])
    with torch.no_grad():
        z = small.encode(x).latent_dist.mode()
        assert torch.allclose(widened.encode(x).latent_dist.mode(), z, atol=1e-5)
        assert torch.allclose(shipped.encode(x).latent_dist.mode(), z, atol=1e-5)
        assert torch.allclose(widened.decode(z).sample, small.decode(z).sample, atol=1e-5)
        assert not torch.allclose(shipped.decode(z).sample, small.decode(z).sample, atol=1e-3)  # trained on


@pytest.mark.slow  # held-out generations: 201 s measured on 2 shared CPU cores
def test_generation_follows_the_prompt(studio):
    rate, results = claims.prompt_following(studio, claims.COMBOS[:6], seeds=(0, 1))
    assert rate >= 0.75, results


def test_generate_is_seeded_and_checks_its_prompt(studio):
    a = studio.generate("a red circle on a blue background", steps=10, seed=3)
    b = studio.generate("a red circle on a blue background", steps=10, seed=3)
    assert a.size == (studio.preset.resolution,) * 2
    assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="prompt is empty"):
        studio.generate("   ")


@pytest.mark.xfail(strict=False, reason="not reached (issue 10): at the preset's 20 steps tight gains +0.08 dB "
                   "DDIM, +0.12 dB ReNoise (bench/tiny_world.py). A perfect inversion "
                   "would gain only 1.5 dB over plain, and the adapter tells the UNet little that the prompt and the "
                   "noisy latents do not (x0 error at t=950: 0.392 without the image, 0.377 with it at scale 1)")
@pytest.mark.slow  # held-out inversions: 279 s measured on 2 shared CPU cores
# DDIM's gain (410 s here before) is measured on held-out inputs by test_typical.py's fresh
# computation (claim tight-vs-plain: the same 0.5 dB, scale 0.4, the preset's steps); issue 38
# merged the two to keep the suite within 20 minutes
@pytest.mark.parametrize("method", ["renoise"])
def test_tight_inversion_improves_reconstruction(studio, method):
    result = claims.tight_gain(studio, method)
    assert result["gain"] >= 0.5, result


def test_a_colour_edit_lands_and_keeps_the_background(studio):
    edits = claims.colour_edit(studio, n=6)
    moved = [e["shape_distance_after"] < e["shape_distance_before"] for e in edits]
    kept = [e["border_kept"] for e in edits]
    assert np.mean(moved) >= 5 / 6 and np.mean(kept) >= 5 / 6, edits


@pytest.mark.xfail(strict=False, reason="not reached yet (issue 10): along the sweep edit alignment falls and "
                   "preservation rises with the image scale, but not monotonically enough (bench/tiny_world.py: "
                   "Spearman -0.71 alignment, +0.24 preservation)")
def test_the_image_scale_trades_alignment_for_preservation(studio):
    rho = claims.sweep_correlations(studio, n=3)
    assert rho["alignment"] <= -0.8 and rho["preservation"] >= 0.8, rho


def test_clip_ranks_the_true_caption_first(studio):
    assert claims.clip_top1(studio) >= 0.9


def test_hyperlora_carries_the_garment_colour(studio):
    error = claims.garment_colour_error(studio, ("hyperlora", "ip-adapter", "prompt-only", claims.MISMATCHED), n=8)
    assert error["hyperlora"] < error["ip-adapter"] and error["hyperlora"] < error["prompt-only"], error
    assert error["hyperlora"] < error[claims.MISMATCHED], error  # its own garment's weights, not any


def test_scene_masks_and_captions_agree():
    img, cap, mask = world.scene(7)
    a = np.asarray(img, np.float32) / 255
    colour, background = cap.split()[1], cap.split()[-2]
    assert claims.NAMES[int(claims.colour_names(a[mask].mean(0)))] == colour
    assert claims.NAMES[int(claims.colour_names(a[~mask].mean(0)))] == background
    assert cap in world.captions() and len(world.captions()) == 90


@pytest.mark.xfail(strict=False, reason="not reached (issue 10): matched/mismatched held-out loss over the whole picture "
                   "0.956 (bench/hyperlora_toy.py). The UNet's own conditioning does not come near either: the prompt "
                   "naming each garment's look exactly (colour, pattern) instead of a HyperLoRA gives 0.959. The look "
                   "decides only the garment's region, a small part of the picture (see the region test below)")
def test_hyperlora_is_garment_specific_on_held_out_pairs(studio):
    result = claims.hyperlora_matched_ratio(studio, n=16, draws=4)
    assert result["ratio"] < 0.9, result


def test_hyperlora_is_garment_specific_where_the_garment_is(studio):
    """Over the garment's region of the held-out figures, the matched/mismatched loss ratio
    is below 0.9, and below the ratio the UNet reaches with the look named in the prompt."""
    result = claims.hyperlora_matched_ratio(studio, n=16, draws=4, region=True)
    named = claims.named_look_ratio(studio, n=16, draws=4, region=True)
    assert result["ratio"] < 0.9 and result["ratio"] < named, (result, named)
