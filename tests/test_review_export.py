"""Issue 28, section 4: `ratings export` writes one fixed schema as CSV, JSON Lines or
Parquet that `datasets.load_dataset` reads back, and `--push` sends it with its images
through the `datasets` library (to a local stand-in for the Hub: nothing leaves here)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from recontext.cli import main
from recontext.data import open_data
from recontext.review import next_pair, rate, vote
from recontext.review.export import COLUMNS, rater_hash
from recontext.runs import Output
from review_helpers import view


def _folder(tmp_path):
    data = open_data(tmp_path / "data")
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(4)]
    outputs = [Output(m, im) for m, im in zip(["ddim", "ddim+tight", "renoise"], ims)]
    run_id = data.runs.save("inversion", "tiny", outputs,
                            source=ims[3], prompts={"caption": "a cat"}, params={"steps": 4}, seed=7)
    rate(data.runs, data.ratings, "ana", run_id, {"A": [5, 4], "B": [3, 2], "C": [1, 1]}, data.secret,
         view(data, "ana", run_id), comment="=cmd|x", reveal=True)
    rate(data.runs, data.ratings, "bo", run_id, {"A": [2, 2], "B": [2, 2], "C": [2, 2]}, data.secret,
         view(data, "bo", run_id), reveal=False)  # may still change: never exported
    pair = next_pair(data.runs, data.votes, "cy", data.secret)
    vote(data.runs, data.votes, "cy", pair.item_id, pair.view_token, "A", data.secret)
    return data, run_id


@pytest.mark.parametrize("fmt, loader", [("csv", "csv"), ("jsonl", "json"), ("parquet", "parquet")])
def test_export_round_trips_through_datasets(tmp_path, capsys, fmt, loader):
    import datasets

    data, run_id = _folder(tmp_path)
    out = tmp_path / f"ratings.{fmt}"
    assert main(["ratings", "export", data.root, "--format", fmt, "--out", str(out)]) == 0
    assert "4 rows (3 ratings, 1 votes)" in capsys.readouterr().out
    ds = datasets.load_dataset(loader, data_files=str(out), split="train")
    assert ds.column_names == COLUMNS and len(ds) == 4
    rows = ds.to_list()
    ratings = [r for r in rows if r["kind"] == "rating"]
    assert {r["rater"] for r in ratings} == {"ana"}  # bo's rating may still change
    methods = [o["method"] for o in data.runs.get(run_id)["outputs"]]
    expected = sorted((m, f, r) for m, (f, r) in zip(methods, _ana_scores(data, run_id)))
    assert sorted((r["method"], r["fidelity"], r["realism"]) for r in ratings) == expected
    (v,) = [r for r in rows if r["kind"] == "vote"]
    assert v["choice"] == "A" and v["winner"] == v["method"] and v["method_b"] and v["fidelity"] is None
    assert json.loads(ratings[0]["params"]) == {"steps": 4} and ratings[0]["seed"] == 7
    assert all(r["seconds"] >= 0 and r["fast"] in (True, False) and not r["gold_item"] for r in rows)
    assert [r["method"] for r in ratings] == sorted(r["method"] for r in ratings)  # sorted: no label order
    comment = ratings[[r["method"] for r in ratings].index(_method_of(data, run_id, "A"))]["comment"]
    assert comment == ("'=cmd|x" if fmt == "csv" else "=cmd|x")  # spreadsheets get no formula


def _method_of(data, run_id, label):
    df = data.ratings.read()
    return df[(df["rater"] == "ana") & (df["label"] == label)]["method"].item()


def _ana_scores(data, run_id):
    df = data.ratings.read()
    methods = [o["method"] for o in data.runs.get(run_id)["outputs"]]
    mine = df[df["rater"] == "ana"].set_index("method")
    return [(int(mine.loc[m, "fidelity"]), int(mine.loc[m, "realism"])) for m in methods]


def test_hashed_raters_are_stable_pseudonyms(tmp_path, capsys):
    import datasets

    data, _ = _folder(tmp_path)
    out = tmp_path / "r.jsonl"
    assert main(["ratings", "export", data.root, "--format", "jsonl", "--out", str(out), "--hash-raters"]) == 0
    raters = set(datasets.load_dataset("json", data_files=str(out), split="train")["rater"])
    assert raters == {rater_hash(data.secret, "ana"), rater_hash(data.secret, "cy")}
    assert "ana" not in out.read_text()


def test_push_sends_ratings_with_images_through_datasets(tmp_path, monkeypatch, capsys):
    """`--push REPO` hands a `datasets.Dataset` with image columns to `push_to_hub`; the
    stand-in writes what the Hub would store (Parquet with the images' bytes) to a local
    folder, and `load_dataset` reads it back with the pictures."""
    import datasets

    hub = tmp_path / "hub"
    pushed = {}

    def push_to_hub(self, repo_id, private=None, **kwargs):
        pushed.update(repo_id=repo_id, private=private)
        folder = hub / repo_id / "data"
        folder.mkdir(parents=True, exist_ok=True)
        self.to_parquet(str(folder / "train-00000-of-00001.parquet"))

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", push_to_hub)
    data, run_id = _folder(tmp_path)
    assert main(["ratings", "export", data.root, "--push", "team/ratings"]) == 0
    assert pushed == {"repo_id": "team/ratings", "private": True}
    ds = datasets.load_dataset("parquet", data_dir=str(hub / "team" / "ratings" / "data"), split="train")
    assert len(ds) == 4 and set(COLUMNS) <= set(ds.column_names)
    assert isinstance(ds.features["image"], datasets.Image)
    row = ds[0]
    record = data.runs.get(run_id)
    stored = {o["method"]: np.asarray(Image.open(os.path.join(record["dir"], o["image"]))) for o in record["outputs"]}
    assert np.array_equal(np.asarray(row["image"]), stored[row["method"]])
    assert np.array_equal(np.asarray(row["source"]), np.asarray(Image.open(os.path.join(record["dir"], "source.png"))))


def test_export_needs_a_destination_and_a_folder(tmp_path, capsys):
    assert main(["ratings", "export", str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no data folder" in capsys.readouterr().err
    data, _ = _folder(tmp_path)
    assert main(["ratings", "export", data.root]) == 2
    assert "--out" in capsys.readouterr().err
