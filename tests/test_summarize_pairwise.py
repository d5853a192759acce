"""`ratings summarize` prints the pairwise votes' Bradley–Terry table too, not only with
--json (issue 38)."""

from recontext.cli import main
from recontext.data import open_data
from recontext.review import next_pair, vote
from test_review_pairwise import _closer, _inversion_items


def test_summarize_prints_the_pairwise_table(tmp_path, capsys):
    data = open_data(tmp_path)
    _inversion_items(data, n_items=2)
    while (pair := next_pair(data.runs, data.votes, "ana", data.secret)) is not None:
        vote(data.runs, data.votes, "ana", pair.item_id, pair.view_token, _closer(pair), data.secret)
    open(data.ratings.path, "a").close()
    assert main(["ratings", "summarize", data.ratings.path]) == 0
    out = capsys.readouterr().out
    table = out.split("pairwise votes: Bradley-Terry strength")[1]
    for column in ("method", "strength", "low", "high", "votes"):
        assert column in table
    assert all(m in table for m in ("ddim", "ddim+tight", "renoise+tight", "edit-friendly"))


def test_summarize_says_when_there_are_no_votes(tmp_path, capsys):
    data = open_data(tmp_path)
    open(data.ratings.path, "a").close()
    assert main(["ratings", "summarize", data.ratings.path]) == 0
    assert "no pairwise votes yet" in capsys.readouterr().out
