"""Issue 40 in the browser: after 60 scripted pairwise votes the Review tab's campaign view
shows the ranking with intervals, the heatmaps and the fragility figure, and /summary
returns the same figures as JSON. Screenshot: test-artifacts/review-campaign.png."""

import os

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from recontext.data import open_data
from recontext.review import full_report, next_pair, serve, vote
from recontext.runs import Output
from test_browser import CHROMIUM, RUN_TIMEOUT, browser, no_error_toast, open_tab, page, shot  # noqa: F401

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian chromium is not installed (.ci/run installs it)")
TASK = "campaign-check"  # a task of its own: other tests' votes in the shared app do not mix in
STRENGTH = {"alpha": 1.5, "beta": 0.5, "gamma": -0.5, "delta": -1.5}


def _vote_60(data):
    rng = np.random.default_rng(4)
    for _ in range(4):
        data.runs.save(TASK, "tiny", [Output(m, Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
                                      for m in STRENGTH], source=None, prompts={"prompt": "noise"})
    for rater in ("camp-ana", "camp-bo", "camp-cy", "camp-dee"):
        cast = 0
        while cast < 15:
            pair = next_pair(data.runs, data.votes, rater, data.secret)
            run = data.runs.get(pair.item_id)
            if run["task"] != TASK:  # another test's item: not part of this campaign
                vote(data.runs, data.votes, rater, pair.item_id, pair.view_token, "tie", data.secret)
                continue
            shown = {o["image"]: o["method"] for o in run["outputs"]}
            a, b = (shown[os.path.basename(p)] for p in pair.outputs)
            p_a = 1 / (1 + np.exp(-(STRENGTH[a] - STRENGTH[b])))
            vote(data.runs, data.votes, rater, pair.item_id, pair.view_token,
                 "A" if rng.random() < p_a else "B", data.secret)
            cast += 1


def test_campaign_view_after_60_votes_and_summary_json(page, app_url, app_data):
    data = open_data(app_data)
    _vote_60(data)
    mine = data.votes.read()
    assert (mine["task"] == TASK).sum() == 60
    expected = [c for c in full_report(serve(data.ratings.read(), mine, data.runs))["campaign"]
                if c["task"] == TASK][0]

    report = Client(app_url, verbose=False).predict(api_name="/summary")[0]
    (got,) = [c for c in report["campaign"] if c["task"] == TASK]
    assert got == expected  # /summary's JSON: the same figures as the code computes
    assert got["votes"] == 60 and got["raters"] == 4
    assert got["ranking"][0]["method"] == "alpha"
    assert all(r["low"] is not None and r["low"] < r["strength"] < r["high"] for r in got["ranking"])

    open_tab(page, "Review")
    page.get_by_role("button", name="Refresh summary").click()
    text = page.locator("#campaign-text")
    expect_text = f"{TASK}: 60 votes from 4 raters"
    page.wait_for_function(f"() => document.querySelector('#campaign-text')?.innerText.includes({expect_text!r})",
                           timeout=RUN_TIMEOUT)
    shown = text.inner_text()
    frag = got["fragility"]["votes"]
    assert f"removing {frag} vote" in shown  # the page's fragility is the JSON's
    assert f"{got['coverage']['pairs_at_min']} of 6 method pairs" in shown
    page.locator("#campaign-plot").scroll_into_view_if_needed()
    try:  # the matplotlib figure, drawn as an image
        page.wait_for_function("() => document.querySelector('#campaign-plot img')?.naturalWidth > 0",
                               timeout=60_000)
    finally:
        shot(page, "review-campaign")
    no_error_toast(page)
