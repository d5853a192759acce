"""Runs saved by the tabs become blind review items; ratings land in the CSV."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from recontext.data import open_data
from recontext.review import blind_order, next_item, rate
from recontext.runs import Output, RunStore
from review_helpers import view

METHODS = ["ddim", "ddim+tight", "renoise", "renoise+tight", "edit-friendly", "edit-friendly+tight"]


def _image(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8))


def _item(runs, n=6, task="inversion"):
    return runs.save(task, "tiny", [Output(m, _image(i), {"psnr": float("inf")}, 0.1)
                                    for i, m in enumerate(METHODS[:n])],
                     source=_image(99), prompts={"caption": "a cat"}, seed=0)


def test_run_folder_holds_json_and_pngs(tmp_path):
    runs = RunStore(tmp_path / "runs")
    run_id = _item(runs)
    folder = tmp_path / "runs" / run_id
    record = json.loads((folder / "run.json").read_text())
    assert record["task"] == "inversion" and record["preset"] == "tiny" and record["seed"] == 0
    assert [o["method"] for o in record["outputs"]] == METHODS
    assert record["outputs"][0]["metrics"]["psnr"] == "inf"  # JSON has no infinity
    for o in record["outputs"]:
        assert Image.open(folder / o["image"]).format == "PNG"
    assert np.array_equal(np.asarray(Image.open(folder / "output-2.png")), np.asarray(_image(2)))
    assert [r["run_id"] for r in runs.items()] == [run_id]
    one = runs.save("edit", "tiny", [Output("ddim+tight", _image(1))])
    assert one not in [r["run_id"] for r in runs.items()]  # one output: not a review item
    assert runs.known(run_id, "renoise") and not runs.known(run_id, "sdedit")
    assert not runs.known(one, "ddim+tight") and not runs.known("../x", "ddim")


def test_two_raters_see_different_orders_and_no_method_names(tmp_path):
    data = open_data(tmp_path)
    run_id = _item(data.runs)
    ana = next_item(data.runs, data.ratings, "ana", data.secret)
    bo = next_item(data.runs, data.ratings, "bo", data.secret)
    assert ana.item_id == bo.item_id == run_id
    assert ana.outputs != bo.outputs and sorted(ana.outputs) == sorted(bo.outputs)
    assert next_item(data.runs, data.ratings, "ana", data.secret).outputs == ana.outputs  # stable per rater
    shown = json.dumps(ana.__dict__) + json.dumps(bo.__dict__)
    for m in ("ddim", "renoise", "edit-friendly", "tight"):
        assert m not in shown


def test_rate_maps_labels_back_to_methods(tmp_path):
    data = open_data(tmp_path)
    run_id = _item(data.runs, n=3)
    item = next_item(data.runs, data.ratings, "ana", data.secret)
    order = blind_order(data.secret, "ana", run_id, 3)
    rows = rate(data.runs, data.ratings, "ana", run_id, [(5, 4), (3, 3), (1, 2)], data.secret,
                view(data, "ana", run_id), comment="ok")
    assert [r["method"] for r in rows] == [METHODS[i] for i in order]
    assert [r["label"] for r in rows] == ["A", "B", "C"]
    df = data.ratings.read()
    assert len(df) == 3 and df.loc[df["method"] == METHODS[order[0]], "fidelity"].item() == 5
    assert item.remaining == 1 and next_item(data.runs, data.ratings, "ana", data.secret) is None


def test_fewest_ratings_first_and_bad_ratings_write_nothing(tmp_path):
    data = open_data(tmp_path)
    first, second = _item(data.runs, n=2), _item(data.runs, n=2)
    rate(data.runs, data.ratings, "ana", first, [(3, 3), (3, 3)], data.secret, view(data, "ana", first))
    assert next_item(data.runs, data.ratings, "bo", data.secret).item_id == second  # first has 1 rating
    for scores, field in (([(3, 3), (6, 3)], "fidelity"), ([(3, None), (3, 3)], "realism"),
                          ([(3, 3)], "scores")):
        with pytest.raises(ValueError, match=field):
            rate(data.runs, data.ratings, "bo", second, scores, data.secret, view(data, "bo", second))
    with pytest.raises(ValueError, match="rater"):
        rate(data.runs, data.ratings, " ", second, [(3, 3), (3, 3)], data.secret, view(data, " ", second))
    with pytest.raises(ValueError, match="item_id"):
        rate(data.runs, data.ratings, "bo", "20260101-000000-nothere", [(3, 3), (3, 3)], data.secret,
             view(data, "bo", "20260101-000000-nothere"))
    assert len(data.ratings.read()) == 2


def test_ratings_push_under_the_hub_schedulers_lock(tmp_path, monkeypatch):
    """With RECONTEXT_HF_DATASET set, writes hold the CommitScheduler's lock (a stand-in
    records its arguments: nothing can reach the Hub here); without it there is none."""
    import threading

    import huggingface_hub

    made = {}

    class Scheduler:
        def __init__(self, **kwargs):
            made.update(kwargs)
            self.lock = threading.Lock()

    monkeypatch.setattr(huggingface_hub, "CommitScheduler", Scheduler)
    assert open_data(tmp_path / "a").scheduler is None
    monkeypatch.setenv("RECONTEXT_HF_DATASET", "someone/ratings")
    data = open_data(tmp_path / "b")
    assert made["repo_id"] == "someone/ratings" and made["repo_type"] == "dataset"
    assert made["folder_path"] == str(tmp_path / "b")
    assert ".blind-secret" in made["ignore_patterns"]  # the review's key is never pushed
    run_id = _item(data.runs, n=2)
    secret = data.secret
    with data.scheduler.lock:  # a push in progress: the append waits for it
        t = threading.Thread(target=rate, args=(data.runs, data.ratings, "ana", run_id, [(3, 3)] * 2,
                                                secret, view(data, "ana", run_id)))
        t.start()
        t.join(0.5)
        assert t.is_alive() and not os.path.exists(data.ratings.path)
    t.join(5)
    assert len(data.ratings.read()) == 2


def test_review_needs_no_torch():
    code = ("import sys, recontext.review, recontext.runs, recontext.data; "
            "assert 'torch' not in sys.modules and 'gradio' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
