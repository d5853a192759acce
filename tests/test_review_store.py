"""The ratings store: concurrent appends, validation, formula safety, torn lines."""

import csv
import multiprocessing as mp
import subprocess
import sys
import warnings

import pytest

from recontext.review import HEADER, RatingStore, summarize, win_rates

GOOD = dict(rater="ana", item_id="run1", task="inversion", method="ddim", fidelity=4, realism=5,
            label="B", position=1)


def _writer(path, worker, n):
    store = RatingStore(path)
    for i in range(n):
        store.add(rater=f"rater{worker}", item_id=f"item{i}", task="inversion", method="ddim",
                  fidelity=1 + i % 5, realism=1 + (i + worker) % 5, comment=f"w{worker} #{i}, ok")


def test_eight_processes_append_2000_rows_intact(tmp_path):
    path = str(tmp_path / "ratings.csv")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 250)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == HEADER
    assert len(rows) == 2001 and all(len(r) == len(HEADER) for r in rows)
    df = RatingStore(path).read()
    assert len(df) == 2000 and df["rating_id"].is_unique
    assert sorted(df.groupby("rater").size().tolist()) == [250] * 8


@pytest.mark.parametrize("field, value", [
    ("fidelity", 0), ("fidelity", 6), ("fidelity", 3.5), ("fidelity", "x"), ("realism", True),
    ("realism", None), ("rater", ""), ("rater", "x" * 65), ("rater", "a\nb"),
])
def test_bad_values_are_rejected_naming_the_field(tmp_path, field, value):
    store = RatingStore(tmp_path / "r.csv")
    with pytest.raises(ValueError, match=field):
        store.add(**{**GOOD, field: value})
    assert not (tmp_path / "r.csv").exists()


def test_unknown_item_is_rejected_when_the_store_knows_the_runs(tmp_path):
    store = RatingStore(tmp_path / "r.csv", known=lambda item, method: item == "run1")
    with pytest.raises(ValueError, match="item_id"):
        store.add(**{**GOOD, "item_id": "nope"})
    store.add(**GOOD)
    assert len(store.read()) == 1


def test_formula_comment_reads_back_as_inert_text(tmp_path):
    store = RatingStore(tmp_path / "r.csv")
    store.add(**GOOD, comment='=HYPERLINK("http://x")')
    store.add(**{**GOOD, "rater": "@bo"}, comment="+1 -2")
    with open(tmp_path / "r.csv", newline="") as f:
        stored = list(csv.DictReader(f))
    assert stored[0]["comment"] == "'=HYPERLINK(\"http://x\")"
    assert stored[1]["rater"] == "'@bo" and stored[1]["comment"] == "'+1 -2"
    exported = tmp_path / "export.csv"
    store.export(str(exported))
    with open(exported, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for cell in (row["rater"], row["item_id"], row["task"], row["method"], row["comment"]):
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    df = store.read()  # what the program compares: what was typed
    assert df.loc[0, "comment"] == '=HYPERLINK("http://x")' and df.loc[1, "rater"] == "@bo"


def test_torn_last_line_is_skipped_and_next_append_lands(tmp_path):
    path = tmp_path / "r.csv"
    store = RatingStore(path)
    store.add(**GOOD)
    with open(path, "a") as f:
        f.write("deadbeef,2026-01-01T00:00:00,ana,run1,inv")  # a crash mid-write
    with pytest.warns(UserWarning, match="unfinished last line"):
        assert len(store.read()) == 1
    store.add(**{**GOOD, "rater": "bo"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = store.read()
    assert df["rater"].tolist() == ["ana", "bo"]


def test_rerating_counts_once_the_latest(tmp_path):
    store = RatingStore(tmp_path / "r.csv")
    store.add(**GOOD)
    store.add(**{**GOOD, "fidelity": 1})
    df = store.read()
    assert len(df) == 1 and df.loc[0, "fidelity"] == 1
    assert len(store.read(latest=False)) == 2


def test_summary_intervals_and_win_rates(tmp_path):
    store = RatingStore(tmp_path / "r.csv")
    for rater in ("ana", "bo", "cy"):
        for i in range(6):
            store.add(rater=rater, item_id=f"i{i}", task="inversion", method="a", fidelity=5, realism=4)
            store.add(rater=rater, item_id=f"i{i}", task="inversion", method="b",
                      fidelity=1 + i % 3, realism=4)
    df = store.read()
    table = summarize(df).set_index("method")
    assert table.loc["a", "fidelity_mean"] == 5 and table.loc["a", "ratings"] == 18
    b = table.loc["b"]
    assert b["fidelity_ci_low"] < b["fidelity_mean"] < b["fidelity_ci_high"]
    wins = win_rates(df).set_index("criterion")
    assert wins.loc["fidelity", "win_rate_a"] == 1.0 and wins.loc["realism", "win_rate_a"] == 0.5


def test_import_review_does_not_import_torch():
    code = "import sys, recontext.review; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_cli_summarize(tmp_path):
    import json

    store = RatingStore(tmp_path / "r.csv")
    store.add(**GOOD, revealed=True)  # final: the CLI counts what the page counts
    store.add(**{**GOOD, "rater": "bo", "fidelity": 2}, revealed=True)
    store.add(**{**GOOD, "rater": "cy", "fidelity": 5})  # may still change: not counted
    out = subprocess.run([sys.executable, "-m", "recontext", "ratings", "summarize",
                          str(tmp_path / "r.csv"), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ratings"] == 2 and report["methods"][0]["fidelity_mean"] == 3.0 and report["waiting"] == 1


def test_cli_summarize_fails_on_a_missing_file_and_writes_nan_as_null(tmp_path, capsys):
    import json

    from recontext import cli

    assert cli.main(["ratings", "summarize", str(tmp_path / "none.csv")]) == 2
    assert "no ratings file" in capsys.readouterr().err
    RatingStore(tmp_path / "r.csv").add(**GOOD, revealed=True)  # one rating: no interval can be computed
    assert cli.main(["ratings", "summarize", str(tmp_path / "r.csv"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "nan" not in out
    assert json.loads(out)["methods"][0]["fidelity_ci_low"] is None
