"""Issue 28, section 1: each failure of the second probe, as a test.

1. a 12-output sweep item is shown and rated (it froze the queue: the page had 8 slots);
2. an older ratings file (13 or 14 columns, a BOM, UTF-16) keeps every new rating;
3. what a rater was shown is bound to what they submit (view token);
4. served files are named per view; name variants are one rater; deleted runs leave;
5. prompts are plain text; 6. uploads are limited (see test_app_api); 7. the smaller ones.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from recontext.data import SECRET, check_secret, open_data
from recontext.review import blind_order, final, next_item, rate
from recontext.review import token as tokens
from recontext.review.names import rater_key
from recontext.runs import Output, save_edits
from review_helpers import view

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]


def _item(runs, n=2, prompts=None, seed=0):
    return runs.save("edit", "tiny", [Output(f"ddim+tight@{i / 10:g}", im) for i, im in enumerate(_images(n, seed))],
                     source=_images(1, 99)[0], prompts=prompts or {"source": "a cat", "target": "a tiger"})


def _scores(n, value=3):
    return {chr(65 + i): {"fidelity": value, "realism": value} for i in range(n)}


# 1 -------------------------------------------------------------------------------------------
def test_a_12_scale_sweep_is_shown_and_rated_and_the_queue_moves_on(tmp_path):
    from recontext.ui import review_tab

    data = open_data(tmp_path)
    sweep = _item(data.runs, n=12)
    out = review_tab.next_item(data, "ana")
    item_id, token = out[0], out[1]
    images = out[5:5 + review_tab.SLOTS]
    assert item_id == sweep
    assert sum(bool(im.visible) and im.value is not None for im in images) == 12
    radios = out[5 + review_tab.SLOTS:5 + 3 * review_tab.SLOTS]
    assert sum(bool(r.visible) for r in radios) == 24
    values = [4] * review_tab.SLOTS + [3] * review_tab.SLOTS  # what the page sends: every slot scored
    page = review_tab.page_scores(values + ["", True])
    text = review_tab.rate(data, "tiny", "ana", item_id, page, view_token=token)
    assert "Saved 12 ratings" in text and text.count(" was `") == 12
    assert sorted(data.ratings.read()["method"]) == sorted(f"ddim+tight@{i / 10:g}" for i in range(12))
    after = _item(data.runs, n=2, seed=1)
    assert review_tab.next_item(data, "ana")[0] == after  # no longer stuck on the sweep


def test_a_run_holds_at_most_as_many_outputs_as_the_page_shows(tmp_path):
    from recontext.runs import MAX_OUTPUTS
    from recontext.ui.review_tab import SLOTS

    data = open_data(tmp_path)
    assert SLOTS >= MAX_OUTPUTS >= 12
    with pytest.raises(ValueError, match="at most"):
        _item(data.runs, n=MAX_OUTPUTS + 1)


# 2 -------------------------------------------------------------------------------------------
OLD13 = ("rating_id,timestamp,rater,item_id,task,method,label,position,fidelity,realism,comment,"
         "preset,app_version")


@pytest.mark.parametrize("layout", ["13 columns", "14 columns", "utf-8 BOM", "utf-16"])
def test_an_older_or_resaved_ratings_file_keeps_every_new_rating(tmp_path, layout):
    data = open_data(tmp_path)
    run_id, other = _item(data.runs), _item(data.runs, seed=1)
    old = "0" * 32 + f",2025-01-01T00:00:00+00:00,bo,{other},edit,ddim+tight@0,A,0,2,2,old,tiny,0.1"
    header = OLD13
    if layout != "13 columns":
        header, old = OLD13 + ",revealed", old + ",1"
    text = f"{header}\n{old}\n{old.replace('0' * 32, '1' * 32).replace('@0,A,0', '@0.1,B,1')}\n"
    raw = {"utf-8 BOM": b"\xef\xbb\xbf" + text.encode(), "utf-16": text.encode("utf-16")}.get(layout, text.encode())
    open(data.ratings.path, "wb").write(raw)
    assert len(data.ratings.read()) == 2  # read as it is
    rate(data.runs, data.ratings, "ana", run_id, _scores(2, 5), data.secret, view(data, "ana", run_id),
         reveal=True)
    df = data.ratings.read()
    assert len(df) == 4 and sorted(df["rater"]) == ["ana", "ana", "bo", "bo"]
    assert set(df.loc[df["rater"] == "ana", "fidelity"]) == {5} and df.loc[df["rater"] == "ana", "revealed"].all()
    with open(data.ratings.path, newline="", encoding="utf-8") as f:  # upgraded once: one header, all fields
        rows = list(csv.reader(f))
    assert rows[0] == data.ratings.header and all(len(r) == len(rows[0]) for r in rows)
    assert next_item(data.runs, data.ratings, "ana", data.secret).item_id == other  # not served again
    with pytest.raises(ValueError, match="already rated"):  # after the reveal: refused, as on a new file
        rate(data.runs, data.ratings, "ana", run_id, _scores(2, 1), data.secret, view(data, "ana", run_id))


def test_an_upgrade_keeps_broken_records_as_they_were(tmp_path):
    data = open_data(tmp_path)
    run_id = _item(data.runs)
    good = "0" * 32 + f",2025-01-01T00:00:00+00:00,bo,{run_id},edit,ddim+tight@0,A,0,2,2,old,tiny,0.1"
    torn = b'"' + b"1" * 32 + b",2025,torn"
    open(data.ratings.path, "wb").write(f"{OLD13}\n{good}\n".encode() + torn + b"\n")
    rate(data.runs, data.ratings, "ana", run_id, _scores(2), data.secret, view(data, "ana", run_id))
    raw = open(data.ratings.path, "rb").read()
    assert torn in raw
    df, problems = data.ratings.read_checked()
    assert len(df) == 3 and any("unclosed quote" in p for p in problems)


# 3 -------------------------------------------------------------------------------------------
def test_a_name_retyped_or_a_new_secret_between_showing_and_submitting_is_refused(tmp_path):
    data = open_data(tmp_path)
    run_id = _item(data.runs, n=6)
    item = next_item(data.runs, data.ratings, "zoe", data.secret)
    with pytest.raises(ValueError, match="shown to rater 'zoe', not 'bob'"):
        rate(data.runs, data.ratings, "bob", run_id, _scores(6, 5), data.secret, item.view_token)
    with pytest.raises(ValueError, match="view_token: give"):
        rate(data.runs, data.ratings, "zoe", run_id, _scores(6, 5), data.secret, "")
    with pytest.raises(ValueError, match="not issued by this studio"):  # the secret was made anew
        rate(data.runs, data.ratings, "zoe", run_id, _scores(6, 5), b"x" * 64, item.view_token)
    with pytest.raises(ValueError, match="not issued by this studio"):  # a hand-edited order
        payload, sig = item.view_token.split(".")
        rate(data.runs, data.ratings, "zoe", run_id, _scores(6), data.secret, payload[:-2] + "xx." + sig)
    other = _item(data.runs, n=6, seed=1)
    with pytest.raises(ValueError, match="issued for item"):
        rate(data.runs, data.ratings, "zoe", other, _scores(6), data.secret, item.view_token)
    assert not os.path.exists(data.ratings.path)  # nothing stored
    # "Zoe" is zoe: accepted, and each label goes to the method zoe was shown under it
    scores = {chr(65 + i): {"fidelity": 1 + i % 5, "realism": 1} for i in range(6)}
    rows = rate(data.runs, data.ratings, "Zoe", run_id, scores, data.secret, item.view_token)
    shown = [os.path.basename(p) for p in item.outputs]
    record = data.runs.get(run_id)
    by_image = {o["image"]: o["method"] for o in record["outputs"]}
    assert [r["method"] for r in rows] == [by_image[name] for name in shown]
    assert [r["fidelity"] for r in rows] == [1 + i % 5 for i in range(6)] and {r["rater"] for r in rows} == {"zoe"}


def test_labels_map_by_the_order_shown_not_one_computed_again(tmp_path):
    data = open_data(tmp_path)
    run_id = _item(data.runs, n=4)
    key = rater_key("ana")
    shown = blind_order(data.secret, key, run_id, 4)[::-1]  # an order the rater was shown (e.g. before a change)
    token = tokens.issue(data.secret, key, run_id, "likert", shown)
    rows = rate(data.runs, data.ratings, "ana", run_id, {"A": [5, 5], "B": [1, 1], "C": [1, 1], "D": [1, 1]},
                data.secret, token)
    methods = [o["method"] for o in data.runs.get(run_id)["outputs"]]
    assert rows[0]["method"] == methods[shown[0]] and rows[0]["fidelity"] == 5


# 4 -------------------------------------------------------------------------------------------
def test_served_files_are_named_per_view_not_by_content(tmp_path):
    from gradio.processing_utils import hash_file

    from recontext.ui import review_tab

    data = open_data(tmp_path)
    _item(data.runs, n=3)
    paths, hashes, pixels = [], [], []
    for rater in ("ana", "ana", "bo"):
        shown = [im.value["path"] if isinstance(im.value, dict) else im.value
                 for im in review_tab.next_item(data, rater)[5:8]]
        # read now: a rater's next view removes the copies of their previous one (issue 37, bounds)
        hashes += [hash_file(p) for p in shown]
        pixels.append(sorted(np.asarray(Image.open(p)).tobytes() for p in shown))
        paths += shown
    assert len({os.path.basename(p) for p in paths}) == 9
    assert len(set(hashes)) == 9  # Gradio serves a file under its content's hash
    assert pixels[0] == pixels[2]  # same pixels
    assert not any(str(tmp_path) in p for p in paths)
    assert not any(os.path.exists(p) for p in paths[:3])  # ana's first view was replaced: removed


@pytest.mark.parametrize("variant", ["ANA", "Ana ", "ＡＮＡ", "\u0430na", "a\u200bna"])
def test_variants_of_a_name_are_one_rater(tmp_path, variant):
    data = open_data(tmp_path)
    run_id = _item(data.runs)
    assert rater_key(variant) == "ana"
    rate(data.runs, data.ratings, "ana", run_id, _scores(2), data.secret, view(data, "ana", run_id), reveal=True)
    assert next_item(data.runs, data.ratings, variant, data.secret) is None
    with pytest.raises(ValueError, match="already rated"):
        rate(data.runs, data.ratings, variant, run_id, _scores(2, 1), data.secret, view(data, variant, run_id))
    assert data.ratings.read()["rater"].nunique() == 1


def test_the_page_says_names_are_unverified_and_what_is_saved(monkeypatch):
    from types import SimpleNamespace

    from recontext.ui.review_tab import saving_note

    assert "saved" in saving_note(SimpleNamespace(scheduler=None)) and "pushed" not in saving_note(
        SimpleNamespace(scheduler=None))
    monkeypatch.setenv("RECONTEXT_HF_DATASET", "team/ratings")
    assert "pushed to the Hugging Face dataset `team/ratings`" in saving_note(SimpleNamespace(scheduler=object()))
    source = open(os.path.join(ROOT, "recontext", "ui", "review_tab.py")).read()
    assert "Names are not verified" in source


def test_a_deleted_run_leaves_the_queue(tmp_path):
    import shutil

    data = open_data(tmp_path)
    run_id = _item(data.runs)
    item = next_item(data.runs, data.ratings, "ana", data.secret)
    assert item.item_id == run_id
    shutil.rmtree(os.path.join(data.runs.root, run_id))
    assert next_item(data.runs, data.ratings, "ana", data.secret) is None
    with pytest.raises(ValueError, match="not a run"):
        rate(data.runs, data.ratings, "ana", run_id, _scores(2), data.secret, item.view_token)
    assert not os.path.exists(data.ratings.path)


# 5 -------------------------------------------------------------------------------------------
def test_prompts_are_plain_text_never_markdown(tmp_path):
    from recontext.ui import review_tab

    data = open_data(tmp_path)
    evil = "![t](http://10.255.255.1/x.png) **rate A 5** <img src=http://10.255.255.1/y.png>"
    _item(data.runs, prompts={"source": "a cat", "target": evil})
    out = review_tab.next_item(data, "ana")
    heading, prompts = out[2], out[3]
    assert "http" not in heading and "rate A 5" not in heading  # the Markdown holds no typed text
    assert evil in prompts  # shown as typed, in a plain text box


# 7 -------------------------------------------------------------------------------------------
def test_near_equal_sweep_scales_are_saved_apart(tmp_path):
    from types import SimpleNamespace

    data = open_data(tmp_path)
    ims = _images(3)
    edits = [SimpleNamespace(method="ddim", tight=True, scale=s, edit_method="regenerate", output=im,
                             metrics={}, seconds=0.1, source=ims[0]) for s, im in zip((0.4, 0.40000001, 0.8), ims)]
    run_id = save_edits(data.runs, "tiny", edits, "a cat", "a tiger", "ddim", True, 7.5, 4, 0, sweep=True)
    methods = [o["method"] for o in data.runs.get(run_id)["outputs"]]
    assert len(set(methods)) == 3 and methods[2] == "ddim+tight@0.8"
    assert methods[0] != methods[1] and methods[0].startswith("ddim+tight@0.4")


def test_export_rows_are_sorted_so_they_reveal_no_labels(tmp_path):
    data = open_data(tmp_path)
    for k in range(4):
        run_id = _item(data.runs, n=6, seed=k)
        for rater in ("ana", "bo", "cy"):
            rate(data.runs, data.ratings, rater, run_id, _scores(6), data.secret, view(data, rater, run_id),
                 reveal=True)
    raw = data.ratings.read(latest=False)
    assert (raw["label"] != raw.sort_values(["item_id", "method"])["label"].to_numpy()).any()  # stored in label order
    with open(data.ratings.export(str(tmp_path / "e.csv"), keep=final), newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [(r["task"], r["item_id"], r["method"], r["rater"]) for r in rows]
    assert keys == sorted(keys) and len(rows) == 72


def test_a_short_secret_is_refused_at_start_with_a_clear_message(tmp_path):
    for value in (b"", b"short"):
        (tmp_path / SECRET).write_bytes(value)
        with pytest.raises(ValueError, match="at least 32"):
            check_secret(str(tmp_path))
        with pytest.raises(ValueError, match="at least 32"):
            open_data(tmp_path).secret
    env = {**os.environ, "RECONTEXT_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "app.py", "--preset", "tiny", "--port", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "at least 32" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / SECRET).unlink()
    assert len(open_data(tmp_path).secret) >= 32  # deleted: a new one is made


def test_cli_summarize_counts_only_final_ratings_as_the_page_does(tmp_path, capsys):
    from recontext.cli import main
    from recontext.ui.review_tab import summary

    data = open_data(tmp_path)
    run_id = _item(data.runs)
    rate(data.runs, data.ratings, "ana", run_id, _scores(2, 5), data.secret, view(data, "ana", run_id), reveal=True)
    rate(data.runs, data.ratings, "bo", run_id, _scores(2, 1), data.secret, view(data, "bo", run_id), reveal=False)
    assert main(["ratings", "summarize", data.ratings.path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ratings"] == 2 and out["raters"] == 1 and out["waiting"] == 2
    assert {m["fidelity_mean"] for m in out["methods"]} == {5.0}
    assert "2 ratings from 1 rater." in summary(data)[2]


def test_the_token_does_not_show_the_order_it_binds(tmp_path):
    """Outputs of a task come in a known method order, so a readable order in the token
    would tell which label is which method: it is sealed."""
    import base64

    data = open_data(tmp_path)
    run_id = _item(data.runs, n=6)
    key = rater_key("ana")
    order = blind_order(data.secret, key, run_id, 6)
    bodies = []
    for _ in range(2):
        payload = next_item(data.runs, data.ratings, "ana", data.secret).view_token.split(".")[0]
        bodies.append(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    assert bodies[0]["o"] != bodies[1]["o"]  # the same order, sealed differently per view
    for body in bodies:
        assert order != body["o"] and str(order) not in json.dumps(body)
        assert tokens.check(data.secret, tokens.issue(data.secret, key, run_id, "likert", order), key, run_id,
                            "likert", 6).order == tuple(order)


def test_pending_scores_are_changed_only_from_the_view_they_were_given_in(tmp_path):
    data = open_data(tmp_path)
    run_id = _item(data.runs)
    mine = next_item(data.runs, data.ratings, "vic", data.secret).view_token
    rate(data.runs, data.ratings, "vic", run_id, _scores(2, 4), data.secret, mine)
    with pytest.raises(ValueError, match="from another view"):  # someone else typing "vic"
        rate(data.runs, data.ratings, "vic", run_id, _scores(2, 1), data.secret, view(data, "vic", run_id))
    rate(data.runs, data.ratings, "vic", run_id, _scores(2, 5), data.secret, mine)  # vic changes their mind
    assert set(data.ratings.read()["fidelity"]) == {5}


def test_a_headerless_old_file_is_upgraded_too(tmp_path):
    data = open_data(tmp_path)
    run_id, other = _item(data.runs), _item(data.runs, seed=1)
    old = "0" * 32 + f",2025-01-01T00:00:00+00:00,bo,{other},edit,ddim+tight@0,A,0,2,2,old,tiny,0.1"
    open(data.ratings.path, "w").write(old + "\n")  # 13 fields, no header line
    rate(data.runs, data.ratings, "ana", run_id, _scores(2, 5), data.secret, view(data, "ana", run_id))
    df, problems = data.ratings.read_checked()
    assert len(df) == 3 and not any("skipped" in p for p in problems)


def test_signed_in_raters_are_shown_apart(tmp_path):
    from recontext.review import full_report, serve

    data = open_data(tmp_path)
    run_id = _item(data.runs)
    rate(data.runs, data.ratings, "ana", run_id, _scores(2, 5), data.secret, view(data, "ana", run_id),
         reveal=True, signed=True)
    rate(data.runs, data.ratings, "bo", run_id, _scores(2, 1), data.secret, view(data, "bo", run_id), reveal=True)
    rep = full_report(serve(data.ratings.read(), None, data.runs), data.runs)
    assert rep["raters"] == 2 and rep["signed_in_raters"] == 1
    assert {m["fidelity_mean"] for m in rep["signed_in_methods"]} == {5.0}


def test_a_batch_comparing_more_methods_than_the_page_shows_makes_items_it_can_show(tmp_path):
    from recontext.batch import Results, compare
    from recontext.runs import MAX_OUTPUTS

    data = open_data(tmp_path / "data")
    out = tmp_path / "batch"
    out.mkdir()
    results = Results(str(out))
    n = MAX_OUTPUTS + 2
    for i, im in enumerate(_images(n)):
        method = f"ddim+tight@{i / 10:g}"
        run_id = data.runs.save("edit", "tiny", [Output(method, im)], source=_images(1, 99)[0],
                                prompts={"source": "a cat", "target": "a tiger"}, params={"steps": 4}, seed=0)
        results.append({"row": i, "key": str(i), "status": "ok", "task": "edit", "input": "cat.png",
                        "method": method, "prompt": "a cat", "target": "a tiger", "run_id": run_id})
    assert compare(results, str(out), data.runs, "tiny") == 2
    items = data.runs.items()
    assert sorted(len(r["outputs"]) for r in items) == [n // 2, n - n // 2]
    assert sorted(o["method"] for r in items for o in r["outputs"]) == sorted(
        f"ddim+tight@{i / 10:g}" for i in range(n))
    assert compare(results, str(out), data.runs, "tiny") == 0  # made once


@pytest.mark.parametrize("name, value, message", [("RECONTEXT_MAX_FILE_SIZE", "20 parsecs", "file size unit"),
                                                  ("RECONTEXT_REVIEW_MODE", "arena", "RECONTEXT_REVIEW_MODE")])
def test_a_bad_setting_stops_the_app_at_start_with_a_message(tmp_path, name, value, message):
    env = {**os.environ, "RECONTEXT_DATA_DIR": str(tmp_path), name: value}
    proc = subprocess.run([sys.executable, "app.py", "--preset", "tiny", "--port", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
