"""Issue 40: pair choice (uniform / active), the campaign's statistics (raters as clusters,
pair-frequency weights, fragility) and the campaign view's figures in /summary."""

import itertools

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recontext.data import open_data
from recontext.review import full_report, next_pair, ranking, sampling, serve, vote
from recontext.review.summary import _bt_fit, _wins
from recontext.runs import Output

METHODS = ["m0", "m1", "m2", "m3"]


def _items(data, n_items, methods=METHODS, seed=0):
    rng = np.random.default_rng(seed)
    noise = lambda: Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))  # noqa: E731
    return [data.runs.save("inversion", "tiny", [Output(m, noise()) for m in methods], source=noise(),
                           prompts={"caption": "noise"}) for _ in range(n_items)]


def _strength_rater(strength, rng):
    """A scripted rater: the method with the higher strength wins with Bradley–Terry odds."""
    def choose(a, b):
        p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
        return "A" if rng.random() < p else "B"
    return choose


@pytest.mark.parametrize("rule", sampling.MODES)
def test_next_pair_never_serves_a_rater_an_item_pair_they_voted(tmp_path, monkeypatch, rule):
    monkeypatch.setenv("RECONTEXT_PAIR_SAMPLING", rule)
    monkeypatch.setenv("RECONTEXT_PAIR_MIN", "2")
    data = open_data(tmp_path)
    ids = _items(data, 3)
    strength = {"m0": 1.0, "m1": 0.5, "m2": 0.0, "m3": -0.5}
    pick = _strength_rater(strength, np.random.default_rng(0))
    for rater in ("ana", "bo"):
        while (pair := next_pair(data.runs, data.votes, rater, data.secret)) is not None:
            run = data.runs.get(pair.item_id)
            shown = {o["image"]: o["method"] for o in run["outputs"]}
            a, b = (shown[p.rsplit("/", 1)[1]] for p in pair.outputs)
            vote(data.runs, data.votes, rater, pair.item_id, pair.view_token, pick(a, b), data.secret)
    votes = data.votes.read()
    keys = [(r, i, *sorted((a, b))) for r, i, a, b in
            zip(votes["rater"], votes["item_id"], votes["method_a"], votes["method_b"])]
    assert len(keys) == len(set(keys)) == 2 * len(ids) * 6  # every item pair once per rater, never twice


def test_choose_drops_voted_item_pairs_itself():
    """The rule holds in the sampler alone: a caller that passes pairs the rater has voted on
    (from the votes table) never gets them back."""
    cands = [sampling.Candidate("t", f"item{k}", a, b, (k,), (f"item{k}", a, b))
             for k in range(2) for a, b in itertools.combinations(METHODS, 2)]
    votes = pd.DataFrame([{"rater": "ana", "task": "t", "item_id": c.item_id, "method_a": c.method_b,
                           "method_b": c.method_a, "choice": "A"} for c in cands[:-1]])
    for rule in sampling.MODES:
        rng = np.random.default_rng(0)
        assert sampling.choose(cands, votes, "ana", rule, rng, minimum=3) == cands[-1].payload
        assert sampling.choose(cands[:-1], votes, "ana", rule, rng, minimum=3) is None
        assert sampling.choose(cands[:-1], votes, "bo", rule, rng, minimum=3) is not None


def _simulate(rule, votes, strength, minimum=5, items=40, raters=6, seed=0):
    """A campaign through `sampling.choose`: (a, b, y, rater) arrays and the tally."""
    rng = np.random.default_rng(seed)
    methods = [f"m{i}" for i in range(len(strength))]
    cands = [sampling.Candidate("t", f"item{k}", methods[i], methods[j], (k, i, j), (f"item{k}", i, j))
             for k in range(items) for i, j in itertools.combinations(range(len(methods)), 2)]
    tally, out = sampling.Tally(), []
    while len(out) < votes:
        r = int(rng.integers(raters))
        item, i, j = sampling.choose(cands, tally, f"r{r}", rule, rng, minimum)
        p = 1 / (1 + np.exp(-(strength[i] - strength[j])))
        choice = "A" if rng.random() < p else "B"
        tally.add(f"r{r}", "t", item, methods[i], methods[j], choice)
        out.append((i, j, ranking.SCORE[choice], r))
    return np.array(out).T, tally


def test_every_method_pair_reaches_its_minimum_first_and_keeps_being_explored():
    strength = np.array([3.0, 2.0, 1.9, 0.0, -2.0, -3.0])  # one close pair draws the active rule
    minimum, pairs = 4, 15
    _, tally = _simulate("active", minimum * pairs, strength, minimum)
    assert sorted(tally.pair.values()) == [minimum] * pairs  # the minimum first, for every pair
    _, tally = _simulate("active", 600, strength, minimum)
    counts = tally.pair
    assert len(counts) == pairs and min(counts.values()) > minimum  # exploration: no pair starves
    close = counts[("t", "m1", "m2")]
    assert close == max(counts.values()) and close > 600 / pairs * 2  # active: the close pair most


def test_fit_is_summarys_bradley_terry():
    rng = np.random.default_rng(3)
    wins = rng.integers(0, 9, (5, 5)).astype(float) * (1 - np.eye(5))
    wins[0, 1] = wins[1, 0] = 0  # a pair that never met: no virtual wins there
    wins[2, 3] = 0               # one side always won
    assert np.allclose(ranking.fit(wins), _bt_fit(list("abcde"), wins), atol=1e-7)


def _brute_force(votes, methods):
    """The fewest votes whose removal changes the order, over every subset (by kind)."""
    def order(df):
        s = _bt_fit(methods, _wins(df, methods))
        return tuple(np.argsort(-s, kind="stable")), s
    first, s0 = order(votes)
    kinds = votes.groupby(["method_a", "method_b", "choice"]).groups
    groups = [list(v) for v in kinds.values()]
    for k in range(1, len(votes) + 1):
        for take in itertools.product(*[range(len(g) + 1) for g in groups]):
            if sum(take) != k:
                continue
            drop = [i for g, t in zip(groups, take) for i in g[:t]]
            now, s = order(votes.drop(index=drop))
            flipped = any(s[u] - s[l] <= 1e-9 for u, l in zip(first[:-1], first[1:]))
            if flipped:
                return k
    return None


def test_fragility_is_exact_on_a_small_campaign():
    """Hand-made: x leads y narrowly, y leads z clearly, with a tie and a both-bad; the
    greedy search finds the same number as trying every subset of votes."""
    rows = ([("x", "y", "A")] * 4 + [("x", "y", "B")] * 2 + [("x", "y", "tie")] +
            [("y", "z", "A")] * 4 + [("y", "z", "B")] + [("z", "y", "both_bad")] +
            [("x", "z", "A")] * 2 + [("z", "x", "A")])
    votes = pd.DataFrame(rows, columns=["method_a", "method_b", "choice"]).assign(task="t", rater="r")
    methods = ["x", "y", "z"]
    a, b, y = ranking.votes_arrays(votes, methods)
    found = ranking.fragility(3, a, b, y)
    assert found["votes"] == _brute_force(votes, methods)
    assert 1 < found["votes"] < len(votes)
    assert len(found["removed"]) == found["votes"]
    # removing what it names does flip the pair it names
    left = votes.copy()
    for i, j, yi in found["removed"]:
        mine = ranking.votes_arrays(left, methods)
        hit = [k for k in range(len(left)) if sorted((mine[0][k], mine[1][k])) == [i, j]
               and (mine[2][k] if mine[0][k] == i else 1 - mine[2][k]) == yi]
        left = left.drop(index=left.index[hit[0]])
    s = _bt_fit(methods, _wins(left, methods))
    assert s[found["upper"]] <= s[found["lower"]] + 1e-9


def test_cluster_intervals_widen_when_one_rater_casts_most_votes():
    rng = np.random.default_rng(0)
    strength = np.array([0.6, 0.2, -0.2, -0.6])
    n_votes = 800
    a = rng.integers(0, 4, n_votes)
    b = (a + rng.integers(1, 4, n_votes)) % 4
    heavy = rng.random(n_votes) < 0.8       # one rater casts 80% of the votes...
    own = np.where(heavy[:, None], np.array([-1.6, -0.8, 0.8, 1.6]), 0.0)  # ...and sees them reversed
    d = strength[a] - strength[b] + own[np.arange(n_votes), a] - own[np.arange(n_votes), b]
    y = (rng.random(n_votes) < 1 / (1 + np.exp(-d))).astype(float)
    one = np.where(heavy, 0, 1 + rng.integers(0, 20, n_votes))   # rater 0 is the heavy one
    spread = rng.integers(0, 21, n_votes)                       # the same votes from 21 raters alike
    wide, even = ranking.intervals(4, a, b, y, one), ranking.intervals(4, a, b, y, spread)
    width = lambda e: e["high"] - e["low"]  # noqa: E731
    votes = ranking.intervals(4, a, b, y, np.arange(n_votes))    # every vote its own rater
    assert (width(wide) > 1.5 * width(even)).all(), (width(wide), width(even))
    assert (width(wide) > 1.5 * width(votes)).all(), (width(wide), width(votes))
    assert np.allclose(wide["strength"], even["strength"])  # the strengths do not depend on who voted
    for e in (wide, even, votes):
        assert (e["low"] < e["strength"]).all() and (e["strength"] < e["high"]).all()
    alone = ranking.intervals(4, a, b, y, np.zeros(n_votes))    # one rater: no interval
    assert np.isnan(alone["low"]).all() and np.isfinite(alone["strength"]).all()


def test_weights_make_a_repeated_pair_count_once():
    rng = np.random.default_rng(1)
    a = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    b = np.array([1, 2, 2, 3, 3, 0, 3, 0])
    y = rng.integers(0, 3, len(a)) / 2
    rep = np.concatenate([np.arange(len(a))] + [np.flatnonzero((a == 1) & (b == 2))] * 9)  # pair 1-2 ×10
    wins = lambda idx: ranking.wins_matrix(4, a[idx], b[idx], y[idx])  # noqa: E731
    same = np.arange(len(a))
    weighted = lambda idx: ranking.fit(ranking._even(wins(idx)), prior=0.0)  # noqa: E731
    plain = lambda idx: ranking.fit(wins(idx), prior=0.0)  # noqa: E731
    assert np.allclose(weighted(same), weighted(rep), atol=1e-8)   # weighted: as if shown once
    assert not np.allclose(plain(same), plain(rep), atol=1e-3)     # plain: the repeats count
    even = ranking._even(wins(rep))
    games = even + even.T
    assert np.allclose(games[games > 0], games[games > 0][0])      # every pair that met weighs alike


def test_full_report_has_the_campaign_and_it_says_more_votes_separate_a_close_pair(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONTEXT_PAIR_SAMPLING", "active")
    data = open_data(tmp_path)
    _items(data, 4)
    strength = {"m0": 2.0, "m1": 1.0, "m2": 0.9, "m3": -1.0}
    pick = _strength_rater(strength, np.random.default_rng(2))
    for rater in ("ana", "bo", "cy", "dee"):
        for _ in range(15):
            pair = next_pair(data.runs, data.votes, rater, data.secret)
            run = data.runs.get(pair.item_id)
            shown = {o["image"]: o["method"] for o in run["outputs"]}
            a, b = (shown[p.rsplit("/", 1)[1]] for p in pair.outputs)
            vote(data.runs, data.votes, rater, pair.item_id, pair.view_token, pick(a, b), data.secret)
    rep = full_report(serve(data.ratings.read(), data.votes.read(), data.runs))
    (c,) = rep["campaign"]
    assert c["votes"] == 60 and c["raters"] == 4
    assert [r["method"] for r in c["ranking"]][0] == "m0"
    assert {r["method"]: r["votes"] for r in c["ranking"]} == {
        r["method"]: r["votes"] for r in rep["bradley_terry"]}
    for r, bt in zip(sorted(c["ranking"], key=lambda r: r["method"]),
                     sorted(rep["bradley_terry"], key=lambda r: r["method"])):
        assert abs(r["strength"] - bt["strength"]) < 1e-6  # the same fit as the Bradley–Terry table
        assert r["low"] < r["strength"] < r["high"]
    assert c["coverage"] == {"pairs": 6, "pairs_at_min": 6, "min_votes": sampling.MIN_VOTES}
    assert sum(map(sum, c["pair_votes"])) == 2 * 60
    assert isinstance(c["fragility"]["votes"], int) and c["fragility"]["votes"] >= 1
    close = c["closest"]
    assert close is not None and (close["separated"] or close["more_votes"] > 0)


def test_a_campaign_of_one_vote_or_one_rater_reports_what_it_can():
    one = pd.DataFrame([{"task": "t", "rater": "ana", "method_a": "x", "method_b": "y", "choice": "A"}])
    (c,) = ranking.campaign(one, min_votes=5)
    assert c["fragility"] == {"votes": 1, "pair": ["x", "y"]}
    assert c["ranking"][0]["method"] == "x" and c["ranking"][0]["low"] is None  # one rater: no interval
    assert c["coverage"] == {"pairs": 1, "pairs_at_min": 0, "min_votes": 5}
    assert c["closest"]["more_votes"] is None and not c["all_separated"]
    tied = pd.concat([one, one.assign(choice="B", rater="bo")])
    assert ranking.campaign(tied)[0]["fragility"]["votes"] == 0  # already tied: no vote to remove


def test_a_vanishing_gap_gives_no_estimate_rather_than_an_integer_json_cannot_hold():
    """A gap of 1e-19 (all-tied strengths fitted apart by rounding) once asked for ~1e38
    more votes, an integer orjson refused: /summary failed for every visitor."""
    import json

    from recontext.review.ranking import to_separate

    assert to_separate(385, 1e-19, -3.5e-18) is None
    more = to_separate(60, 0.69, -0.47)  # the campaign view's example: about 110
    assert isinstance(more, int) and 100 < more < 120
    assert to_separate(10**6, 1e-3, -1.0) is None  # ~1e12 more votes: no estimate
    json.dumps([to_separate(385, 1e-19, -3.5e-18), more])
