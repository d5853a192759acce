"""Flow-matching models: the tiny-flux preset, flow-Euler and RF-Inversion, each with and
without Tight Inversion (issue 14). Everything runs on the committed tiny-flux weights."""

import numpy as np
import pytest
import torch

from recontext import presets
from recontext.inversion import flow_euler, rf_inversion
from recontext.tiny import claims, flux, world

FLOW = ["flow-euler", "rf-inversion"]


@pytest.fixture(scope="module")
def fstudio():
    from recontext import Studio
    from recontext.logs import quiet_libraries

    quiet_libraries()
    return Studio("tiny-flux")


def scene(seed=0):
    img, cap, _ = world.scene(claims.HELD_OUT_SEED + 500 + seed)
    return img, cap


def test_presets_name_flux_and_its_ip_adapter():
    p = presets.get("flux")
    assert p.flow and p.pipeline == "flux" and p.base == "black-forest-labs/FLUX.1-dev"
    assert (p.dtype, p.steps, p.guidance) == ("bfloat16", 28, 3.5)
    assert (p.ip_adapter, p.ip_adapter_weight) == ("XLabs-AI/flux-ip-adapter", "ip_adapter.safetensors")
    assert p.image_encoder_folder == "openai/clip-vit-large-patch14"
    tiny = presets.get("tiny-flux")
    assert tiny.flow and tiny.local and tiny.steps == 28 and tiny.ip_adapter_weight == p.ip_adapter_weight


def test_tiny_flux_loads_through_the_hub_calls(fstudio):
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor
    from safetensors import safe_open

    pipe = fstudio.models.pipe
    assert type(pipe) is FluxPipeline and isinstance(pipe.transformer, FluxTransformer2DModel)
    procs = [p for n, p in pipe.transformer.attn_processors.items() if n.startswith("transformer_blocks")]
    assert procs and all(isinstance(p, FluxIPAdapterAttnProcessor) for p in procs)
    assert pipe.vae.config.latent_channels == 16 and pipe.vae_scale_factor == 4
    with safe_open(f"{fstudio.preset.ip_adapter}/{flux.IP_WEIGHT}", "pt") as f:  # the XLabs key layout
        keys = set(f.keys())
    assert "ip_adapter_proj_model.proj.weight" in keys
    assert "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight" in keys
    assert fstudio.models.size_multiple == 16


def test_methods_fit_the_preset(fstudio, studio):
    assert fstudio.methods == FLOW and studio.methods == ["ddim", "renoise", "edit-friendly"]
    img, cap = scene()
    with pytest.raises(ValueError, match="flow-euler, rf-inversion"):
        fstudio.reconstruct(img, cap, method="ddim")
    with pytest.raises(ValueError, match="ddim, renoise, edit-friendly"):
        studio.reconstruct(img, cap, method="rf-inversion")
    with pytest.raises(ValueError, match="regenerate"):
        fstudio.edit(img, cap, "a green circle on a blue background", method="rf-inversion",
                     edit_method="prompt-to-prompt")


@pytest.mark.parametrize("method", FLOW)
def test_tight_at_scale_zero_is_plain(fstudio, method):
    img, cap = scene(1)
    plain = fstudio.reconstruct(img, cap, method=method, tight=False, steps=8)
    tight = fstudio.reconstruct(img, cap, method=method, tight=True, image_scale=0.0, steps=8)
    assert np.array_equal(np.asarray(plain.output), np.asarray(tight.output))


def test_rf_inversion_without_controllers_is_flow_euler(fstudio):
    models = fstudio.models
    img, cap = scene(2)
    photo = fstudio.prepare(img)
    timesteps, sigmas = models.levels(12, photo.latents)
    with models.lock, torch.no_grad():
        cond = fstudio.condition(cap, photo.image, True, 0.4)
        noise = flow_euler.invert(models.velocity, photo.latents, timesteps, sigmas, cond)
        state = rf_inversion.invert(models.velocity, photo.latents, timesteps, sigmas, cond,
                                    generator=torch.Generator().manual_seed(0), gamma=0.0, timestep="shifted")
        assert torch.equal(noise, state[0])  # (the community pipeline's "linear" timesteps are not flow-Euler's)
        assert torch.equal(flow_euler.reconstruct(models.velocity, noise, timesteps, sigmas, cond),
                           rf_inversion.reconstruct(models.velocity, state, timesteps, sigmas, cond, eta=0.0))


def test_flow_euler_improves_with_steps(fstudio):
    inputs = claims.inversion_inputs(2)
    psnr = {n: np.mean([fstudio.reconstruct(img, cap, method="flow-euler", steps=n).metrics["inversion_psnr"]
                        for img, cap in inputs]) for n in (8, 28)}
    assert psnr[28] > psnr[8], psnr


def test_the_controllers_pull_toward_their_targets(fstudio):
    """At full strength over the whole trajectory, gamma lands the inversion on its Gaussian
    sample (telling the transformer the shifted levels; with the community pipeline's i/(N+1) the
    controller's steps do not telescope onto the sample) and eta brings the reconstruction back
    onto the photo's latents."""
    models = fstudio.models
    img, cap = scene(3)
    photo = fstudio.prepare(img)
    timesteps, sigmas = models.levels(8, photo.latents)
    with models.lock, torch.no_grad():
        cond = fstudio.condition(cap, photo.image, False, 0.0)
        state = rf_inversion.invert(models.velocity, photo.latents, timesteps, sigmas, cond,
                                    generator=torch.Generator().manual_seed(0), gamma=1.0, timestep="shifted")
        back = rf_inversion.reconstruct(models.velocity, state, timesteps, sigmas, cond, eta=1.0, stop=1.0)
    noise = torch.randn(photo.latents.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(state[0], noise, atol=1e-4)
    assert torch.allclose(back, photo.latents, atol=1e-4)


@pytest.mark.xfail(strict=False, reason="not reached: on the committed tiny-flux weights (3000 steps) tight "
                   "changes RF-Inversion's PSNR by -0.11 dB (plain 20.46, tight 20.35); where the controller hands over "
                   "to the model (sigma ~0.8) the adapter barely changes its x0 prediction (error 0.363 without the "
                   "image, 0.361 with it at scale 1; bench/flow_inversion.py) "
                   "(tight does help flow-Euler: +0.85 dB at scale 0.4). Trained twice as long (6000 steps, not committed) "
                   "the gain is still -0.02 dB and at sigma 0.75 the error is 0.301 / 0.299 / 0.307 without / with the "
                   "image / with another input's: the adapter's 4 tokens from one pooled embedding add nothing there")
def test_tight_improves_rf_inversion(fstudio):
    """Averaged over the example photos and 6 held-out scenes, at the preset's steps and the
    studio's default image scale (0.4)."""
    result = claims.tight_gain(fstudio, "rf-inversion")
    assert result["gain"] > 0, result


def test_an_rf_inversion_colour_edit_moves_the_shape_colour(fstudio):
    edits = claims.colour_edit(fstudio, n=6, method="rf-inversion", tight=False)
    moved = [e["shape_distance_after"] < e["shape_distance_before"] for e in edits]
    assert np.mean(moved) >= 5 / 6, edits


def test_every_flow_method_and_an_edit_share_one_base_load(fstudio):
    img, cap = scene(4)
    for method in FLOW:
        for tight in (False, True):
            r = fstudio.reconstruct(img, cap, method=method, tight=tight, steps=4)
            assert r.image.size == img.size and np.isfinite(r.metrics["psnr"])
    e = fstudio.edit(img, cap, claims.recolour(cap, cap.split()[-2], ""), method="rf-inversion", steps=4)
    assert e.image.size == img.size
    assert fstudio.generate(cap, steps=4).size == (fstudio.preset.resolution,) * 2
    assert fstudio.base_loads == 1


def test_spaces_preload_the_flux_preset_and_budget_its_gpu_time():
    import os

    import yaml

    from recontext import zerogpu

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    meta = yaml.safe_load(open(os.path.join(root, "spaces_config", "front_matter.yaml")))
    preloaded = " ".join(meta["preload_from_hub"])
    p = presets.get("flux")
    for repo in (p.base, p.ip_adapter, p.image_encoder_folder):
        assert repo in meta["models"] and repo in preloaded
    for file in ("transformer/config.json", "text_encoder_2/config.json", "tokenizer_2/spiece.model",
                 p.ip_adapter_weight):
        assert file in preloaded
    work = zerogpu.Work(evaluations=200)
    assert zerogpu.estimate(p, work) > zerogpu.estimate(presets.get("sdxl"), work)


def test_flux_dev_shapes_are_its_public_config():
    from diffusers import FluxTransformer2DModel

    from recontext import fixtures

    with torch.device("meta"):
        model = FluxTransformer2DModel(**fixtures.FLUX_TRANSFORMER)
    assert 11.8e9 < sum(p.numel() for p in model.parameters()) < 12.0e9  # FLUX.1-dev: 11.9 B
    assert model.inner_dim == 3072 and model.config.guidance_embeds


def test_training_starts_from_fresh_weights_whatever_out_holds():
    """`train-tiny-flux --out DIR` retrains from the seed: the trained files already in DIR
    (transformer, T5, image encoder, adapter) are not where it starts."""
    from recontext.tiny import flux

    trained, fresh = flux.parts(), flux.parts(fresh=True)
    for name in ("transformer", "text_encoder_2", "image_encoder"):
        a, b = trained[name].state_dict(), fresh[name].state_dict()
        assert any(not torch.equal(a[k], b[k]) for k in a), name
    assert all(torch.equal(v, fresh["vae"].state_dict()[k]) for k, v in trained["vae"].state_dict().items())
