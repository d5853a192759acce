"""Editing methods (regenerate, prompt-to-prompt, LEDITS++) on the tiny preset: their
mechanics, the shared UNet left as it was, the authors' defaults, and the paper claims
on procedural scenes."""

import numpy as np
import pytest

from recontext.editing import EDIT_METHODS, tokens
from recontext import editing, inversion
from recontext.metrics import psnr

CAT = "a photo of a cat"
STEPS = 8


def _p(e):
    return psnr(e.output, e.reconstruction_working)


@pytest.mark.parametrize("tight", [True, False])
def test_p2p_with_the_source_prompt_reproduces_the_reconstruction(studio, photo, tight):
    e = studio.edit(photo, CAT, CAT, tight=tight, guidance=1.0, steps=STEPS,
                    edit_method="prompt-to-prompt")
    assert e.edit_method == "prompt-to-prompt" and e.tight is tight
    assert _p(e) >= 40


def test_p2p_without_replacement_is_regenerate_and_with_it_is_not(studio, photo):
    common = dict(guidance=7.5, steps=STEPS, image_scale=0.4)
    regen = studio.edit(photo, CAT, "a photo of a dog", **common)
    free = studio.edit(photo, CAT, "a photo of a dog", edit_method="prompt-to-prompt",
                       cross_replace=0.0, self_replace=0.0, **common)
    tied = studio.edit(photo, CAT, "a photo of a dog", edit_method="prompt-to-prompt",
                       cross_replace=1.0, self_replace=1.0, **common)
    assert psnr(free.output, regen.output) >= 40
    # the borrowed maps pull the edit back toward the reconstruction
    assert psnr(tied.output, tied.reconstruction_working) > psnr(regen.output, regen.reconstruction_working)


@pytest.mark.parametrize("tight", [True, False])
def test_ledits_without_edit_guidance_replays_the_inversion(studio, photo, tight):
    e = studio.edit(photo, CAT, "a photo of a dog", method="edit-friendly", tight=tight,
                    steps=STEPS, edit_method="ledits++", edit_guidance=0.0)
    assert _p(e) >= 40
    moved = studio.edit(photo, CAT, "a photo of a dog", method="edit-friendly", tight=tight,
                        steps=STEPS, edit_method="ledits++", edit_guidance=10.0)
    assert not np.array_equal(np.asarray(moved.output), np.asarray(e.output))


def test_edits_leave_the_unet_as_they_found_it(studio, photo):
    unet = studio.models.pipe.unet
    before = studio.reconstruct(photo, CAT, tight=True, image_scale=0.4, steps=STEPS)
    processors = dict(unet.attn_processors)
    for edit_method in EDIT_METHODS:
        for method in ("ddim", "edit-friendly"):
            studio.edit(photo, CAT, "a photo of a red dog", method=method, tight=True,
                        image_scale=0.7, steps=4, edit_method=edit_method, reweight="red=2")
    assert {k: id(v) for k, v in unet.attn_processors.items()} == {k: id(v) for k, v in processors.items()}
    after = studio.reconstruct(photo, CAT, tight=True, image_scale=0.4, steps=STEPS)
    assert np.array_equal(np.asarray(before.output), np.asarray(after.output))
    assert studio.base_loads == 1


def test_an_edit_that_fails_midway_still_restores_the_processors(studio, photo, monkeypatch):
    from recontext.editing import prompt_to_prompt

    unet = studio.models.pipe.unet
    processors = {k: id(v) for k, v in unet.attn_processors.items()}
    monkeypatch.setattr(prompt_to_prompt.Control, "__call__", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        studio.edit(photo, CAT, "a photo of a dog", steps=2, edit_method="prompt-to-prompt")
    assert {k: id(v) for k, v in unet.attn_processors.items()} == processors


def test_token_alignment_word_swap_and_refinement():
    count = len  # one token per letter, like a byte-level tokenizer without merges
    # "red" (3 tokens) -> "green" (5): the new word spreads over the old one's tokens
    m = tokens.align("a red dot", "a green dot", count, 16)
    assert m[:2] == [0, 1] and m[2:7] == [2, 2, 3, 3, 4] and m[7:10] == [5, 6, 7]
    assert m[10] == 8 and all(0 <= v < 16 for v in m)
    # an inserted word keeps its own attention (refinement)
    m = tokens.align("a dot", "a big dot", count, 16)
    assert m[2:5] == [-1, -1, -1] and m[5:8] == [2, 3, 4]
    assert tokens.changed("a red dot", "a green dot", count) == [2, 3, 4, 5, 6]
    assert tokens.positions("a green dot", "dot", count) == [7, 8, 9]
    with pytest.raises(ValueError, match="not a word of the target"):
        tokens.positions("a green dot", "red", count)


def test_bad_edit_settings_get_clear_messages(studio, photo):
    with pytest.raises(ValueError, match="regenerate, prompt-to-prompt, ledits\\+\\+"):
        studio.edit(photo, CAT, "a dog", steps=2, edit_method="nope")
    with pytest.raises(ValueError, match="cross_replace must be between 0.0 and 1.0"):
        studio.edit(photo, CAT, "a dog", steps=2, edit_method="prompt-to-prompt", cross_replace=2)
    with pytest.raises(ValueError, match="word=factor"):
        studio.edit(photo, CAT, "a dog", steps=2, edit_method="prompt-to-prompt", reweight="dog")
    with pytest.raises(ValueError, match="not a word of the target"):
        studio.edit(photo, CAT, "a dog", steps=2, edit_method="prompt-to-prompt", reweight="cat=2")


# -- the authors' defaults ---------------------------------------------------------------

# (preset, renoise steps, averaged window late / early, lambda_ac, lambda_kl, noise correction)
RENOISE_TABLE = [
    ("sdxl-turbo", 9, (8, 10), (0, 5), 20.0, 0.065, True),  # official RunConfig (SDXL-Turbo)
    # official DDIM examples: RunConfig with 1 renoise step and no noise correction (the windows and
    # the regularisation are RunConfig's)
    ("sdxl", 1, (8, 10), (0, 5), 20.0, 0.065, False),
    ("sd15", 1, (8, 10), (0, 5), 20.0, 0.065, False),
    ("tiny", 1, (8, 10), (0, 5), 20.0, 0.065, False),        # DDIM, like sd15 / sdxl
]


@pytest.mark.parametrize("preset,steps,late,early,ac,kl,correction", RENOISE_TABLE)
def test_renoise_defaults_follow_the_official_settings(preset, steps, late, early, ac, kl, correction):
    d = inversion.options("renoise", preset)
    assert (d["renoise_steps"], d["average"], d["average_early"]) == (steps, late, early)
    assert (d["lambda_ac"], d["lambda_kl"], d["noise_correction"], d["early_t"]) == (ac, kl, correction, 250)


def test_renoise_runs_the_preset_defaults(studio, photo):
    d = inversion.options("renoise", "tiny")
    before = studio.models.unet_evaluations()
    studio.reconstruct(photo, CAT, method="renoise", steps=4)
    # per step inverting: the prediction at the photo noised forward (the regularisation's reference),
    # the plain prediction, each renoise step, the final estimate's residual (keep_best); one call rebuilding
    assert studio.models.unet_evaluations() - before == 4 * (3 + d["renoise_steps"]) + 4


def test_renoise_window_early_steps_and_regularisation():
    import torch

    from recontext.inversion import renoise

    calls = []

    def unet_call(x, t, cond):
        calls.append(int(t))
        return 0.1 * x + torch.sin(x)

    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    alphas = torch.tensor([0.99, 0.9, 0.5, 0.2])
    settings = {k: v for k, v in inversion.options("renoise", "sdxl-turbo").items()}
    settings.update(lambda_ac=0.0, lambda_kl=0.0, keep_best=False)
    renoise.invert(unet_call, x, torch.tensor([100, 500, 900]), alphas, None, **settings)
    # t < 250: iterations 0-4 (5 calls); t >= 250: iterations 0-9 (10 calls)
    assert calls == [100] * 5 + [500] * 10 + [900] * 10
    # regularisation lowers the noise's auto-correlation and keeps it near the reference
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 4, 34, 34), 3, stride=1)
    g = torch.Generator().manual_seed(0)
    out = renoise.regularize(smooth, smooth, lambda_ac=20.0, lambda_kl=0.065, generator=g)
    assert renoise._autocorrelation(out, torch.Generator().manual_seed(1)) < \
        renoise._autocorrelation(smooth, torch.Generator().manual_seed(1))
    assert not torch.equal(out, smooth)


@pytest.mark.parametrize("method,edit_method,skip,source_guidance", [
    ("edit-friendly", "regenerate", 0.36, 3.5),      # DDPM_inversion: T_skip 36 of 100, cfg_src 3.5
    ("edit-friendly", "prompt-to-prompt", 0.36, 3.5),
    ("edit-friendly", "ledits++", 0.15, 1.0),        # LEDITS++: skip 0.15; source guidance 1 (#39's bench)
    ("ddim", "prompt-to-prompt", 0.0, 1.0),          # Tight Inversion Space: inversion guidance 1.0
    ("renoise", "regenerate", 0.0, 1.0),
])
def test_edit_inversion_defaults(studio, method, edit_method, skip, source_guidance):
    for preset in ("tiny", "sdxl"):
        d = editing.inversion_settings(method, edit_method)
        assert (d["skip"], d["source_guidance"]) == (skip, source_guidance)
    s = studio.edit_settings(method, edit_method)
    assert (s["skip"], s["source_guidance"]) == (skip, source_guidance)
    assert studio.edit_settings(method, edit_method, skip=0.5)["skip"] == 0.5


# -- the paper's claims, on the tiny world's procedural scenes ------------------------------

@pytest.mark.parametrize("tight", [
    pytest.param(True, marks=pytest.mark.xfail(strict=False, reason=(
        "since the tiny UNet predicts v (issue 10), prompt-to-prompt with tight keeps the background "
        "about as well as regenerate, not better: SSIM 0.807 against 0.818 on 3 swaps at 20 steps (LEDITS++ 0.913); "
        "over bench/edit_methods.py's 12 swaps at 50 steps it is barely ahead, 0.829 against 0.828"))),
    False])
def test_p2p_and_ledits_keep_the_background_better_than_regenerate(studio, tight):
    from recontext.tiny.swaps import measure, swaps

    scores = {m: [] for m in EDIT_METHODS}
    for swap in swaps(3):
        for m in EDIT_METHODS:
            e = studio.edit(swap.image, swap.source, swap.target, tight=tight, edit_method=m,
                            method="edit-friendly" if m == "ledits++" else "ddim", steps=20)
            scores[m].append(measure(swap, e.image) | {"before": measure(swap, swap.image)})
    mean = {m: {k: np.mean([s[k] for s in v]) for k in ("background_ssim", "shape_colour_distance")}
            for m, v in scores.items()}
    before = np.mean([s["before"]["shape_colour_distance"] for s in scores["regenerate"]])
    for m in ("prompt-to-prompt", "ledits++"):
        assert mean[m]["background_ssim"] > mean["regenerate"]["background_ssim"], (m, mean)
        assert mean[m]["shape_colour_distance"] < before, (m, mean, before)


def test_batch_edit_rows_take_an_editing_method(studio, tmp_path):
    import shutil

    from recontext.batch import read_manifest, row_key, run_row
    from recontext.runs import RunStore

    root = __import__("os").path.dirname(__import__("os").path.dirname(__file__))
    shutil.copy(f"{root}/assets/photos/chelsea.png", tmp_path / "cat.png")
    (tmp_path / "m.csv").write_text("task,input,prompt,target,method,steps,edit_method\n"
                                    "edit,cat.png,a cat,a dog,,2,prompt-to-prompt\n"
                                    "edit,cat.png,a cat,a dog,,2,\n"
                                    "invert,cat.png,a cat,,,2,ledits++\n")
    jobs = read_manifest(str(tmp_path / "m.csv"))
    runs = RunStore(str(tmp_path / "runs"))
    line = run_row(studio, jobs[0], str(tmp_path), runs)
    assert line["method"] == "prompt-to-prompt:ddim+tight"
    assert runs.get(line["run_id"])["params"]["edit_methods"] == ["prompt-to-prompt"]
    assert row_key(jobs[0], "tiny") != row_key(jobs[1], "tiny")
    # a row without an editing method keeps the key it had before the column existed
    old = {k: v for k, v in jobs[1].items() if k != "edit_method"}
    assert row_key(jobs[1], "tiny") == row_key(old, "tiny")
    with pytest.raises(ValueError, match="edit rows only"):
        run_row(studio, jobs[2], str(tmp_path), runs)
