"""The figures beside each tab's examples (recontext/tiny/typical.json, written by
`python -m recontext.tiny.typical --write`) are what the claims code measures now; the first
example is the one the stated rule picks; the note says plainly when a claim does not hold."""

import copy

import numpy as np
import pytest

from recontext import examples as ex
from recontext.tiny import typical


@pytest.fixture(scope="module")
def committed():
    data = typical.load()
    assert data is not None, f"{typical.PATH} is missing: run `{typical.COMMAND}`"
    return data


@pytest.fixture(scope="module")
def fresh(studio):
    return typical.compute(studio)  # about 2 minutes on 2 CPU threads


def _numbers(case: dict) -> dict:
    return {k: v for k, v in case.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_committed_figures_match_a_fresh_computation(committed, fresh):
    """Per-case values within the claim's tolerance (CI's 2 threads sum floats in another
    order); K of N from the fresh values, a case flipping only where its committed value is
    within tolerance of zero; `holds` the same unless the fresh figures sit at the rule's edge."""
    assert committed["preset"] == fresh["preset"] and committed["steps"] == fresh["steps"]
    assert set(committed["tabs"]) == set(fresh["tabs"]) == set(typical.TABS)
    for tab, old_tab in committed["tabs"].items():
        new_tab = fresh["tabs"][tab]
        assert [c["id"] for c in old_tab["claims"]] == [c["id"] for c in new_tab["claims"]], tab
        edge = False
        for old, new in zip(old_tab["claims"], new_tab["claims"]):
            tol, where = old["tolerance"], f"{tab}/{old['id']}"
            assert [c["case"] for c in old["cases"]] == [c["case"] for c in new["cases"]], where
            for a, b in zip(old["cases"], new["cases"]):
                for key, value in _numbers(a).items():
                    limit = 2 * tol if key == "value" else tol  # a difference of two values
                    assert abs(b[key] - value) <= limit, (where, a["case"], key, value, b[key])
            k = sum(c["value"] > 0 for c in new["cases"])
            may_flip = [c for c in old["cases"] if abs(c["value"]) <= 2 * tol]
            assert old["k"] - len(may_flip) <= k <= old["k"] + len(may_flip), (where, old["k"], k)
            mean = float(np.mean([c["value"] for c in new["cases"]]))
            fresh_holds = typical.holds_rule(k, len(new["cases"]), mean, old["min_effect"])
            at_edge = bool(may_flip) or abs(mean - old["min_effect"]) <= 2 * tol or abs(mean) <= 2 * tol
            edge |= at_edge
            assert fresh_holds == old["holds"] or at_edge, (where, old["holds"], k, mean)
        assert new_tab["holds"] == old_tab["holds"] or edge, tab
        lead_tol = next(c for c in old_tab["claims"] if c["id"] == old_tab["order_by"])["tolerance"]
        new_values = {tuple(e["example"]): e["value"] for e in new_tab["examples"]}
        for e in old_tab["examples"]:
            b = new_values[tuple(e["example"])]
            assert (e["value"] is None) == (b is None), (tab, e["example"])
            if b is not None:
                assert abs(b - e["value"]) <= 2 * lead_tol, (tab, e["example"], e["value"], b)


def _nearest(listed: list[tuple], values: dict, median: float, tol: float) -> set:
    """The examples the rule may put first: those whose distance to the median is within
    `tol` of the least (the listed order breaks exact ties, float sums may break near ones)."""
    distances = [abs(values[k] - median) for k in listed if values[k] is not None]
    return {k for k in listed if values[k] is not None and abs(values[k] - median) - min(distances) <= tol}


def test_the_first_example_is_the_median_case(committed, fresh):
    """By the stated rule: nearest the held-out median of the ordering claim's measure, on the
    committed figures exactly, and on the fresh ones up to the tolerance."""
    listed = {tab: [tuple([ex.relative(e[0]), *e[1:]]) for e in ex.of(tab)] for tab in typical.TABS}
    for tab, t in committed["tabs"].items():
        lead = next(c for c in t["claims"] if c["id"] == t["order_by"])
        values = [c["value"] for c in lead["cases"]]
        assert t["median"] == pytest.approx(float(np.median(values)), abs=1e-4), tab
        assert "median" in t["rule"] and lead["measure"] in t["rule"], t["rule"]
        # the committed order follows the rule on the committed values
        rows = t["examples"]
        assert sorted(tuple(e["example"]) for e in rows) == sorted(listed[tab]), tab
        measured = [e for e in rows if e["value"] is not None]
        assert measured, tab
        assert rows[:len(measured)] == measured, tab  # unmeasured examples last
        for e in measured:
            assert e["distance"] == pytest.approx(abs(e["value"] - t["median"]), abs=1e-4)
        assert [e["distance"] for e in measured] == sorted(e["distance"] for e in measured), tab
        # and the fresh computation picks the same first example (or one as near the median)
        f = fresh["tabs"][tab]
        fresh_values = {tuple(e["example"]): e["value"] for e in f["examples"]}
        nearest = _nearest(listed[tab], fresh_values, f["median"], tol=4 * lead["tolerance"])
        assert tuple(rows[0]["example"]) in nearest, (tab, rows[0]["example"], nearest)


def test_order_puts_the_median_case_first(committed):
    for tab in typical.TABS:
        listed = ex.of(tab)
        ordered = typical.order(tab, listed)
        assert sorted(map(tuple, ordered)) == sorted(map(tuple, listed))
        assert [ex.relative(ordered[0][0]), *ordered[0][1:]] == committed["tabs"][tab]["examples"][0]["example"]
        assert typical.order(tab, listed, "sdxl") == listed  # not measured there: as given
        stranger = ["/somewhere/else.png", "a caption"]
        assert typical.order(tab, [stranger, *listed])[-1] == stranger  # unmeasured: last


def test_note_says_plainly_when_a_claim_does_not_hold(committed):
    for tab, t in committed["tabs"].items():
        for c in t["claims"]:  # the JSON's verdicts follow the stated rule
            assert c["holds"] == typical.holds_rule(c["k"], c["n"], c["mean"], c["min_effect"]), (tab, c["id"])
            assert f"{c['k']} of {c['n']}" in c["text"]
        note = typical.note(tab, "tiny")
        assert note and all(c["text"] in note for c in t["claims"])
        assert ("does not hold" in note.lower()) == (not t["holds"]), (tab, note)
        assert typical.note(tab, "sdxl") is None and typical.holds(tab, "sdxl") is None
        assert typical.holds(tab, "tiny") == t["holds"]

        broken = copy.deepcopy(committed)
        for c in broken["tabs"][tab]["claims"]:
            c["holds"] = True
        broken["tabs"][tab]["claims"][0]["holds"] = False
        text = typical.note(tab, "tiny", data=broken)
        assert "does not hold on the tiny preset" in text.lower()
        assert broken["tabs"][tab]["claims"][0]["text"] in text
        assert "does not hold" in typical.note(tab, "tiny", short=True, data=broken).lower()
        for c in broken["tabs"][tab]["claims"]:
            c["holds"] = True
        assert "does not hold" not in typical.note(tab, "tiny", data=broken).lower()


@pytest.mark.parametrize("tab", typical.TABS)
def test_the_tabs_offer_the_measured_examples(tab):
    """The tab's example list is the core list (recontext/examples.py) that was measured."""
    import importlib

    pytest.importorskip("gradio")
    module = importlib.import_module(f"recontext.ui.{tab}_tab")
    shown = module.EXAMPLES if tab == "inversion" else module.examples()
    assert sorted(map(tuple, shown)) == sorted(map(tuple, ex.of(tab))), tab
