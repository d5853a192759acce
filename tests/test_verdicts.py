"""Saying when a result is bad (issue 38): the rules of recontext/verdicts.py on numbers,
then on a real upload through the page's handler: the disc-and-band photo of the issue (a
512x384 JPEG: a red disc on off-white, a brown band along the bottom), captioned "a red
circle on a white background"."""

import io

import pytest
from PIL import Image, ImageDraw

from recontext import verdicts

CAPTION = "a red circle on a white background"


def test_the_rules_on_numbers():
    ddim = {"psnr": 28.1, "vae_psnr": 30.0}
    renoise = {"psnr": 14.5, "vae_psnr": 30.0}
    close = {"psnr": 26.0, "vae_psnr": 30.0}  # 2.1 dB below DDIM, 4 below the ceiling: fine
    notes = verdicts.reconstructions([("ddim", "ddim", False, ddim), ("renoise", "renoise", False, renoise),
                                      ("renoise + tight", "renoise", True, close)], baseline="ddim")
    assert len(notes) == 1 and notes[0].startswith("**renoise looks wrong here:**")
    assert "13.6 dB below DDIM's 28.1 dB" in notes[0] and "renoise_steps" in notes[0]  # what to try
    # no DDIM beside it: the VAE's ceiling is the yardstick
    alone = verdicts.reconstructions([("renoise", "renoise", False, renoise)])
    assert len(alone) == 1 and "15.5 dB below the VAE's round trip (30.0 dB" in alone[0]
    assert verdicts.reconstructions([("ddim", "ddim", False, {"psnr": 23.9, "vae_psnr": 30.0})])  # DDIM itself too
    assert not verdicts.reconstructions([("x", "ddim", False, {"psnr": float("nan"), "vae_psnr": 30.0})])
    assert verdicts.edit("regenerate after ddim", 0.21, 0.25)
    assert not verdicts.edit("regenerate after ddim", 0.25, 0.25)


@pytest.fixture(scope="module")
def disc_and_band(tmp_path_factory):
    img = Image.new("RGB", (512, 384), (245, 240, 230))
    draw = ImageDraw.Draw(img)
    draw.ellipse((176, 88, 336, 248), fill=(210, 30, 30))
    draw.rectangle((0, 320, 512, 384), fill=(120, 80, 40))
    path = tmp_path_factory.mktemp("upload") / "disc.jpg"
    img.save(path, "JPEG", quality=90)
    return str(path)


def test_the_page_flags_the_reconstruction_that_falls_below(studio, disc_and_band):
    """DDIM and ReNoise on the photo at 2 steps (a page setting): DDIM falls 6.2 dB below the
    VAE's round trip there (25.2 against 31.4 dB when this was written). The issue's own case,
    ReNoise at 14.5 dB, no longer happens since ReNoise keeps its best iterate and follows its
    authors' averaging (30.3 dB against DDIM's 29.2 at the preset's steps). The notes flag
    exactly the runs the rules say, by name, and that set is not empty."""
    from recontext.ui import inversion_tab

    out = inversion_tab.reconstruct(studio, disc_and_band, CAPTION, ["ddim", "renoise"], ["plain"],
                                    0.4, 2, 0, progress=lambda *a, **k: None, options={})
    result = out[0]
    runs = {r["method"]: r for r in result["runs"]}
    assert studio.methods[0] == "ddim"  # the preset's baseline, beside which the others are judged
    ddim = runs["ddim"]["psnr"]
    below = {m for m, r in runs.items()
             if m != "ddim" and ddim - r["psnr"] >= verdicts.BASELINE_GAP
             or r["vae_psnr"] - r["psnr"] >= verdicts.CEILING_GAP}
    assert below, f"the constructed case no longer fails: {runs}"  # see the docstring
    flagged = {n.split(" looks wrong here")[0].strip("*") for n in result["notes"] if "looks wrong here" in n}
    assert flagged == below, (result["notes"], runs)
    assert result["notes"][0].startswith("**")  # said first, before the page's explanations


def test_an_edit_that_moves_away_from_its_target_says_so(studio, disc_and_band):
    """"red circle" -> "blue circle" on the photo: whether the edit's CLIP score to the target
    falls below the photo's own decides whether its notes carry the verdict."""
    from recontext.editing import clip_similarity

    photo = Image.open(io.BytesIO(open(disc_and_band, "rb").read()))
    target = "a blue circle on a white background"
    e = studio.edit(photo, CAPTION, target, method="ddim", tight=True, steps=10)
    before = clip_similarity(studio.models, e.source, target)
    said = [n for n in e.notes if "moved away from the target" in n]
    assert bool(said) == (e.metrics["clip_target"] < before), (e.metrics, before, e.notes)
