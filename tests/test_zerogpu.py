"""ZeroGPU durations: counted from a request's arguments, priced by the preset's calibration."""

import json
import subprocess
import sys

import pytest

from recontext import jobs, presets, zerogpu
from recontext.garment import METHODS, spec

FINETUNE_STEPS = spec("finetune-lora").option("finetune_steps").default

PHOTO = "assets/photos/chelsea.png"
GARMENT = "assets/garments/green-plain-t-shirt.png"


def counted(studio, fn):
    before = studio.models.unet_evaluations()
    fn()
    return studio.models.unet_evaluations() - before


def test_the_counted_work_is_the_work_each_request_does(studio):
    """The estimator's model evaluations equal what the model owner counts, for every
    method of every tab (a request that costs more than its estimate would be cut off)."""
    p, steps = studio.preset, 4
    studio.models.pipe
    for method in studio.methods:
        runs = zerogpu.reconstruct(p, [method], ["tight"], steps).evaluations
        assert counted(studio, lambda: studio.reconstruct(PHOTO, "a cat", method, True, 0.4, steps)) == runs, method
    for method in studio.methods:
        for edit_method in studio.edit_methods:
            studio.inversion_cache.clear()
            want = zerogpu.edit(p, method, edit_method, steps, guidance=7.5).evaluations
            got = counted(studio, lambda: studio.edit(PHOTO, "a cat", "a dog", method, True, 0.4, 7.5, steps,
                                                      edit_method=edit_method))
            assert got == want, (method, edit_method)
    studio.inversion_cache.clear()
    want = zerogpu.sweep(p, "ddim", "regenerate", steps, [0.0, 0.5], guidance=7.5).evaluations
    assert counted(studio, lambda: studio.edit_sweep(PHOTO, "a cat", "a dog", [0.0, 0.5], "ddim", 7.5, steps)) == want
    studio.inversion_cache.clear()
    want = zerogpu.compare(p, "ddim", steps, guidance=7.5).evaluations
    assert counted(studio, lambda: studio.edit_compare(PHOTO, "a cat", "a dog", "ddim", 0.4, 7.5, steps)) == want
    for method in METHODS:
        work = zerogpu.dress(p, [method], steps, {method: {"finetune_steps": 3}})
        got = counted(studio, lambda: studio.dress(GARMENT, "a person", method, steps=steps, finetune_steps=3,
                                                   seed=123))
        assert got == work.evaluations + work.finetune_steps, method  # a fine-tune step: one evaluation


def test_every_handler_asks_for_its_estimate_with_the_margin():
    for name in presets.NAMES:
        for row in zerogpu.page_requests(presets.get(name)):
            assert row["fits"], (name, row)
            assert row["requested_s"] >= 1.2 * row["estimated_s"], (name, row)
            assert row["requested_s"] <= max(zerogpu.FLOOR_S, 2 * row["estimated_s"] + 1), (name, row)


def test_the_h200_requests_hold_the_margin_over_their_measured_times():
    """bench/gpu.py's requests on the first CUDA run (H200, 25 steps; ../shared/gpu): the
    durations asked now, over the seconds measured then, lie within 1.2-2 — the garment
    request with every method above all, which the old formula cut off (0.84x). The same run
    seeded the calibration, so a fresh GPU run must confirm it (bench/gpu.py prints it)."""
    p = presets.get("sdxl")
    measured = {  # request: (work, seconds measured)
        "inversion": (zerogpu.reconstruct(p, ["ddim", "renoise", "edit-friendly"], ["plain", "tight"], 25), 41.83),
        "edit": (zerogpu.edit(p, "renoise", "regenerate", 25), 13.75),
        "sweep": (zerogpu.sweep(p, "ddim", "regenerate", 25, [0, 0.2, 0.4, 0.6, 0.8, 1.0]), 45.12),
        "garment": (zerogpu.dress(p, ["hyperlora", "ip-adapter", "finetune-lora"], 25,
                                          {"finetune-lora": {"finetune_steps": FINETUNE_STEPS}}), 125.38),
    }
    for name, (work, seconds) in measured.items():
        ratio = zerogpu.requested(zerogpu.estimate(p, work)) / seconds
        assert 1.2 <= ratio <= 2.0, (name, ratio)


def test_a_request_too_long_for_zerogpu_is_refused_with_what_to_lower(monkeypatch):
    import types

    import gradio as gr

    from recontext.ui.common import on_gpu

    seen = {}

    def GPU(duration):
        def wrap(fn):
            seen["duration"] = duration
            return fn
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    p = presets.get("sdxl")
    handler = on_gpu(lambda job, *args: "done", p)

    def job(ft):
        return jobs.Dress(garment=jobs.Input(path=GARMENT), prompt="a person", methods=["finetune-lora"], steps=50,
                          options={"finetune-lora": {"finetune_steps": ft}})

    assert handler(job(200)) == "done"
    work = zerogpu.dress(p, ["finetune-lora"], 50, {"finetune-lora": {"finetune_steps": 200}})
    assert 1.2 * zerogpu.estimate(p, work) <= seen["duration"](job(200)) <= zerogpu.LIMIT_S
    with pytest.raises(gr.Error, match="fine-tune steps"):
        handler(job(1000))


def test_the_command_prints_every_handler():
    out = subprocess.run([sys.executable, "-m", "recontext", "zerogpu", "--preset", "sdxl", "--json"],
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    names = {r["handler"] for r in rows}
    assert {"reconstruct", "edit", "edit_sweep", "edit_compare", "dress", "dress (every method)"} <= names
    assert all(r["requested_s"] >= 1.2 * r["estimated_s"] for r in rows)
