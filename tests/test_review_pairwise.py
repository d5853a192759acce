"""Issue 28, sections 2 and 3: pairwise votes ranked by Bradley–Terry with bootstrap
intervals, gold checks that flag a careless rater, per-rating seconds and coverage."""

import itertools
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recontext.data import open_data
from recontext.metrics import psnr
from recontext.review import bradley_terry, full_report, next_pair, rate, serve, vote
from recontext.review.gold import make_gold
from recontext.runs import Output
from review_helpers import view

METHODS = ["ddim", "ddim+tight", "renoise+tight", "edit-friendly"]
NOISE = {"ddim+tight": 6.0, "renoise+tight": 10.0, "ddim": 16.0, "edit-friendly": 26.0}


def _photo(rng, size=24):
    y, x = np.mgrid[:size, :size]
    base = np.stack([x * 9, y * 9, (x + y) * 4], axis=-1) + rng.integers(0, 60, 3)
    return np.clip(base, 0, 255).astype(np.float32)


def _inversion_items(data, n_items=10, seed=0):
    """Inversion items whose outputs are the photo plus noise: each method has a typical
    level, scaled at random per item and output, so which is closer varies item by item."""
    rng = np.random.default_rng(seed)
    ids = []
    for _ in range(n_items):
        photo = _photo(rng)
        outputs = []
        for m in METHODS:
            sigma = NOISE[m] * rng.lognormal(0, 0.45)
            im = np.clip(photo + rng.normal(0, sigma, photo.shape), 0, 255).astype(np.uint8)
            outputs.append(Output(m, Image.fromarray(im)))
        ids.append(data.runs.save("inversion", "tiny", outputs, source=Image.fromarray(photo.astype(np.uint8)),
                                  prompts={"caption": "a gradient"}))
    return ids


def _closer(pair):
    """The scripted rater: the output closer to the photo (higher PSNR) wins."""
    src = Image.open(pair.source).convert("RGB")
    a, b = (psnr(Image.open(p).convert("RGB"), src) for p in pair.outputs)
    return "A" if a > b else "B" if b > a else "tie"


def test_a_rater_preferring_the_closer_output_ranks_methods_by_psnr_win_rate(tmp_path):
    data = open_data(tmp_path)
    ids = _inversion_items(data)
    # per-item PSNR win rates, straight from the saved runs
    wins = {m: [] for m in METHODS}
    for run_id in ids:
        r = data.runs.get(run_id)
        src = Image.open(os.path.join(r["dir"], r["source"])).convert("RGB")
        score = {o["method"]: psnr(Image.open(os.path.join(r["dir"], o["image"])).convert("RGB"), src)
                 for o in r["outputs"]}
        for a, b in itertools.permutations(METHODS, 2):
            wins[a].append(score[a] > score[b])
    win_rate = {m: float(np.mean(w)) for m, w in wins.items()}
    expected = sorted(METHODS, key=lambda m: -win_rate[m])
    assert len(set(win_rate.values())) == len(METHODS), win_rate  # a strict order to recover
    shown_first = []
    for rater in ("ana", "bo"):
        while (pair := next_pair(data.runs, data.votes, rater, data.secret)) is not None:
            row = vote(data.runs, data.votes, rater, pair.item_id, pair.view_token, _closer(pair), data.secret)
            shown_first.append(row["output_a"] < row["output_b"])
    votes = data.votes.read()
    assert len(votes) == 2 * len(ids) * 6  # every pair of every item, once per rater
    assert 0.3 < np.mean(shown_first) < 0.7  # positions drawn at random, and logged
    ranking = bradley_terry(votes, n_boot=100)
    assert [r["method"] for r in ranking] == expected, (ranking, win_rate)
    for r in ranking:
        assert r["low"] <= r["strength"] <= r["high"]
    assert ranking[0]["low"] > ranking[-1]["high"]  # the best and the worst are told apart


def test_votes_need_the_view_they_were_shown_and_count_once(tmp_path):
    data = open_data(tmp_path)
    (run_id,) = _inversion_items(data, n_items=1)
    pair = next_pair(data.runs, data.votes, "ana", data.secret)
    for who, token, choice, message in (("bo", pair.view_token, "A", "shown to rater 'ana'"),
                                        ("ana", "", "A", "view_token: give"),
                                        ("ana", pair.view_token, "C", "choice must be one of"),
                                        ("ana", view(data, "ana", run_id), "A", "issued for a rating")):
        with pytest.raises(ValueError, match=message):
            vote(data.runs, data.votes, who, run_id, token, choice, data.secret)
    row = vote(data.runs, data.votes, "ANA", run_id, pair.view_token, "both_bad", data.secret)
    assert row["rater"] == "ana" and float(row["seconds"]) >= 0
    with pytest.raises(ValueError, match="already voted"):
        vote(data.runs, data.votes, "ana", run_id, pair.view_token, "A", data.secret)
    assert len(data.votes.read()) == 1
    methods = [o["method"] for o in data.runs.get(run_id)["outputs"]]
    assert [row["method_a"], row["method_b"]] == [methods[row["output_a"]], methods[row["output_b"]]]


def test_bradley_terry_ties_and_both_bad_count_half():
    votes = pd.DataFrame({"task": "t", "method_a": ["x", "x", "y", "x"], "method_b": ["y", "y", "x", "y"],
                          "choice": ["A", "tie", "both_bad", "B"]})
    ranking = bradley_terry(votes, n_boot=50)
    assert abs(ranking[0]["strength"] - ranking[1]["strength"]) < 1e-6  # 2 wins each


# 3: gold checks, seconds, coverage ---------------------------------------------------------
def _method_of(data, item_id, shown_path):
    """The method of the output a rater was shown at `shown_path` (a per-view copy): by pixels."""
    record = data.runs.get(item_id)
    pixels = np.asarray(Image.open(shown_path).convert("RGB"))
    for o in record["outputs"]:
        if np.array_equal(np.asarray(Image.open(os.path.join(record["dir"], o["image"])).convert("RGB")), pixels):
            return o["method"]
    raise AssertionError("shown output not found")


def test_a_rater_who_fails_gold_checks_is_flagged_and_left_out(tmp_path):
    """Issue 37 changed gold items (they were the source photo and a degraded copy of it,
    which a bot could spot): now a run's own outputs, one replaced by a degraded copy of
    another, the answers kept in gold.json; a rater is flagged only after
    GOLD_MIN_CHECKS checks. The same careful and careless raters as before, over 3 gold items."""
    from recontext.review import blind_order
    from recontext.review.gold import answers_for
    from recontext.review.names import rater_key
    from recontext.review.summary import GOLD_MIN_CHECKS

    data = open_data(tmp_path)
    ids = _inversion_items(data, n_items=3)
    golds = [make_gold(data.runs, run_id) for run_id in ids]
    answers = answers_for(data.runs)
    assert set(answers) == set(golds) and GOLD_MIN_CHECKS == 3
    for gold in golds:
        record = data.runs.get(gold)
        assert "gold" not in record and "gold_of" not in json.dumps(record)  # reads as any run
        src = np.asarray(Image.open(os.path.join(record["dir"], record["source"])))
        for o in record["outputs"]:  # never the source's pixels
            assert not np.array_equal(np.asarray(Image.open(os.path.join(record["dir"], o["image"]))), src)
    for rater, careful in (("ana", True), ("bo", False)):
        for run_id in [*ids, *golds]:
            item_view = view(data, rater, run_id)
            methods = [o["method"] for o in data.runs.get(run_id)["outputs"]]
            n = len(methods)
            scores = {chr(65 + i): [3, 3] for i in range(n)}
            if run_id in answers:
                order = blind_order(data.secret, rater_key(rater), run_id, n)
                label = {methods[k]: chr(65 + pos) for pos, k in enumerate(order)}
                good, bad = answers[run_id]["top"], answers[run_id]["bottom"]
                scores[label[good]], scores[label[bad]] = ([5, 5], [2, 2]) if careful else ([2, 2], [5, 5])
            elif rater == "bo":
                scores = {chr(65 + i): [1, 1] for i in range(n)}
            rate(data.runs, data.ratings, rater, run_id, scores, data.secret, item_view, reveal=True)
    df = data.ratings.read()
    picked = serve(df, data.votes.read(), data.runs)
    gold_table = picked["gold"].set_index("rater")
    assert not gold_table.loc["ana", "flagged"] and gold_table.loc["bo", "flagged"]
    assert gold_table.loc["bo", "checks"] == 3 and gold_table.loc["bo", "failed"] == 3
    assert set(picked["ratings"]["rater"]) == {"ana"} and set(picked["flagged_ratings"]["rater"]) == {"bo"}
    assert not picked["ratings"]["item_id"].isin(golds).any()  # gold never counts for a method
    rep = full_report(picked, data.runs, target=2)
    assert rep["flagged"]["raters"] == ["bo"] and rep["flagged"]["methods"]
    assert {m["fidelity_mean"] for m in rep["methods"]} == {3.0}  # bo's 1s are not in the means
    assert serve(df, None, data.runs, include_flagged=True)["ratings"]["rater"].nunique() == 2
    # pairwise gold checks: on a gold item only its gold pair is served; preferring the degraded copy fails it
    while (pair := next_pair(data.runs, data.votes, "cy", data.secret)) is not None:
        if pair.item_id not in answers:
            vote(data.runs, data.votes, "cy", pair.item_id, pair.view_token, "tie", data.secret)
            continue
        shown = [_method_of(data, pair.item_id, p) for p in pair.outputs]
        assert set(shown) == {answers[pair.item_id]["top"], answers[pair.item_id]["bottom"]}
        vote(data.runs, data.votes, "cy", pair.item_id, pair.view_token,
             "AB"[shown.index(answers[pair.item_id]["bottom"])], data.secret)
    picked = serve(df, data.votes.read(), data.runs)
    assert picked["gold"].set_index("rater").loc["cy", "flagged"] and not len(picked["votes"])


def test_seconds_are_stored_and_fast_ratings_flagged_and_coverage_counted(tmp_path):
    import time

    from recontext.review import blind_order, summary
    from recontext.review import token as tokens

    data = open_data(tmp_path)
    ids = _inversion_items(data, n_items=3)
    for rater, took in (("ana", 30.0), ("bo", 0.5)):  # shown `took` seconds before submitting
        token = tokens.issue(data.secret, rater, ids[0], "likert", blind_order(data.secret, rater, ids[0], 4),
                             now=time.time() - took)
        rate(data.runs, data.ratings, rater, ids[0], {chr(65 + i): [3, 3] for i in range(4)}, data.secret,
             token, reveal=True)
    df = data.ratings.read()
    seconds = df.groupby("rater")["seconds"].first()
    assert seconds["ana"] > 20 and seconds["bo"] < 1.5
    flags = summary.fast(df)
    assert flags[df["rater"] == "bo"].all() and not flags[df["rater"] == "ana"].any()
    rep = full_report(serve(df, None, data.runs), data.runs, target=2)
    assert rep["fast"]["ratings"] == 4
    assert rep["coverage"]["items"] == 3 and rep["coverage"]["target"] == 2
    assert rep["coverage"]["items_at_target"] == 1
    assert sorted(p["raters"] for p in rep["coverage"]["per_item"]) == [0, 0, 2]
    assert ids[0] in {p["item_id"] for p in rep["coverage"]["per_item"]}


def test_gold_items_are_made_from_the_command_line(tmp_path, capsys):
    from recontext.cli import main

    data = open_data(tmp_path)
    (run_id,) = _inversion_items(data, n_items=1)
    assert main(["ratings", "gold", run_id, "--data", str(tmp_path)]) == 0
    gold_id = capsys.readouterr().out.split()[2]
    from recontext.review.gold import answers_for

    assert answers_for(data.runs)[gold_id]["top"] in METHODS  # an output of the run's own methods
    assert main(["ratings", "gold", "20990101-000000-nothere", "--data", str(tmp_path)]) == 2


@pytest.mark.parametrize("mode, refused", [("pairwise", "rate"), ("likert", "vote")])
def test_a_deployment_can_ask_for_one_kind_of_answer_only(tmp_path, monkeypatch, mode, refused):
    from recontext.ui import review_tab

    monkeypatch.setenv("RECONTEXT_REVIEW_MODE", mode)
    data = open_data(tmp_path)
    (run_id,) = _inversion_items(data, n_items=1)
    with pytest.raises(ValueError, match="only"):
        if refused == "rate":
            review_tab.rate(data, "tiny", "ana", run_id, {}, view_token=view(data, "ana", run_id))
        else:
            shown = review_tab.next_pair(data, "ana")[0]
            review_tab.vote(data, "tiny", "ana", shown["item_id"], shown["view_token"], "A")
    monkeypatch.setenv("RECONTEXT_REVIEW_MODE", "both")
    shown = review_tab.next_pair(data, "ana")[0]
    assert "Vote saved" in review_tab.vote(data, "tiny", "ana", shown["item_id"], shown["view_token"], "tie")
