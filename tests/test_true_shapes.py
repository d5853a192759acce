"""The real presets at their true shapes: the model mirror, and every tab on `sdxl`.

The mirror (`python -m recontext fixtures shapes`) holds random weights with the exact
public configurations; it is built once into the cache folder. The big test loads the
`sdxl` preset from it on the CPU at the smallest size its architecture accepts (32 px: the
VAE's 8x and the UNet's two 2x downsamplings), float16 weights computed in float32.
"""

import json
import math
import os
import resource
import time

import pytest
import torch

from recontext import presets

SAFETY = "CompVis/stable-diffusion-safety-checker"
HUB = {
    "sd15": {"base": "stable-diffusion-v1-5/stable-diffusion-v1-5", "ip_adapter": "h94/IP-Adapter",
             "clip": "openai/clip-vit-large-patch14", "safety_checker": SAFETY},
    "sdxl": {"base": "stabilityai/stable-diffusion-xl-base-1.0", "vae": "madebyollin/sdxl-vae-fp16-fix",
             "ip_adapter": "h94/IP-Adapter", "clip": "openai/clip-vit-large-patch14", "safety_checker": SAFETY},
    "sdxl-turbo": {"base": "stabilityai/sdxl-turbo", "vae": "madebyollin/sdxl-vae-fp16-fix",
                   "ip_adapter": "h94/IP-Adapter", "clip": "openai/clip-vit-large-patch14",
                   "safety_checker": SAFETY},
}


def test_without_a_mirror_presets_name_the_hub_repos(monkeypatch):
    monkeypatch.delenv("RECONTEXT_MODELS_DIR", raising=False)
    monkeypatch.delenv("RECONTEXT_RESOLUTION", raising=False)
    for name, repos in HUB.items():
        p = presets.get(name)
        assert p.repos() == repos and p.mirror is None and not p.offline
    assert presets.get("sdxl").resolution == 1024


def test_a_mirror_maps_every_repo_to_its_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("RECONTEXT_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("RECONTEXT_RESOLUTION", "256")
    for name, repos in HUB.items():
        p = presets.get(name)
        assert p.offline and p.resolution == 256
        assert p.repos() == {k: str(tmp_path.joinpath(*v.split("/"))) for k, v in repos.items()}
    assert presets.get("tiny").mirror is None  # the tiny preset is built here, not mirrored
    monkeypatch.setenv("RECONTEXT_RESOLUTION", "256px")
    with pytest.raises(ValueError, match="RECONTEXT_RESOLUTION"):
        presets.get("sdxl")


def test_a_mirror_lacking_a_file_names_it_and_its_repo(monkeypatch, tmp_path):
    from recontext.models import ModelOwner

    monkeypatch.setenv("RECONTEXT_MODELS_DIR", str(tmp_path))
    base = tmp_path / "stabilityai" / "stable-diffusion-xl-base-1.0"
    base.mkdir(parents=True)
    with pytest.raises(ValueError, match="model_index.json of the Hub repo stabilityai/stable-diffusion-xl-base-1.0"):
        ModelOwner(presets.get("sdxl")).pipe
    (base / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
    (base / "unet").mkdir()
    (base / "unet" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="lacks unet/diffusion_pytorch_model.safetensors of the Hub repo "
                                         "stabilityai/stable-diffusion-xl-base-1.0"):
        ModelOwner(presets.get("sdxl")).pipe


def test_float16_weights_computed_in_float32_match_float32():
    """`compute_in`: weights stay float16, forward and backward run in float32."""
    from recontext.models import compute_in

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GroupNorm(2, 8),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5)).half().float()
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    want = net(x)
    want.square().sum().backward()
    want_grad, x.grad = x.grad.clone(), None
    compute_in(net.half().requires_grad_(False), torch.float32)
    assert net[0].weight.dtype == torch.float16 and net[1].weight.dtype == torch.float32
    got = net(x)
    got.square().sum().backward()
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(x.grad, want_grad, atol=1e-5)


def test_prune_keeps_one_presets_repos_and_what_it_did_not_write(monkeypatch, tmp_path):
    """`prune` removes the builder's repos of other presets (they carry its marker) and
    half-built folders; a real download without the marker stays."""
    from recontext import fixtures

    def repo(name, marker=True):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "w.bin").write_bytes(b"x")
        if marker:
            (tmp_path / name / fixtures.DONE).write_text("\n")

    repo(fixtures.SD15)
    repo(fixtures.GARMENT_EXTRACTOR[0])
    repo(fixtures.CLIP_L)
    repo("someone/real-download", marker=False)
    (tmp_path / ".building-abc").mkdir()
    written = []

    def write(name):
        def writer(r):
            written.append(name)
            os.makedirs(os.path.join(r, name))
        return writer

    monkeypatch.setattr(fixtures, "_repos", lambda presets, mirror: {
        name: write(name) for name in (fixtures.SDXL_BASE, fixtures.CLIP_L)})
    fixtures.build_shapes(str(tmp_path), ["sdxl"], prune=True)
    assert not (tmp_path / fixtures.SD15).exists() and not (tmp_path / "ShineChen1024").exists()
    assert (tmp_path / fixtures.CLIP_L / "w.bin").exists()  # needed by sdxl too: kept, not rewritten
    assert (tmp_path / "someone" / "real-download" / "w.bin").exists()
    assert not (tmp_path / ".building-abc").exists()
    assert written == [fixtures.SDXL_BASE] and (tmp_path / fixtures.SDXL_BASE / fixtures.DONE).exists()


def test_a_full_disk_is_named_and_leaves_no_half_written_repo(monkeypatch, tmp_path):
    import errno

    from recontext import fixtures
    from recontext.cli import main

    def fill(r):
        os.makedirs(os.path.join(r, fixtures.SDXL_BASE, "unet"))
        with open(os.path.join(r, fixtures.SDXL_BASE, "unet", "part"), "wb") as f:
            f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fixtures, "_repos", lambda presets, mirror: {fixtures.SDXL_BASE: fill})
    with pytest.raises(fixtures.MirrorDiskFull, match="disk filled while writing stabilityai/stable-diffusion"):
        fixtures.build_shapes(str(tmp_path), ["sdxl"], prune=False)
    assert [p.name for p in tmp_path.iterdir()] == [".build.lock"]
    assert main(["fixtures", "shapes", str(tmp_path), "--presets", "sdxl"]) == 2  # one clear line, no traceback


def test_the_extractor_file_is_a_link_to_the_sd15_unet_when_the_mirror_has_it(tmp_path):
    from recontext import fixtures

    unet = tmp_path / "mirror" / fixtures.SD15 / "unet" / "diffusion_pytorch_model.safetensors"
    unet.parent.mkdir(parents=True)
    unet.write_bytes(b"the sd15 unet's state dict")
    fixtures.write_garment_extractor(str(tmp_path / "tmp"), str(tmp_path / "mirror"))
    repo, file = fixtures.GARMENT_EXTRACTOR
    assert os.path.samefile(tmp_path / "tmp" / repo / file, unet)


SIDE = 32  # the smallest working size SDXL accepts: sides a multiple of 8 * 2 * 2


@pytest.mark.slow  # a ~10 GB mirror; timings in docs/testing.md
@pytest.mark.timeout(1800)
def test_sdxl_at_true_shapes_runs_every_tab(monkeypatch, tmp_path, photo):
    """Every tab on the sdxl preset's real architecture (random weights) at its smallest size,
    1 step (the shapes, not the sampling, are under test): every inversion method once, tight once (the edit's, shared with the sweep's
    first scale through the inversion cache), the three garment methods."""
    from recontext import Studio, inversion
    from recontext.fixtures import build_shapes
    from recontext.garment.hyperlora import HyperLoRA, HyperLoRAConfig, target_modules

    start = time.perf_counter()
    root = build_shapes(os.path.join(presets.cache_dir(), "shapes"), ["sdxl"])  # pruned as RECONTEXT_SHAPES_PRUNE says
    monkeypatch.setenv("RECONTEXT_MODELS_DIR", root)
    monkeypatch.setenv("RECONTEXT_RESOLUTION", str(SIDE))
    monkeypatch.setenv("RECONTEXT_WEIGHTS_DTYPE", "float16")  # computed in float32 (see README)
    monkeypatch.setenv("RECONTEXT_SAFETY_CHECKER", "1")  # the first output through the real checker's shapes
    studio = Studio("sdxl")
    checker, _, _ = studio.models.safety
    assert checker.vision_model.config.hidden_size == 1024 and checker.concept_embeds.shape == (17, 768)
    unet = studio.models.pipe.unet
    assert sum(type(m).__name__ == "BasicTransformerBlock" for m in unet.modules()) == 70
    assert unet.dtype == torch.float16 and studio.models.dtype == torch.float32

    finite = []
    decode = studio.models.decode

    def checked_decode(latents, *args, **kwargs):  # every output passes through here
        finite.append(bool(torch.isfinite(latents).all()))
        return decode(latents, *args, **kwargs)

    monkeypatch.setattr(studio.models, "decode", checked_decode)
    timings = {}

    def timed(name, run):
        t, calls = time.perf_counter(), studio.models._unet_evaluations
        out = run()
        timings[name] = (time.perf_counter() - t, studio.models._unet_evaluations - calls)
        return out

    assert studio.models.size_multiple == SIDE
    for method in inversion.METHODS:
        r = timed(method, lambda: studio.reconstruct(photo, prompt="a cat", method=method, tight=False, steps=1))
        # the checker's shapes are tested on the first output; on a CPU it costs as much as two
        # UNet calls per output (its ViT-L weights cast per call), so the rest skip it
        monkeypatch.setenv("RECONTEXT_SAFETY_CHECKER", "0")
        # the working size keeps the photo's aspect as far as the size multiple allows
        assert r.image.size == photo.size and r.output.size == (SIDE, SIDE)
        assert not math.isnan(r.metrics["psnr"])

    e = timed("edit", lambda: studio.edit(photo, "a cat", "a tiger", method="ddim", tight=True, image_scale=0.4,
                                          steps=1))
    assert e.image.size == photo.size
    cached = len(studio.inversion_cache.items)
    sweep = timed("sweep", lambda: studio.edit_sweep(photo, "a cat", "a tiger", scales=(0.4, 0.8), steps=1))
    assert len(studio.inversion_cache.items) == cached + 1  # scale 0.4 reused the edit's inversion
    assert [s.image.size for s in sweep] == [photo.size] * 2
    assert all(not math.isnan(s.metrics["clip_target"]) for s in sweep)

    garment = photo.resize((224, 224))
    g = timed("ip-adapter", lambda: studio.dress(garment, "a person on a beach", method="ip-adapter", steps=1))
    assert g.image.size == (SIDE, SIDE)
    g = timed("finetune-lora", lambda: studio.dress(garment, "a person on a beach", method="finetune-lora", steps=1,
                                                    finetune_steps=1))
    assert g.image.size == (SIDE, SIDE)

    # HyperLoRA built for SDXL's attention modules (untrained): 70 blocks x 2 attentions x 4
    modules = [list(m) for m in target_modules(unet)]
    assert len(modules) == 560
    vision = studio.models.pipe.image_encoder.config.hidden_size
    torch.manual_seed(0)
    HyperLoRA(HyperLoRAConfig(modules, vision, "sdxl")).save(str(tmp_path / "hyperlora"))
    g = timed("hyperlora", lambda: studio.dress(garment, "a person on a beach", method="hyperlora", steps=1,
                                                checkpoint=str(tmp_path / "hyperlora")))
    assert g.image.size == (SIDE, SIDE)

    image = timed("generate", lambda: studio.generate("a photo of a cat", steps=1))
    assert image.size == (SIDE, SIDE)

    assert finite and all(finite)
    assert studio.base_loads == 1
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    wall = time.perf_counter() - start
    print(f"\ntrue shapes: {wall:.0f} s, peak RSS {peak_gb:.1f} GB;",
          ", ".join(f"{k} {v:.0f} s ({n} UNet evaluations)" for k, (v, n) in timings.items()))
    assert peak_gb <= 20
    del studio
