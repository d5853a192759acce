"""Issue 37: a public rating campaign that one visitor cannot steer, un-blind or exhaust.
Each probe's case through gradio_client against `RECONTEXT_APP=review python app.py`, on a
data folder of inversion items (the photo plus noise, each method at its own level) and
gold items made from them; the rules themselves also through the plain functions."""

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from recontext.data import open_data
from recontext.review import bradley_terry, next_item, next_pair, rate, vote
from recontext.review import raters
from recontext.review.gold import GOLD_PSNR, TOLERANCE, answers_for, make_gold, psnr
from recontext.runs import Output
from review_helpers import view

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["ddim", "ddim+tight", "renoise", "edit-friendly"]
NOISE = {"ddim+tight": 4.0, "renoise": 12.0, "ddim": 24.0, "edit-friendly": 40.0}
ADMIN = "campaign-admin-" + "k3y" * 8


def _items(data, n_items=3, seed=0):
    rng = np.random.default_rng(seed)
    ids = []
    for _ in range(n_items):
        y, x = np.mgrid[:32, :32]
        photo = np.clip(np.stack([x * 7, y * 7, (x + y) * 3], -1) + rng.integers(0, 60, 3), 0, 255)
        outputs = [Output(m, Image.fromarray(np.clip(photo + rng.normal(0, NOISE[m], photo.shape), 0, 255)
                                             .astype(np.uint8))) for m in METHODS]
        ids.append(data.runs.save("inversion", "tiny", outputs, source=Image.fromarray(photo.astype(np.uint8)),
                                  prompts={"caption": "a gradient"}))
    return ids


def _method_of(data, item_id, image) -> str:
    """The method of a shown output (a per-view copy), by its pixels."""
    record = data.runs.get(item_id)
    pixels = np.asarray(Image.open(image).convert("RGB"))
    for o in record["outputs"]:
        if np.array_equal(np.asarray(Image.open(os.path.join(record["dir"], o["image"])).convert("RGB")), pixels):
            return o["method"]
    raise AssertionError("a shown output matches none of the item's outputs")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A review-only app (open names, an admin secret, MCP on) on a folder with 3 items and
    3 gold items; an invited rater "ana". Yields (url, data, gradio cache folder, ana's token)."""
    root = tmp_path_factory.mktemp("campaign")
    data = open_data(root / "data")
    ids = _items(data)
    for run_id in ids:
        make_gold(data.runs, run_id)
    token = raters.invite(data.root, data.secret, "ana", "pilot")
    cache = root / "gradio-cache"
    port = _free_port()
    env = {**os.environ, "RECONTEXT_DATA_DIR": data.root, "RECONTEXT_APP": "review", "RECONTEXT_RATERS": "open",
           # the probe's case: the same pair served again and again (the uniform rule serves the
           # least-voted pair, deterministically; active choice explores, so views may differ)
           "RECONTEXT_PAIR_SAMPLING": "uniform",
           "RECONTEXT_REVIEW_ADMIN": ADMIN, "GRADIO_TEMP_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    log = open(root / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--mcp"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        assert proc.poll() is None, open(root / "app.log").read()[-2000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/", data, cache, token
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def client(campaign):
    return Client(campaign[0], verbose=False)


# 3: review-only ------------------------------------------------------------------------------
def test_review_only_mode_serves_no_generation_endpoint_nor_tool(client, campaign):
    import httpx

    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/next_item", "/rate", "/next_pair", "/vote", "/summary"} <= set(api)
    assert not {"/reconstruct", "/edit", "/edit_sweep", "/edit_compare", "/dress"} & set(api)
    with pytest.raises(Exception):
        client.predict(photo=None, prompt="a gradient", api_name="/reconstruct")
    schema = httpx.get(campaign[0] + "gradio_api/mcp/schema", timeout=30).json()
    assert {t["name"] for t in schema if t["meta"]["mcp_type"] == "tool"} == {"summary"}


# 1: vote stuffing ----------------------------------------------------------------------------
def test_a_50_vote_stuffer_leaves_the_bradley_terry_ranking_as_it_was(client, campaign):
    _, data, _, _ = campaign
    gold = answers_for(data.runs)
    for rater in ("hon1", "hon2"):  # honest raters: the closer output to the photo wins
        while (pair := next_pair(data.runs, data.votes, rater, data.secret)) is not None:
            if pair.item_id in gold:  # and they pass the gold checks
                shown = [_method_of(data, pair.item_id, p) for p in pair.outputs]
                vote(data.runs, data.votes, rater, pair.item_id, pair.view_token,
                     "AB"[shown.index(gold[pair.item_id]["top"])], data.secret)
                continue
            src = np.asarray(Image.open(pair.source).convert("RGB"))
            a, b = (psnr(np.asarray(Image.open(p).convert("RGB")), src) for p in pair.outputs)
            vote(data.runs, data.votes, rater, pair.item_id, pair.view_token, "A" if a > b else "B", data.secret)
    before = client.predict(api_name="/summary")[0]
    ranking = [r["method"] for r in before["bradley_terry"]]
    assert ranking == sorted(METHODS, key=NOISE.get), ranking
    shown = [client.predict("stuffer", api_name="/next_pair")[0] for _ in range(50)]
    assert len({(s["item_id"]) for s in shown}) == 1  # the same pair, 50 views
    saved, refused = 0, []
    for s in shown:  # always for the noisier output
        try:
            client.predict(rater="stuffer", item_id=s["item_id"], view_token=s["view_token"], choice="A",
                           api_name="/vote")
            saved += 1
        except Exception as e:
            refused.append(str(e))
    assert saved == 1 and len(refused) == 49 and all("already voted on this pair" in e for e in refused)
    after = client.predict(api_name="/summary")[0]
    assert [r["method"] for r in after["bradley_terry"]] == ranking
    assert after["votes"] == before["votes"] + (shown[0]["item_id"] not in gold)  # a gold item's vote counts for no method
    assert len(data.votes.read()) == before["votes"] + 1 + len(gold) * 2  # the 2 honest raters' gold votes apart


def test_an_old_file_with_stuffed_votes_counts_the_first_only(tmp_path):
    data = open_data(tmp_path)
    (run_id,) = _items(data, n_items=1)
    views = [next_pair(data.runs, data.votes, "bo", data.secret) for _ in range(5)]
    for v in views:  # as an earlier version stored them: no check across views
        data.votes.add_many([dict(rater="bo", item_id=run_id, task="inversion", method_a=m_a, method_b=m_b,
                                  output_a=0, output_b=1, choice="A", view_id=v.view_token[-16:])
                             for m_a, m_b in [(METHODS[0], METHODS[1])]])
    assert len(data.votes.read(latest=False)) == 5 and len(data.votes.read()) == 1
    assert bradley_terry(data.votes.read(), n_boot=10)[0]["votes"] == 1


# 2: cross-mode -------------------------------------------------------------------------------
def test_an_item_voted_on_is_not_served_blind_in_likert_nor_the_reverse(client, campaign, tmp_path):
    _, data, _, _ = campaign
    shown = client.predict("cross", api_name="/next_pair")[0]
    client.predict(rater="cross", item_id=shown["item_id"], view_token=shown["view_token"], choice="tie",
                   api_name="/vote")
    seen = set()
    while (item := client.predict("cross", api_name="/next_item")[0])["item_id"]:
        seen.add(item["item_id"])
        n = len(item["labels"])
        client.predict(rater="cross", item_id=item["item_id"], view_token=item["view_token"],
                       scores={label: {"fidelity": 3, "realism": 3} for label in item["labels"]}, reveal=True,
                       api_name="/rate")
        assert n >= 2
    assert seen and shown["item_id"] not in seen  # served everything else, never the voted item
    assert client.predict("cross", api_name="/next_pair")[0]["item_id"] in ("", shown["item_id"])
    # the same rules in the plain functions: a token from before is refused too
    own = open_data(tmp_path)
    first, _ = _items(own, n_items=2)
    likert = next_item(own.runs, own.ratings, "zed", own.secret)
    pair = next_pair(own.runs, own.votes, "zed", own.secret, ratings=own.ratings)
    rate(own.runs, own.ratings, "zed", likert.item_id, {c: [3, 3] for c in "ABCD"}, own.secret,
         likert.view_token, reveal=True, votes=own.votes)
    if pair.item_id == likert.item_id:
        with pytest.raises(ValueError, match="rated its outputs in Likert mode"):
            vote(own.runs, own.votes, "zed", pair.item_id, pair.view_token, "A", own.secret, ratings=own.ratings)
    other = next_pair(own.runs, own.votes, "zed", own.secret, ratings=own.ratings)
    assert other.item_id != likert.item_id
    vote(own.runs, own.votes, "zed", other.item_id, other.view_token, "A", own.secret, ratings=own.ratings)
    with pytest.raises(ValueError, match="compared its outputs in pairwise votes"):
        rate(own.runs, own.ratings, "zed", other.item_id, {c: [3, 3] for c in "ABCD"}, own.secret,
             view(own, "zed", other.item_id), votes=own.votes)


# 4: gold ---------------------------------------------------------------------------------------
def test_gold_items_are_real_outputs_one_degraded_by_the_stated_amount(campaign):
    _, data, _, _ = campaign
    answers = answers_for(data.runs)
    assert len(answers) == 3 and not os.path.exists(os.path.join(data.runs.root, "gold.json"))
    for item_id, answer in answers.items():
        record, origin = data.runs.get(item_id), data.runs.get(answer["made_from"])
        assert [o["method"] for o in record["outputs"]] == [o["method"] for o in origin["outputs"]]
        pix = {o["method"]: np.asarray(Image.open(os.path.join(record["dir"], o["image"]))) for o in record["outputs"]}
        ref = np.asarray(Image.open(os.path.join(origin["dir"], next(
            o["image"] for o in origin["outputs"] if o["method"] == answer["top"]))))
        assert np.array_equal(pix[answer["top"]], ref)  # a real output, as it was
        assert abs(psnr(pix[answer["bottom"]], ref) - GOLD_PSNR) <= TOLERANCE  # calibrated
        src = np.asarray(Image.open(os.path.join(record["dir"], record["source"])))
        assert not any(np.array_equal(p, src) for p in pix.values())


def test_a_bot_answering_the_output_equal_to_the_source_fails_gold(client, campaign):
    """The probe's bot: prefer the output identical to the source, else say tie. On the
    old gold items (the source itself) it passed every check; now it fails them all."""
    _, data, _, _ = campaign
    while (shown := client.predict("bot", api_name="/next_pair"))[0]["item_id"]:
        pair, a, b, source = shown
        src = np.asarray(Image.open(source).convert("RGB"))
        same = [np.array_equal(np.asarray(Image.open(p).convert("RGB")), src) for p in (a, b)]
        choice = "A" if same[0] else "B" if same[1] else "tie"
        client.predict(rater="bot", item_id=pair["item_id"], view_token=pair["view_token"], choice=choice,
                       api_name="/vote")
    report = client.predict(admin_key=ADMIN, api_name="/admin_summary")[0]
    bot = next(g for g in report["gold"] if g["rater"] == "bot")
    assert bot["checks"] == 3 and bot["failed"] == 3 and bot["flagged"]
    assert "bot" in report["flagged"]["raters"]


def test_a_strangers_failed_gold_never_touches_an_invited_rater_and_deleting_gold_runs_changes_nothing(
        client, campaign):
    _, data, _, token = campaign
    answers = answers_for(data.runs)
    for who, honest in ((token, True), ("ana", False), ("Ana", False)):  # the stranger types ana's name
        while (item := client.predict(who, api_name="/next_item"))[0]["item_id"]:
            result, _, *images = item
            item_id, labels = result["item_id"], result["labels"]
            scores = {label: {"fidelity": 3, "realism": 3} for label in labels}
            if item_id in answers:
                for label, image in zip(labels, images):
                    method = _method_of(data, item_id, image)
                    good = method == answers[item_id]["top"]
                    bad = method == answers[item_id]["bottom"]
                    if good or bad:
                        scores[label] = {"fidelity": 5 if good == honest else 1, "realism": 5 if good == honest else 1}
            client.predict(rater=who, item_id=item_id, view_token=result["view_token"], scores=scores,
                           comment=f"note by {'ana' if honest else 'stranger'}", reveal=True, api_name="/rate")
    with pytest.raises(Exception, match="wrong admin key"):
        client.predict(admin_key="guess", api_name="/admin_summary")
    report, export = client.predict(admin_key=ADMIN, api_name="/admin_summary")
    gold = {g["rater"]: g for g in report["gold"]}
    assert gold["@ana"]["checks"] == 3 and not gold["@ana"]["flagged"]
    assert gold["ana"]["failed"] == 3 and gold["ana"]["flagged"]
    assert "@ana" not in report["flagged"]["raters"] and "ana" in report["flagged"]["raters"]
    assert "note by ana" in open(export).read()  # the admin's export has the comments
    # 5: the public summary: aggregates only
    public, csv = client.predict(api_name="/summary")
    import re

    text = str(public) + open(csv).read()
    for name in ("ana", "@ana", "stranger", "note by", "stuffer", "hon1", "hon2", "cross"):
        assert not re.search(rf"(?<![\w@]){re.escape(name)}\b", text), name
    assert "rating_id" not in text and "comment" not in text
    assert not {p["item_id"] for p in public["coverage"]["per_item"]} & set(answers)  # nor which items are gold
    assert public["flagged"]["raters"] >= 1 and public["methods"]  # counted, not named
    # deleting the gold runs: no gold in the scores, the same flags
    for item_id in answers:
        shutil.rmtree(os.path.join(data.runs.root, item_id))
    again = client.predict(admin_key=ADMIN, api_name="/admin_summary")[0]
    assert again["gold"] == report["gold"] and again["flagged"]["raters"] == report["flagged"]["raters"]
    assert again["methods"] == report["methods"] and again["bradley_terry"] == report["bradley_terry"]
    assert {m["method"] for m in again["methods"]} == set(METHODS)


# 2: rater identity -----------------------------------------------------------------------------
def test_invite_links_are_signed_revocable_and_the_only_way_in_invite_mode(tmp_path, monkeypatch, capsys):
    from recontext.cli import main
    from recontext.ui import review_tab

    data = open_data(tmp_path)
    _items(data, n_items=1)
    assert main(["ratings", "invite", "Bea", "--campaign", "pilot", "--data", data.root,
                 "--url", "https://rate.example/"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("https://rate.example/?rater=rt1.")
    token = link.split("rater=")[1]
    monkeypatch.setenv("RECONTEXT_RATERS", "invite")
    with pytest.raises(ValueError, match="by invitation only"):
        review_tab.item(data, "bea")
    result = review_tab.item(data, token)[0]
    assert result["item_id"]
    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    with pytest.raises(ValueError, match="not made by this studio"):
        review_tab.item(data, forged)
    monkeypatch.setenv("RECONTEXT_CAMPAIGN", "other")
    with pytest.raises(ValueError, match="campaign 'pilot'"):
        review_tab.item(data, token)
    monkeypatch.delenv("RECONTEXT_CAMPAIGN")
    text = review_tab.rate(data, "", token, result["item_id"], {c: [4, 4] for c in result["labels"]},
                           view_token=result["view_token"])
    assert "Saved 4 ratings" in text
    df = data.ratings.read()
    assert set(df["rater"]) == {"@bea"} and df["signed"].all()
    assert main(["ratings", "revoke", "bea", "--data", data.root]) == 0
    with pytest.raises(ValueError, match="revoked"):
        review_tab.item(data, token)
    assert main(["ratings", "revoke", "nobody", "--data", data.root]) == 2
    monkeypatch.setenv("RECONTEXT_RATERS", "open")
    with pytest.raises(ValueError, match="cannot start with '@'"):
        review_tab.item(data, "@bea")


# 6: bounds -------------------------------------------------------------------------------------
def test_200_next_item_calls_leave_the_cache_bounded(campaign):
    url, _, cache, _ = campaign
    quiet = Client(url, verbose=False, download_files=False)

    def files():
        return [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs]
    quiet.predict("cacher", api_name="/next_item")
    start = len(files())
    for _ in range(200):
        quiet.predict("cacher", api_name="/next_item")
    after = files()
    assert len(after) <= start + 6, (start, len(after))  # one view's copies (source and 4 outputs) at most
    assert sum(os.path.getsize(f) for f in after) < 5 * 1024 * 1024


def test_a_low_entropy_secret_stops_the_app_at_start_with_one_line(tmp_path):
    from recontext.data import check_secret, entropy_bits

    for value in (b"ab" * 32, b"abc" * 16, b"abcdefgh" * 4):  # long enough, not random
        (tmp_path / ".blind-secret").write_bytes(value)
        with pytest.raises(ValueError, match="not random enough"):
            check_secret(str(tmp_path))
    assert entropy_bits(open_data(tmp_path / "fresh").secret) > 200  # what the studio makes passes
    (tmp_path / ".blind-secret").write_bytes(b"a" * 32)  # the probe's
    env = {**os.environ, "RECONTEXT_DATA_DIR": str(tmp_path), "RECONTEXT_APP": "review"}
    proc = subprocess.run([sys.executable, "app.py", "--port", "1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not random enough" in errors[0] and "openssl rand" in errors[0]


def test_a_thin_upload_is_shown_no_smaller_than_the_working_size():
    from recontext.images import fit
    from recontext.ui.common import shown_size

    for native in (128, 1024):  # the probe's 8000×8 upload was shown at 2048×2
        working = fit(Image.new("RGB", (8000, 8)), native, 8)[0].size
        shown = shown_size(working, (8000, 8))
        assert shown[0] >= working[0] and shown[1] >= working[1], (working, shown)
    assert shown_size((128, 128), (4000, 3000)) == (2048, 1536)  # a large photo: still its shape


def test_a_personal_link_rates_in_headless_chromium(campaign):
    """The page reads the rater's token from the link (?rater=...) and signs the ratings
    with it: they are stored as the invited, verified rater."""
    from playwright.sync_api import expect, sync_playwright

    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    url, data, _, _ = campaign
    token = raters.invite(data.root, data.secret, "cy", "pilot")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(raters.link(token, url))
        expect(page.get_by_label("Your name")).to_have_value(token, timeout=120_000)  # from the link
        page.get_by_role("button", name="Next item").click()
        page.get_by_text("left for you").first.wait_for(timeout=300_000)
        for label in "ABCD":
            for criterion in ("fidelity", "realism"):
                page.locator("fieldset", has_text=f"{label}: {criterion}").first.get_by_test_id("4-radio-label").click()
        page.get_by_role("button", name="Submit ratings").click()
        page.get_by_text("ratings for item").first.wait_for(timeout=300_000)
        assert "Saved 4 ratings" in page.get_by_text("ratings for item").first.inner_text()
        browser.close()
    mine = data.ratings.read().query("rater == '@cy'")
    assert len(mine) == 4 and mine["signed"].all()
