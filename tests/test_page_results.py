"""The page's handlers return plain results (a JSON-able dict first, then images in the
order the dict names), own photos come back at their own size, long runs can be cancelled,
and the page's small texts say what they mean (issue 27)."""

import json
import os

import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAT = os.path.join(ROOT, "assets", "photos", "chelsea.png")
GARMENTS = os.path.join(ROOT, "assets", "garments")


def NOOP(*args, **kwargs):
    """A progress callback that shows nothing."""


def plain(out):
    """(dict, {name: image}) of a handler's answer, checking its shape: a dict that JSON
    takes as it is (no NaN, no Infinity, no component updates), then as many images (or
    image pairs) as the dict's "images" names, None for one not made."""
    result, images = out[0], list(out[1:])
    assert isinstance(result, dict), type(result)
    json.dumps(result, allow_nan=False)
    assert len(images) == len(result["images"]), (len(images), result["images"])
    for im in images:
        pair = im if isinstance(im, tuple) else (im,)
        assert im is None or all(isinstance(p, Image.Image) for p in pair), im
    return result, dict(zip(result["images"], images))


@pytest.fixture(scope="module")
def own_photo(tmp_path_factory):
    """A visitor's own 600×400 JPEG."""
    path = tmp_path_factory.mktemp("own") / "own.jpg"
    Image.open(os.path.join(ROOT, "assets", "photos", "coffee.png")).convert("RGB").resize((600, 400)).save(
        path, quality=90)
    return str(path)


def slot_name(run) -> str:
    return run["method"] + (" + tight" if run["tight"] else "")


def test_reconstruct_gives_a_dict_then_pairs_in_the_stated_order(studio, own_photo):
    from recontext.ui import inversion_tab

    out = inversion_tab.reconstruct(studio, own_photo, "", ["ddim", "edit-friendly"], ["plain", "tight"],
                                    0.4, 2, 0, progress=NOOP)
    result, pairs = plain(out)
    assert result["images"] == [inversion_tab.label(s) for s in inversion_tab.slots(studio.methods)]
    made = {slot_name(r) for r in result["runs"]}
    assert made == {name for name, pair in pairs.items() if pair is not None}
    # the visitor's photo and its reconstructions at the photo's own size, the working size stated
    assert result["shown_size"] == [600, 400] and max(result["working_size"]) == studio.preset.resolution
    assert all(p.size == (600, 400) for pair in pairs.values() if pair for p in pair)
    notes = " ".join(result["notes"])
    assert "works at {}×{}".format(*result["working_size"]) in notes and "upscaled" in notes
    # ∞ is explained exactly when a run shows it
    infinite = any(r["inversion_psnr"] == "inf" for r in result["runs"])
    assert (inversion_tab.INFINITE in result["notes"]) == infinite


def test_the_page_view_of_a_reconstruction(studio):
    from recontext.ui import inversion_tab

    result, _ = plain(inversion_tab.reconstruct(studio, CAT, "a cat", ["ddim"], ["plain"], 0.4, 2, 0,
                                                progress=NOOP))
    *sliders, table, notes = inversion_tab.page(studio, result)
    slots = inversion_tab.slots(studio.methods)
    assert len(sliders) == len(slots)
    assert [s["visible"] for s in sliders] == [slot == ("ddim", "plain") for slot in slots]
    assert "left: photo" in sliders[slots.index(("ddim", "plain"))]["label"]
    assert len(table) == 1
    # an LPIPS column with nothing but n/a is left out, and the notes say why
    if all(r["lpips"] is None for r in result["runs"]):
        assert "LPIPS ↓" not in table.columns and "leaves its column out" in notes
    else:
        assert "LPIPS ↓" in table.columns
    # ∞ in the JSON is read back as ∞ on the page
    result["runs"][0]["inversion_psnr"] = "inf"
    assert "∞" in inversion_tab.page(studio, result)[-2]["inversion PSNR ↑"].iloc[0]


def test_the_inversion_text_describes_the_running_preset():
    from recontext import presets
    from recontext.ui.inversion_tab import about

    tiny, flux = about(presets.get("tiny")), about(presets.get("tiny-flux"))
    assert "FLUX" not in tiny and "flow" not in tiny.lower() and "DDIM" in tiny and "`tiny`" in tiny
    assert "RF-Inversion" in flux and "DDIM" not in flux


def test_dress_gives_a_dict_then_one_image_per_method_and_a_steady_progress_total(studio):
    from recontext.garment import METHODS
    from recontext.ui import garment_tab

    garment = os.path.join(GARMENTS, sorted(f for f in os.listdir(GARMENTS) if f.endswith(".png"))[0])
    totals = []

    def progress(value, desc=None, unit=None):
        if isinstance(value, tuple):
            totals.append(value)

    chosen = ["prompt-only", "finetune-lora", "hyperlora"]
    out = garment_tab.dress(studio, garment, "a person wearing a t-shirt at the beach", chosen,
                            {"finetune-lora": {"finetune_steps": 10}, "hyperlora": {"scale": 1.0}}, "default", 2, 0,
                            progress=progress)
    result, images = plain(out)
    assert result["images"] == list(METHODS)
    ran = {r["method"] for r in result["runs"]}
    # which methods made an image follows from the stated order and the runs, not assumed
    assert ran == {m for m, im in images.items() if im is not None} and ran <= set(chosen)
    for r in result["runs"]:
        assert (r["cached"] is None) == (r["method"] == "prompt-only")
    # the total is known from the start (the fine-tune's steps included) and reached at the end
    assert totals and len({total for _, total in totals}) == 1, sorted({t for _, t in totals})
    assert [done for done, _ in totals] == sorted(done for done, _ in totals)
    if len(ran) == len(chosen):
        assert totals[-1][0] == totals[-1][1]
    *shown, table, notes = garment_tab.page(result)
    assert [u["visible"] for u in shown] == [m in ran for m in METHODS]
    cached = dict(zip(table["method"], table["cached"]))
    if "prompt-only" in ran:
        assert cached["prompt-only"] == "n/a" and "n/a for prompt-only" in notes
    assert all(v in ("yes", "no") for m, v in cached.items() if m != "prompt-only")


def test_weighted_progress_counts_each_methods_share():
    from recontext.ui.garment_tab import weighted, weights

    seen = []
    units = weights(["hyperlora", "finetune-lora", "prompt-only"], 20, {"finetune-lora": {"finetune_steps": 200}})
    assert units == [20, 220, 20]
    assert weights(["finetune-lora"], 20, {}) == [20 + 200]  # the spec's default fine-tune steps
    for i, total in enumerate((20, 20, 20)):  # a cached fine-tune only generates
        report = weighted(lambda d, t, desc: seen.append((d, t)), sum(units[:i]), units[i], sum(units))
        for done in range(1, total + 1):
            report(done, total, "x")
    assert {t for _, t in seen} == {260} and seen[-1] == (260, 260)


def test_edit_and_sweep_give_a_dict_then_their_images(studio, own_photo):
    from recontext.ui import edit_tab

    result, pairs = plain(edit_tab.edit(studio, own_photo, "a cup", "a red cup", "ddim", True, 0.4, 7.5, 2, 0,
                                        progress=NOOP))
    assert result["kind"] == "edit" and len(result["runs"]) == 1
    assert all(p.size == (600, 400) for pair in pairs.values() for p in pair)
    table, notes, plot = edit_tab.page(result)
    assert plot is None and len(table) == 1
    out = edit_tab.edit_sweep(studio, CAT, "a cat", "a tiger", "ddim", "0, 1", 7.5, 2, 0, progress=NOOP)
    # a dict, then one gallery: (image, caption) per scale, captions as the dict names them
    assert isinstance(out[0], dict) and len(out) == 2 and [c for _, c in out[1]] == out[0]["images"]
    assert [r["image_scale"] for r in out[0]["runs"]] == [0, 1]
    json.dumps(out[0], allow_nan=False)
    table, notes, plot = edit_tab.page(out[0])
    assert plot is not None and len(table) == 2


def test_next_item_is_plain(tmp_path):
    from recontext.data import open_data
    from recontext.ui import review_tab

    data = open_data(tmp_path)
    out = review_tab.item(data, "ana")
    assert isinstance(out[0], dict) and out[0]["labels"] == [] and "rated every item" in out[0]["message"]
    assert len(out) == 2 + review_tab.SLOTS and all(v is None for v in out[1:])
    json.dumps(out[0], allow_nan=False)
    page = review_tab.item_page(out[0])
    assert not any(u["visible"] for u in page[4:4 + review_tab.SLOTS])


@pytest.fixture(scope="module")
def config(studio, tmp_path_factory):
    from recontext.data import open_data
    from recontext.ui import build_demo

    demo = build_demo(studio, open_data(tmp_path_factory.mktemp("data")))
    return demo, demo.get_config_file()


def test_every_endpoint_gives_a_json_dict_first(config):
    demo, cfg = config
    kinds = {c["id"]: c["type"] for c in cfg["components"]}
    named = [d for d in cfg["dependencies"] if d.get("api_visibility") == "public"]
    assert {d["api_name"] for d in named} >= {"reconstruct", "dress", "edit", "edit_sweep", "edit_compare",
                                              "next_item", "summary"}
    for d in named:
        if d["outputs"] and kinds[d["outputs"][0]] != "api":  # gr.api ones: tests/test_app_api.py
            assert kinds[d["outputs"][0]] == "json", (d["api_name"], kinds[d["outputs"][0]])
            assert all(kinds[o] in ("json", "image", "imageslider", "gallery", "file") for o in d["outputs"]), \
                (d["api_name"], [kinds[o] for o in d["outputs"]])


def test_long_runs_have_a_cancel_button_and_a_success_clears_old_errors(config):
    demo, cfg = config
    deps = cfg["dependencies"]
    labels = {c["id"]: c.get("props", {}).get("value") for c in cfg["components"] if c["type"] == "button"}
    for name in ("reconstruct", "dress", "edit", "edit_sweep", "edit_compare"):
        i = next(k for k, d in enumerate(deps) if d.get("api_name") == name)
        cancels = [d for d in deps if i in (d.get("cancels") or [])]
        assert cancels, name
        assert all(labels.get(t[0]) == "Cancel" for d in cancels for t in d["targets"]), name
        cleared = [d for d in deps if d.get("trigger_after") == i and d.get("trigger_only_on_success")
                   and "toast-close" in (d.get("js") or "")]
        assert cleared, name


def test_scale_sliders_say_which_end_is_the_photo(config):
    demo, cfg = config
    sliders = {}
    for c in cfg["components"]:
        if c["type"] == "slider":
            sliders.setdefault(c["props"].get("label"), []).append(c["props"].get("info") or "")
    for label in ("Tight: image scale", "Image scale"):
        assert all("0 = " in i and "1 = the photo" in i for i in sliders[label]), (label, sliders[label])
    for label in ("LoRA scale", "IP-Adapter scale"):  # each garment method's scale, from its spec
        assert sliders[label] and all("0 = the prompt alone" in i and "garment" in i for i in sliders[label]), label


def test_shown_size_is_the_uploads_capped_and_never_below_the_working_size():
    from recontext.ui.common import SHOWN_MAX, shown_size, size_note

    assert shown_size((128, 88), (600, 400)) == (600, 400)
    assert shown_size((128, 88), (6000, 4000)) == (SHOWN_MAX, round(4000 * SHOWN_MAX / 6000))
    assert shown_size((128, 88), (60, 40)) == (128, 88) and shown_size((128, 88), None) == (128, 88)
    assert "upscaled to 600×400" in size_note((128, 88), (600, 400))
    assert "upscaled" not in size_note((128, 88), (128, 88)) and "128×88" in size_note((128, 88), (128, 88))


def test_the_inversion_notes_say_how_many_runs_the_request_made(studio):
    from recontext.ui import inversion_tab

    result, _ = plain(inversion_tab.reconstruct(studio, CAT, "a cat", ["ddim"], ["plain", "tight"], 0.4, 2, 0,
                                                progress=NOOP))
    assert any(n.startswith(f"{len(result['runs'])} runs") for n in result["notes"]), result["notes"]
