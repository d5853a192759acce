"""What a rater sees: the next item to rate, its outputs in a blind order, and the
ratings of one submitted item. Works on a `RunStore` and a `RatingStore`; no torch, no
gradio.

The blind order is keyed by the deployment's secret (see `recontext.data`): without it,
nothing a client can see (the ratings CSV, the item ids, its own past orders) tells the
order another rater, or the same rater on another item, will get.

A rater's scores for an item may be replaced until they are *final*: once the rater has
seen the item's methods (`reveal`), or `OPEN_SECONDS` after their last rating of it. Only
final ratings are served (summary, chart, CSV): served scores would tell a rater which of
their labels was which method, and a rating that can still change would then no longer be
blind.

What a rater was shown is bound to what they submit by a signed view token (see
`token`): the labels are mapped to methods by the order in the token, and a token for
another rater, item or secret is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import secrets
import string
import time
from dataclasses import dataclass

import pandas as pd

from . import sampling, token as tokens
from .names import rater_key
from .store import text_field
from .votes import CHOICES

LABELS = string.ascii_uppercase
TARGET = 3  # raters wanted per item before it stops being preferred ($RECONTEXT_REVIEW_TARGET)
OPEN_SECONDS = 600  # how long a rating made without the reveal may still be replaced


def blind_order(secret: bytes, rater: str, item_id: str, n: int) -> list[int]:
    """The outputs' indices in the order this rater sees them: shuffled per rater and
    item by a keyed hash (HMAC-SHA256 under the deployment's secret), the same every time
    they look."""
    if not secret:
        raise ValueError("the blind order needs the deployment's secret")

    def key(i: int) -> str:
        return hmac.new(secret, f"{rater}\n{item_id}\n{i}".encode(), hashlib.sha256).hexdigest()
    return sorted(range(n), key=key)


def target_raters() -> int:
    """Raters wanted per item: `$RECONTEXT_REVIEW_TARGET`, default 3."""
    try:
        return max(1, int(os.environ.get("RECONTEXT_REVIEW_TARGET", TARGET)))
    except ValueError:
        return TARGET


@dataclass
class BlindItem:
    item_id: str
    task: str
    source: str | None       # path of the source PNG (photo or garment), if any
    prompts: dict            # what the generation was asked for (no method names)
    outputs: list[str]       # output PNG paths in blind order; labelled A, B, C…
    ratings_so_far: int      # distinct raters who rated this item
    remaining: int           # items this rater has not rated, this one included
    view_token: str = ""     # signed: this rater, this item, this order (required by `rate`)


def next_item(runs, ratings, rater: str, secret: bytes, target: int | None = None,
              votes=None) -> BlindItem | None:
    """An item `rater` has not rated yet, fewest raters first (items that reached `target`
    come last), oldest first among equals. None when they have rated every item. With
    `votes`, an item they compared in pairwise votes is not served (see `seen_items`)."""
    rater = _rater(rater)
    target = target or target_raters()
    df, _ = ratings.read_checked()
    done = set(df.loc[df["rater"] == rater, "item_id"])
    if votes is not None:
        done |= voted_items(votes.read_checked(latest=False)[0], rater)
    counts = df.groupby("item_id")["rater"].nunique().to_dict() if len(df) else {}
    todo = [r for r in runs.items() if r["run_id"] not in done]
    if not todo:
        return None
    todo.sort(key=lambda r: (min(counts.get(r["run_id"], 0), target), r["created"], r["run_id"]))
    record = todo[0]
    order = blind_order(secret, rater, record["run_id"], len(record["outputs"]))
    path = lambda name: f"{record['dir']}/{name}"  # noqa: E731
    return BlindItem(
        item_id=record["run_id"], task=record["task"],
        source=path(record["source"]) if record.get("source") else None,
        prompts=record.get("prompts", {}),
        outputs=[path(record["outputs"][i]["image"]) for i in order],
        ratings_so_far=counts.get(record["run_id"], 0), remaining=len(todo),
        view_token=tokens.issue(secret, rater, record["run_id"], "likert", order))


def rate(runs, ratings, rater: str, item_id: str, scores, secret: bytes, view_token: str = "",
         comment: str = "", preset: str = "", reveal: bool = False, signed: bool = False,
         votes=None) -> list[dict]:
    """Record `scores` for one item: {label: (fidelity, realism)} (or {label: {"fidelity":
    …, "realism": …}}, or a list in label order), labels as `rater` saw them in the view
    `view_token` describes (from `next_item`). All outputs must be scored; nothing is
    written unless every score is valid and the token is this rater's for this item. A
    rater may rate an item again (the latest rating counts) until they have seen its
    methods (`reveal`); after that a new rating is refused. With `votes`, an item the
    rater compared in pairwise votes (which named its methods) is refused. Returns the rows
    written, with their methods."""
    rater = _rater(rater)
    record = runs.get(item_id)
    n = len(record["outputs"])
    if n < 2:
        raise ValueError(f"item_id {item_id!r} is not a review item (it has one output)")
    pairs = _scores(scores, n)
    view = tokens.check(secret, view_token, rater, item_id, "likert", n)
    if len(view.order) != n:
        raise ValueError(f"view_token does not match this item's outputs any more. {tokens.NEW_VIEW}")
    seconds = max(0.0, time.time() - view.issued)
    rows = [dict(rater=rater, item_id=item_id, task=record["task"],
                 method=record["outputs"][i]["method"], fidelity=fid, realism=real,
                 label=LABELS[pos], position=pos, comment=comment or "",
                 preset=preset or record.get("preset", ""), revealed=bool(reveal),
                 seconds=seconds, signed=signed, view_id=view.view_id)
            for pos, (i, (fid, real)) in enumerate(zip(view.order, pairs))]

    def not_seen(df):  # run under the store's lock, so two submissions cannot both pass
        if votes is not None and item_id in voted_items(votes.read_checked(latest=False)[0], rater):
            raise ValueError(CROSS_MODE.format(item=item_id, did="compared its outputs in pairwise votes",
                                               then="rating it now"))
        mine = df[(df["rater"] == rater) & (df["item_id"] == item_id)]
        if mine["revealed"].any():
            raise ValueError(f"you have already rated item {item_id!r} and seen which method made "
                             "each output: a second rating would not be blind, so it is refused. "
                             "Press Next item for another one.")
        views = set(mine["view_id"]) - {""}
        if views and view.view_id not in views:  # e.g. someone else typing this name
            raise ValueError(f"you rated item {item_id!r} from another view (another page or "
                             "token): scores may be changed only from the view they were given in. "
                             "Press Next item for another one.")
        if len(mine) and final(mine).any():
            raise ValueError(f"you rated item {item_id!r} more than {OPEN_SECONDS / 60:g} minutes ago: "
                             "that rating is final (the summary shows it, so a new one would not be "
                             "blind). Press Next item for another one.")
    return ratings.add_many(rows, check=not_seen)


# -- pairwise votes --------------------------------------------------------------------------
@dataclass
class BlindPair:
    item_id: str
    task: str
    source: str | None
    prompts: dict
    outputs: list[str]       # [A, B]: the two outputs' PNG paths at random positions
    view_token: str


CROSS_MODE = ("you already {did} for item {item!r}, which showed you which method made some of "
              "its outputs: {then} would not be blind, so it is refused. Press Next item (or Next "
              "pair) for another one.")


def pair_key(item_id: str, method_a: str, method_b: str) -> tuple:
    """One key for a pair of methods on an item, whichever was shown as A."""
    return (item_id, min(method_a, method_b), max(method_a, method_b))


def voted_items(votes_df: pd.DataFrame, rater: str) -> set:
    """Items `rater` has voted on (any pair): not served to them blind in Likert mode."""
    if votes_df is None or not len(votes_df):
        return set()
    return set(votes_df.loc[votes_df["rater"] == rater, "item_id"])


def rated_items(ratings_df: pd.DataFrame, rater: str) -> set:
    """Items `rater` has rated in Likert mode (revealed or not): not served to them blind
    as pairs (a vote names the two methods, which would map their Likert labels)."""
    if ratings_df is None or not len(ratings_df):
        return set()
    return set(ratings_df.loc[ratings_df["rater"] == rater, "item_id"])


def already_voted(votes_df: pd.DataFrame, rater: str, item_id: str, method_a: str, method_b: str) -> bool:
    """Whether `rater` has voted on this item's pair of methods (in either order, from any
    view): one vote per rater, item and method pair; the first counts."""
    if votes_df is None or not len(votes_df):
        return False
    key = pair_key(item_id, method_a, method_b)
    mine = votes_df[(votes_df["rater"] == rater) & (votes_df["item_id"] == item_id)]
    return any(pair_key(item_id, a, b) == key for a, b in zip(mine["method_a"], mine["method_b"]))


def eligible_pairs(runs, votes_df: pd.DataFrame, rater: str, ratings_df: pd.DataFrame | None = None,
                   gold: dict | None = None) -> list[tuple]:
    """Every pair `rater` may be shown blind, as (run record, i, j) with i < j output
    indices: not one they voted on already (one vote per rater, item and method pair), not
    on an item they rated in Likert mode (cross-mode: `rated_items`), and on a gold item
    only its gold pair (`gold`: {item_id: {"top", "bottom"}}). A sampler picks among these."""
    rater = _rater(rater)
    mine = set()
    if votes_df is not None and len(votes_df):
        for row in votes_df[votes_df["rater"] == rater].itertuples():
            mine.add(pair_key(row.item_id, row.method_a, row.method_b))
    skip = rated_items(ratings_df, rater)
    out = []
    for record in runs.items():
        if record["run_id"] in skip:
            continue
        methods = [o["method"] for o in record["outputs"]]
        answer = (gold or {}).get(record["run_id"])
        for i, j in itertools.combinations(range(len(methods)), 2):
            if pair_key(record["run_id"], methods[i], methods[j]) in mine:
                continue
            if answer and {methods[i], methods[j]} != {answer["top"], answer["bottom"]}:
                continue
            out.append((record, i, j))
    return out


def fewest_votes(candidates: list[tuple], votes_df: pd.DataFrame) -> tuple:
    """The default choice among `eligible_pairs`: the pair with the fewest votes, the
    oldest item among equals."""
    counts: dict = {}
    if votes_df is not None and len(votes_df):
        for key in map(pair_key, votes_df["item_id"], votes_df["method_a"], votes_df["method_b"]):
            counts[key] = counts.get(key, 0) + 1

    def rank(c):
        record, i, j = c
        key = pair_key(record["run_id"], record["outputs"][i]["method"], record["outputs"][j]["method"])
        return (counts.get(key, 0), record["created"], record["run_id"], i, j)
    return min(candidates, key=rank)


def next_pair(runs, votes, rater: str, secret: bytes, ratings=None, choose=None) -> BlindPair | None:
    """Two outputs of one item that `rater` may compare blind (`eligible_pairs`), chosen by
    `choose(candidates, votes_df)` (default `fewest_votes`), at random positions (A or B,
    drawn per showing and logged with the vote). With `ratings`, items the rater rated in
    Likert mode are left out. None when nothing is left for them."""
    from .gold import answers_for

    rater = _rater(rater)
    df, _ = votes.read_checked(latest=False)
    rdf = ratings.read_checked(latest=False)[0] if ratings is not None else None
    candidates = eligible_pairs(runs, df, rater, rdf, gold=answers_for(runs))
    if not candidates:
        return None
    if choose is not None:
        record, i, j = choose(candidates, df)
    else:  # which pair: $RECONTEXT_PAIR_SAMPLING (uniform or active), counting each rater's first vote
        best = sampling.choose([sampling.Candidate(r["task"], r["run_id"], r["outputs"][a]["method"],
                                                   r["outputs"][b]["method"], (r["created"], r["run_id"], a, b),
                                                   (r, a, b)) for r, a, b in candidates],
                               votes.read_checked()[0], rater)
        if best is None:
            return None
        record, i, j = best
    order = [i, j] if secrets.randbelow(2) else [j, i]
    path = lambda name: f"{record['dir']}/{name}"  # noqa: E731
    return BlindPair(item_id=record["run_id"], task=record["task"],
                     source=path(record["source"]) if record.get("source") else None,
                     prompts=record.get("prompts", {}),
                     outputs=[path(record["outputs"][k]["image"]) for k in order],
                     view_token=tokens.issue(secret, rater, record["run_id"], "pair", order))


def vote(runs, votes, rater: str, item_id: str, view_token: str, choice: str, secret: bytes,
         preset: str = "", signed: bool = False, ratings=None) -> dict:
    """Record one pairwise vote on the pair the view `view_token` showed: `A`, `B`, `tie`
    or `both_bad`. One vote per rater, item and method pair, however many views of it they
    were given: decided under the votes' lock, the first counts and later ones are refused.
    With `ratings`, an item the rater rated in Likert mode is refused (cross-mode).
    Returns the row written, with both methods."""
    rater = _rater(rater)
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
    record = runs.get(item_id)
    n = len(record["outputs"])
    view = tokens.check(secret, view_token, rater, item_id, "pair", n)
    if len(view.order) != 2:
        raise ValueError(f"view_token is not for a pair of outputs. {tokens.NEW_VIEW}")
    a, b = view.order
    row = dict(rater=rater, item_id=item_id, task=record["task"],
               method_a=record["outputs"][a]["method"], method_b=record["outputs"][b]["method"],
               output_a=a, output_b=b, choice=choice, seconds=max(0.0, time.time() - view.issued),
               preset=preset or record.get("preset", ""), signed=signed, view_id=view.view_id)

    def once(df):  # under the votes' lock: two submissions cannot both pass
        if (df["view_id"] == view.view_id).any():
            raise ValueError("this pair was already voted on in this view: press Next pair for another one")
        if already_voted(df, rater, item_id, row["method_a"], row["method_b"]):
            raise ValueError(f"you already voted on this pair of outputs of item {item_id!r} (from another "
                             "view): one vote per rater and pair counts, the first. Press Next pair "
                             "for another one.")
        if ratings is not None and item_id in rated_items(ratings.read_checked(latest=False)[0], rater):
            raise ValueError(CROSS_MODE.format(item=item_id, did="rated its outputs in Likert mode",
                                               then="voting on its outputs now"))
    return votes.add_many([row], check=once)[0]


def final(df: pd.DataFrame) -> pd.Series:
    """Which rows are final (see the module's text): their rater has seen the item's
    methods, or last rated it more than `OPEN_SECONDS` ago. A row whose timestamp cannot
    be read counts as old."""
    if not len(df):
        return pd.Series(False, index=df.index, dtype=bool)
    key = [df["rater"], df["item_id"]]
    last = pd.to_datetime(df["timestamp"], utc=True, errors="coerce", format="ISO8601")
    last = last.groupby(key).transform("max")
    seen = df["revealed"].astype(bool).groupby(key).transform("any")
    cutoff = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=OPEN_SECONDS)
    return (seen | last.isna() | (last <= cutoff)).astype(bool)


def _scores(scores, n: int) -> list[tuple]:
    """(fidelity, realism) per label A, B, … for `n` outputs, from a mapping or a list."""
    labels = LABELS[:n]
    if isinstance(scores, dict):
        unknown = sorted(set(map(str, scores)) - set(labels))
        if unknown:
            raise ValueError(f"scores: this item has outputs {', '.join(labels)}; "
                             f"no output {', '.join(unknown)}")
        scores = [scores.get(label) for label in labels]
    elif not isinstance(scores, (list, tuple)):
        raise ValueError("scores: give {label: {fidelity, realism}} for every output, e.g. "
                         '{"A": {"fidelity": 4, "realism": 5}, "B": …}')
    if len(scores) < n:
        raise ValueError(f"scores: give fidelity and realism for all {n} outputs, got {len(scores)}")
    pairs = []
    for label, s in zip(labels, scores):
        if isinstance(s, dict):
            s = (s.get("fidelity"), s.get("realism"))
        if s is None:
            s = (None, None)
        if not isinstance(s, (list, tuple)) or len(s) != 2:
            raise ValueError(f"scores of output {label}: give fidelity and realism, got {s!r}")
        for name, v in zip(("fidelity", "realism"), s):
            if v is None or v == "":
                raise ValueError(f"{name} of output {label} is missing: score every output 1–5")
        pairs.append(tuple(s))
    return pairs


def _rater(rater) -> str:
    """The rater's key (`names.rater_key`): variants of one name are one rater."""
    if not isinstance(rater, str) or not rater.strip():
        raise ValueError("rater: give your name first (1–64 characters)")
    key = rater_key(rater)
    if not key:
        raise ValueError("rater: give your name first (1–64 characters)")
    return text_field("rater", key, 1, 64)
