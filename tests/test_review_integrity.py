"""Ratings you can trust: the blind order needs the deployment's secret, a rating after
the reveal is refused, one broken record costs one record, a failed append leaves the file
as it was, formula-like names compare as typed, and a read-only folder still serves."""

import builtins
import csv
import errno
import hashlib
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from recontext.data import open_data
from recontext.errors import StorageError
from recontext.review import RatingStore, blind_order, next_item, rate
from recontext.runs import Output
from review_helpers import view

METHODS = ["ddim", "ddim+tight", "renoise", "renoise+tight", "edit-friendly", "edit-friendly+tight"]


def _item(runs, n=6):
    rng = np.random.default_rng(n)
    images = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]
    return runs.save("inversion", "tiny", [Output(m, im) for m, im in zip(METHODS, images)],
                     prompts={"caption": "a cat"}, seed=0)


def _scores(n, value=3):
    return {label: {"fidelity": value, "realism": value} for label in "ABCDEF"[:n]}


def test_two_deployments_show_one_rater_different_orders(tmp_path):
    one = open_data(tmp_path / "one")
    run_id = _item(one.runs)
    shutil.copytree(os.path.join(one.runs.root, run_id), tmp_path / "two" / "runs" / run_id)
    two = open_data(tmp_path / "two")
    assert one.secret != two.secret and len(one.secret) >= 32
    orders = {}
    for rater in ("ana", "bo", "cy"):
        a = next_item(one.runs, one.ratings, rater, one.secret)
        b = next_item(two.runs, two.ratings, rater, two.secret)
        assert a.item_id == b.item_id == run_id
        orders[rater] = ([os.path.basename(p) for p in a.outputs], [os.path.basename(p) for p in b.outputs])
    # 6 outputs: the same order by chance is 1 in 720 per rater; all three is impossible in practice
    assert any(x != y for x, y in orders.values())
    # the old, unkeyed order (sha256 of rater, item, index) predicts nothing now
    unkeyed = sorted(range(6), key=lambda i: hashlib.sha256(f"ana\n{run_id}\n{i}".encode()).hexdigest())
    keyed = blind_order(one.secret, "ana", run_id, 6)
    assert keyed == blind_order(open_data(tmp_path / "one").secret, "ana", run_id, 6)  # stable
    assert unkeyed != keyed or unkeyed != blind_order(two.secret, "ana", run_id, 6)


def test_served_ratings_hold_no_labels_and_the_secret_is_never_pushed(tmp_path):
    data = open_data(tmp_path)
    run_id = _item(data.runs)
    rate(data.runs, data.ratings, "ana", run_id, _scores(6), data.secret, view(data, "ana", run_id))
    out = data.ratings.export(str(tmp_path / "export.csv"))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and "label" not in rows[0] and "position" not in rows[0]
    assert data.secret.decode() not in open(out).read()


def test_second_rating_before_the_reveal_replaces_after_it_is_refused(tmp_path):
    data = open_data(tmp_path)
    run_id = _item(data.runs, n=2)
    ana = view(data, "ana", run_id)  # the view ana rates from (a page, or an API client's token)
    rate(data.runs, data.ratings, "ana", run_id, _scores(2, 2), data.secret, ana, reveal=False)
    rate(data.runs, data.ratings, "ana", run_id, _scores(2, 4), data.secret, ana, reveal=True)
    df = data.ratings.read()
    assert len(df) == 2 and set(df["fidelity"]) == {4}  # the second replaced the first
    with pytest.raises(ValueError, match="already rated .* seen which method"):
        rate(data.runs, data.ratings, "ana", run_id, _scores(2, 1), data.secret, ana, reveal=False)
    assert set(data.ratings.read()["fidelity"]) == {4} and len(data.ratings.read(latest=False)) == 4
    bo = view(data, "bo", run_id)
    rate(data.runs, data.ratings, "bo", run_id, _scores(2, 1), data.secret, bo)  # others still can


def test_a_rating_that_may_still_change_is_not_served_until_it_is_final(tmp_path, monkeypatch):
    """The loophole: rate without the reveal, download the ratings, match your own scores
    to methods, rate again knowing them. Served data holds only final ratings; once final,
    a rating can no longer be replaced."""
    from recontext.review import final, queue

    data = open_data(tmp_path)
    run_id = _item(data.runs, n=2)
    ana = view(data, "ana", run_id)  # the view ana rates from (a page, or an API client's token)
    rate(data.runs, data.ratings, "ana", run_id, {"A": [1, 1], "B": [5, 5]}, data.secret, ana, reveal=False)
    rate(data.runs, data.ratings, "bo", run_id, _scores(2, 3), data.secret, view(data, "bo", run_id), reveal=True)

    def served():
        with open(data.ratings.export(str(tmp_path / "export.csv"), keep=final), newline="") as f:
            return sorted({r["rater"] for r in csv.DictReader(f)})
    assert served() == ["bo"]  # ana's scores could still change: not served
    rate(data.runs, data.ratings, "ana", run_id, {"A": [2, 2], "B": [4, 4]}, data.secret, ana, reveal=False)
    assert sorted(data.ratings.read().query("rater == 'ana'")["fidelity"]) == [2, 4]  # replaced
    monkeypatch.setattr(queue, "OPEN_SECONDS", 0)  # time passes: ana's rating is final
    assert served() == ["ana", "bo"]
    with pytest.raises(ValueError, match="is final"):
        rate(data.runs, data.ratings, "ana", run_id, _scores(2, 3), data.secret, ana, reveal=False)
    assert sorted(data.ratings.read().query("rater == 'ana'")["fidelity"]) == [2, 4]


def test_formula_like_rater_gets_a_new_item_and_names_stay_apart(tmp_path):
    data = open_data(tmp_path)
    first, second = _item(data.runs, n=2), _item(data.runs, n=3)
    for name in ("=x", "-x", "'-x"):
        item = next_item(data.runs, data.ratings, name, data.secret)
        rate(data.runs, data.ratings, name, item.item_id, _scores(len(item.outputs)), data.secret,
             item.view_token)
        assert next_item(data.runs, data.ratings, name, data.secret).item_id != item.item_id
    df = data.ratings.read()
    assert sorted(df["rater"].unique()) == ["'-x", "-x", "=x"]
    assert df.groupby("rater")["item_id"].nunique().tolist() == [1, 1, 1]
    assert {first, second} >= set(df["item_id"])


def _good_store(path, n=6):
    store = RatingStore(path)
    for i in range(n):
        store.add(rater=f"r{i}", item_id=f"item{i}", task="inversion", method="ddim",
                  fidelity=1 + i % 5, realism=2, comment=f"note {i}")
    return store


def test_an_unclosed_quote_costs_one_record_not_the_rest(tmp_path):
    path = tmp_path / "r.csv"
    store = _good_store(path, 200)
    lines = path.read_bytes().split(b"\n")
    lines[50] = lines[50].replace(b"note 49", b'"note 49 torn')  # a quote that never closes
    path.write_bytes(b"\n".join(lines))
    df, problems = store.read_checked()
    assert len(df) == 199 and "r49" not in set(df["rater"])
    assert any("1 record" in p and "unclosed quote" in p for p in problems)


def test_bad_scores_missing_header_and_latin1_are_reported_not_fatal(tmp_path):
    path = tmp_path / "r.csv"
    store = _good_store(path, 4)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b",2,2,", b",2,9,", 1) if b",2,2," in lines[2] else lines[2]
    lines[3] = lines[3].replace(b"note 2", "note 2 café".encode("latin-1"))
    path.write_bytes(b"\n".join(lines[1:]))  # the header is gone too
    df, problems = store.read_checked()
    text = "; ".join(problems)
    assert "no header" in text and "not UTF-8" in text
    assert "realism outside" in text or "fidelity outside" in text
    assert len(df) == 3 and "r2" in set(df["rater"])  # the Latin-1 record is kept
    assert df["realism"].between(1, 5).all() and df["fidelity"].between(1, 5).all()


def test_latin1_byte_breaks_neither_summary_nor_queue(tmp_path):
    from recontext.ui.review_tab import summary

    data = open_data(tmp_path)
    run_id = _item(data.runs, n=2)
    _item(data.runs, n=2)
    rate(data.runs, data.ratings, "ana", run_id, _scores(2), data.secret, view(data, "ana", run_id),
         comment="très bien",
         reveal=True)
    raw = open(data.ratings.path, "rb").read().replace("très".encode(), "très".encode("latin-1"))
    open(data.ratings.path, "wb").write(raw)
    table, _, text, _, csv_path, _, _ = summary(data)
    assert len(table) == 2 and "not UTF-8" in text and csv_path.endswith(".csv")
    assert next_item(data.runs, data.ratings, "ana", data.secret).item_id != run_id


def test_the_page_draws_the_summary_from_the_api_report_as_it_comes_back(tmp_path):
    """Refresh computes the report once (the /summary endpoint) and the page draws it from
    what came back through the JSON component, where a one-rating interval's NaN is null."""
    import gradio as gr

    from recontext.ui.review_tab import summary, summary_report, summary_view

    data = open_data(tmp_path)
    run_id = _item(data.runs, n=2)
    rate(data.runs, data.ratings, "ana", run_id, _scores(2), data.secret, view(data, "ana", run_id), reveal=True)
    report, csv = summary_report(data)
    back = gr.JSON().postprocess(report).root
    assert any(v is None for row in back["methods"] for v in row.values())  # the one-rating intervals
    table, chart, text, _, shown_csv, _, _ = summary_view(back, csv)
    direct = summary(data)
    assert table.equals(direct[0]) and text == direct[2] and shown_csv == csv and chart is not None


def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    store = _good_store(path, 3)
    before = path.read_bytes()
    real_write = os.write
    calls = []

    def full_disk(fd, data):  # the first chunk lands, then the disk is full
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StorageError, match="No space left.*nothing was written"):
        store.add_many([dict(rater="bo", item_id="x", task="inversion", method=m, fidelity=3,
                             realism=3, comment='a "quoted" note') for m in METHODS])
    monkeypatch.undo()
    assert len(calls) == 2 and path.read_bytes() == before
    assert len(store.read()) == 3


def _read_only(monkeypatch, root):
    """Make every write under `root` fail as on a read-only filesystem (chmod alone does
    not stop root, who runs these tests on CI)."""
    root = str(root)
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def inside(path):
        return os.path.abspath(os.fspath(path)).startswith(root)

    def ro_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and inside(file) and set(mode) & set("wax+"):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    def ro_os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & writes:
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_os_open(path, flags, *args, **kwargs)

    def ro_mkdir(path, *args, **kwargs):
        if inside(path):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", ro_open)
    monkeypatch.setattr(os, "open", ro_os_open)
    monkeypatch.setattr(os, "mkdir", ro_mkdir)


def test_read_only_folder_serves_next_item_and_summary_and_refuses_ratings(tmp_path, monkeypatch):
    from recontext.ui import review_tab

    data = open_data(tmp_path / "data")
    first, second = _item(data.runs, n=2), _item(data.runs, n=2)
    rate(data.runs, data.ratings, "ana", first, _scores(2), data.secret, view(data, "ana", first), reveal=True)
    before = open(data.ratings.path, "rb").read()
    assert not os.path.exists(data.ratings.path + ".lock")  # locks live in the temp folder (recontext.locks)
    _read_only(monkeypatch, tmp_path / "data")
    data = open_data(tmp_path / "data")  # a fresh process on the read-only folder
    assert review_tab.next_item(data, "ana")[0] == second
    table, _, text, *_ = review_tab.summary(data)
    assert len(table) == 2 and "2 ratings from 1 rater." in text
    with pytest.raises(StorageError, match="Read-only.*nothing was written"):
        review_tab.rate(data, "tiny", "bo", first, _scores(2), view_token=view(data, "bo", first))
    monkeypatch.undo()
    assert open(data.ratings.path, "rb").read() == before


def test_on_a_space_with_sign_in_the_rater_is_the_account(monkeypatch):
    from types import SimpleNamespace

    from recontext.ui.review_tab import signed_rater

    assert signed_rater("ana", None) == "ana"
    monkeypatch.setenv("OAUTH_CLIENT_ID", "x")
    assert signed_rater("someone-else", SimpleNamespace(username="ana")) == "ana"
    with pytest.raises(ValueError, match="sign in"):
        signed_rater("ana", None)
