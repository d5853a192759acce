"""`evaluate reconstruction` / `evaluate editing`: the real formats, the tiny datasets (held
out of training), resuming, and two processes giving the table one gives."""

import csv
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from recontext import evaluate
from recontext.tiny import world
from recontext.tiny.world import HELD_OUT_SEED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(limit=2, methods=["ddim"], tight="both", scales=[0.4], steps=2, progress=False)


def coco_fixture(folder):
    """COCO's captions format: several captions per image, JPEG files named by id."""
    os.makedirs(folder / "val2017")
    for i, name in ((139, "chelsea"), (285, "coffee")):
        Image.open(os.path.join(ROOT, "assets", "photos", f"{name}.png")).convert("RGB").save(
            folder / "val2017" / f"{i:012d}.jpg", quality=95)
    coco = {"info": {}, "licenses": [],
            "images": [{"id": 139, "file_name": "000000000139.jpg", "width": 600, "height": 400},
                       {"id": 285, "file_name": "000000000285.jpg", "width": 600, "height": 400}],
            "annotations": [{"id": 1, "image_id": 285, "caption": "A cup of coffee, on a saucer."},
                            {"id": 2, "image_id": 139, "caption": "A cat lying on a rug, looking up."},
                            {"id": 3, "image_id": 139, "caption": "An orange cat."}]}
    (folder / "captions_val2017.json").write_text(json.dumps(coco))
    return folder / "captions_val2017.json", folder / "val2017"


def magicbrush_fixture(folder):
    """MagicBrush's layout: images/<session>/<files>, a mask per turn, two turns."""
    os.makedirs(folder / "images" / "327726")
    states = [("red", "circle", "blue"), ("green", "circle", "blue"), ("green", "circle", "white")]
    names = ["327726-input.png", "327726-output1.png", "327726-output2.png"]
    for n, s in zip(names, states):
        world.draw(*s)[0].save(folder / "images" / "327726" / n)
    sessions = {"327726": [
        {"input": names[0], "mask": "327726-mask1.png", "output": names[1], "instruction": "make the circle green"},
        {"input": names[1], "mask": "327726-mask2.png", "output": names[2], "instruction": "make it white behind"}]}
    (folder / "edit_sessions.json").write_text(json.dumps(sessions))
    (folder / "global_descriptions.json").write_text(json.dumps(
        {"327726": {n: world.caption(*s) for n, s in zip(names, states)}}))
    return folder


def test_short_prompt_rule():
    assert evaluate.short_prompt("A man riding a wave on top of a surfboard.") == "A man riding"
    assert evaluate.short_prompt("A cup, on a saucer") == "A cup"
    assert evaluate.short_prompt("a red circle on a blue background") == "a red circle"
    assert evaluate.prompt_for("a cat", "none") == ""


def test_readers_take_the_real_formats(tmp_path):
    annotations, images = coco_fixture(tmp_path / "coco")
    items = evaluate.read_coco(annotations, images)
    assert [(os.path.basename(i["image"]), i["caption"]) for i in items] == [
        ("000000000139.jpg", "A cat lying on a rug, looking up."), ("000000000285.jpg", "A cup of coffee, on a saucer.")]
    folder = magicbrush_fixture(tmp_path / "mb")
    first, every = evaluate.read_magicbrush(folder), evaluate.read_magicbrush(folder, "all")
    assert len(first) == 1 and len(every) == 2
    assert every[1]["input"].endswith("327726-output1.png") and os.path.exists(every[1]["output"])
    assert every[1]["source"] == "a green circle on a blue background"
    assert every[1]["target"] == "a green circle on a white background"


def test_tiny_datasets_are_held_out(tmp_path):
    annotations, images = evaluate.write_tiny_coco(str(tmp_path / "coco"))
    items = evaluate.read_coco(annotations, images)
    assert len(items) == 10 and all(i["caption"] for i in items)
    scenes = [world.scene(HELD_OUT_SEED + 50_000 + i)[0] for i in range(6)]
    assert all(any(Image.open(i["image"]).tobytes() == s.tobytes() for i in items) for s in scenes)
    held = {os.path.basename(p) for p in world.photo_paths(held_out=True)}
    assert set(evaluate.PHOTO_CAPTIONS) == held and not held & set(world.TRAIN_PHOTOS)
    assert not held & {os.path.basename(p) for p in world.example_photos()}
    items = evaluate.read_magicbrush(evaluate.write_tiny_magicbrush(str(tmp_path / "mb")), "all")
    assert len(items) == 8 and all(os.path.exists(i["input"]) and os.path.exists(i["output"]) for i in items)


def test_bootstrap_interval():
    mean, lo, hi = evaluate.bootstrap([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and 1.0 <= lo < mean < hi <= 4.0


def counting(studio, monkeypatch, name):
    calls = []
    real = getattr(studio, name)
    monkeypatch.setattr(studio, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.fixture(scope="module")
def tiny_table(studio, tmp_path_factory):
    """The tiny reconstruction table, one process (2 held-out images, ddim, tight and plain)."""
    out = tmp_path_factory.mktemp("recon")
    return out, evaluate.evaluate_reconstruction(studio, "tiny", None, str(out), **TINY)


def test_tiny_reconstruction_table_tight_beside_plain(tiny_table, studio, monkeypatch):
    out, report = tiny_table
    assert report["done"] == 4 and report["failed"] == 0
    t = pd.read_csv(out / "table.csv")
    assert list(t["setting"]) == ["plain", "tight 0.4"] and list(t["n"]) == [2, 2]
    for m in ("psnr", "ssim", "l2", "inversion_psnr"):
        assert (t[f"{m}_lo"] <= t[m]).all() and (t[m] <= t[f"{m}_hi"]).all() and (t[f"{m}_lo"] < t[f"{m}_hi"]).all()
    assert "| ddim | tight 0.4 | full | 2 |" in (out / "table.md").read_text()
    rows = pd.read_parquet(out / "results.parquet")
    assert len(rows) == 4 and rows["psnr"].between(5, 60).all()
    assert (out / "plot.png").stat().st_size > 0

    calls = counting(studio, monkeypatch, "reconstruct")  # a rerun recomputes nothing
    again = evaluate.evaluate_reconstruction(studio, "tiny", None, str(out), **TINY)
    assert (again["done"], again["skipped"], calls) == (0, 4, [])
    assert pd.read_csv(out / "table.csv").equals(t)


def test_reconstruction_on_coco_format_with_short_prompts(studio, tmp_path):
    annotations, images = coco_fixture(tmp_path / "coco")
    report = evaluate.evaluate_reconstruction(studio, str(annotations), str(images), str(tmp_path / "out"),
                                              limit=1, methods=["ddim"], tight="off", prompts=["short", "none"],
                                              steps=2, progress=False)
    assert report["done"] == 2
    rows = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert list(rows["prompt"].fillna("")) == ["A cat lying", ""] and set(rows["setting"]) == {"plain"}


def test_editing_on_magicbrush_format_then_resume(studio, tmp_path, monkeypatch):
    folder = magicbrush_fixture(tmp_path / "mb")
    kw = dict(edit_methods=["regenerate"], tight="both", scales=[0.4], steps=2, progress=False)
    report = evaluate.evaluate_editing(studio, str(folder), str(tmp_path / "out"), **kw)
    assert report["done"] == 2 and report["failed"] == 0
    t = pd.read_csv(tmp_path / "out" / "table.csv")
    assert list(t["setting"]) == ["plain", "tight 0.4"]
    for m in ("clip_t", "clip_i", "preservation_ssim"):
        assert t[m].between(-1, 1).all()
    assert t["l1"].between(0, 1).all() and (tmp_path / "out" / "plot.png").exists()
    calls = counting(studio, monkeypatch, "edit")
    again = evaluate.evaluate_editing(studio, str(folder), str(tmp_path / "out"), **kw)
    assert (again["done"], again["skipped"], calls) == (0, 2, [])


def test_tiny_editing_command(tmp_path):
    """The command itself, every turn of the held-out sessions (limit 2: one session)."""
    p = subprocess.run([sys.executable, "-m", "recontext", "evaluate", "editing", "--magicbrush", "tiny",
                        "--turns", "all", "--limit", "2", "--edit-methods", "prompt-to-prompt", "--tight", "on",
                        "--steps", "2", "--out", str(tmp_path), "--preset", "tiny"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "2 done, 0 already done, 0 failed" in p.stdout
    with open(tmp_path / "rows.csv") as f:
        assert [r["image"] for r in csv.DictReader(f)] == ["900000/1", "900000/2"]


@pytest.mark.slow  # two processes: 16 s on 2 CPU cores beyond the shared table
def test_two_processes_give_the_table_of_one(tiny_table, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on this CPU-only machine: accelerate
    starts two processes through torchrun and they split the rows over gloo. (`--cpu` alone
    starts one process: accelerate's multi-CPU launch needs an MPI hostfile.)"""
    out, _ = tiny_table
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    p = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "-m", "recontext",
                        "evaluate", "reconstruction", "--coco", "tiny", "--limit", "2", "--methods", "ddim",
                        "--steps", "2", "--out", str(tmp_path), "--preset", "tiny"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("2 done, 0 already done") == 2  # each process did its half
    # torchrun gives each process one thread, so float sums run in another order than in this
    # process, and the table keeps 4 significant digits: the same table to that precision (seen:
    # PSNR 21.749998 against 21.750291 dB, an interval's L2 0.003140 against 0.003139)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "table.csv"), pd.read_csv(out / "table.csv"),
                                  check_exact=False, rtol=1e-3)


def test_a_crash_loses_only_the_row_in_flight(tmp_path):
    """The shared row runner: rows finished before a crash are kept; the rerun does the rest."""
    from recontext.batch import Results, run_rows

    jobs = [{"row": n, "image": f"{n}.png"} for n in range(1, 6)]
    results = Results(str(tmp_path), ["row", "key", "status", "image"], "rows.csv")
    seen = []

    def work(job, crash_at=None):
        if job["row"] == crash_at:
            raise KeyboardInterrupt  # not a bad row: the process dies
        seen.append(job["row"])
        return dict(job)

    with pytest.raises(KeyboardInterrupt):
        run_rows(jobs, lambda j: j["image"], lambda j: work(j, crash_at=3), results, progress=False)
    assert sorted(results.done_keys()) == ["1.png", "2.png"]
    report = run_rows(jobs, lambda j: j["image"], work, results, progress=False)
    assert (report["done"], report["skipped"], seen) == (3, 2, [1, 2, 3, 4, 5])
