"""Ratings and votes in one fixed table, for the field's tools (pandas, `datasets`,
spreadsheets): CSV, JSON Lines or Parquet, or pushed to the Hub as a dataset with images.

Only final ratings are exported (a rating that may still change would not stay blind);
votes are final when given. Rows from gold items and from raters flagged by gold checks
are kept but marked (`gold_item`, `rater_flagged`), so a team can check them; the
summary leaves them out (`summary.serve`). Rows are sorted by kind, task, item, method,
method_b and rater: their order says nothing about the labels a rater saw.

The schema (`SCHEMA`, in this column order):
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pandas as pd

from .queue import final
from .summary import fast, fast_votes, gold_checks, gold_items

SCHEMA = [  # (column, type, meaning)
    ("kind", "string", "rating (Likert scores) or vote (a pairwise vote)"),
    ("id", "string", "the rating's or vote's id (with hashed raters: a keyed hash of it)"),
    ("timestamp", "string", "when it was given (ISO 8601, UTC)"),
    ("item_id", "string", "the review item (a run of the studio)"),
    ("task", "string", "inversion, edit or dress"),
    ("preset", "string", "the model preset the outputs were made with"),
    ("method", "string", "the method rated; for a vote the one shown as A"),
    ("method_b", "string", "for a vote the method shown as B; empty for a rating"),
    ("fidelity", "int", "1-5, or empty for a vote"),
    ("realism", "int", "1-5, or empty for a vote"),
    ("choice", "string", "a vote's answer: A, B, tie or both_bad; empty for a rating"),
    ("winner", "string", "a vote's preferred method; empty for a tie, both bad or a rating"),
    ("rater", "string", "the rater's name key, or its keyed hash (h:...) with hashing on"),
    ("signed", "bool", "the rater was verified: an invite link or a signed-in account (see review.raters)"),
    ("seconds", "float", "seconds from showing to submitting; empty when not recorded"),
    ("fast", "bool", "implausibly fast (summary.FAST_SECONDS per output)"),
    ("gold_item", "bool", "the item is a gold check (its answer is known)"),
    ("rater_flagged", "bool", "the rater failed gold checks"),
    ("comment", "string", "the rater's comment, as typed"),
    ("app_version", "string", "the studio's version that stored it"),
    ("seed", "int", "the run's seed; empty when none"),
    ("prompts", "string", "the run's prompts as JSON"),
    ("params", "string", "the run's generation parameters as JSON"),
]
COLUMNS = [c for c, _, _ in SCHEMA]
__doc__ += "\n".join(f"- `{c}` ({t}): {m}" for c, t, m in SCHEMA) + "\n"


def _hash(secret: bytes, purpose: str, text: str) -> str:
    if not secret:
        raise ValueError("hashing raters needs the data folder's secret")
    key = hmac.new(secret, b"recontext export " + purpose.encode(), hashlib.sha256).digest()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def rater_hash(secret: bytes, rater: str) -> str:
    """A stable pseudonym: HMAC-SHA256 of the rater's id under a key derived from the data
    folder's secret (`.blind-secret`): without that secret no name can be tried against it."""
    return "h:" + _hash(secret, "rater", rater)[:16]


def id_hash(secret: bytes, rating_id: str) -> str:
    """The id a hashed export gives a rating or vote: keyed too, so that no table holding
    the stored ids (an older public CSV, a log) can be joined to it to undo `rater_hash`."""
    return _hash(secret, "id", rating_id)[:32]


def table(data, hash_raters: bool = False, with_images: bool = False) -> pd.DataFrame:
    """The export as a DataFrame in `COLUMNS` order (plus `image`, `image_b`, `source`
    paths with `with_images`)."""
    ratings, _ = data.ratings.read_checked()
    votes, _ = data.votes.read_checked() if data.votes is not None else (None, [])
    ratings = ratings[final(ratings)]
    gold = gold_items(data.runs, data.root)
    checks = gold_checks(ratings, votes if votes is not None else pd.DataFrame(), gold)
    flagged = set(checks.loc[checks["flagged"], "rater"]) if len(checks) else set()
    records = {}

    def run(item):
        if item not in records:
            try:
                records[item] = data.runs.get(item)
            except Exception:  # a deleted run: its ratings are still exported
                records[item] = {}
        return records[item]

    def image(item, method):
        r = run(item)
        for o in r.get("outputs", []):
            if o["method"] == method:
                return os.path.join(r["dir"], o["image"])
        return None

    rows = []
    rfast = fast(ratings)
    for row, is_fast in zip(ratings.itertuples(), rfast):
        rows.append({"kind": "rating", "id": row.rating_id, "timestamp": row.timestamp,
                     "item_id": row.item_id, "task": row.task, "preset": row.preset,
                     "method": row.method, "method_b": None, "fidelity": int(row.fidelity),
                     "realism": int(row.realism), "choice": None, "winner": None, "rater": row.rater,
                     "signed": bool(row.signed), "seconds": row.seconds, "fast": bool(is_fast),
                     "comment": row.comment, "app_version": row.app_version})
    if votes is not None and len(votes):
        for row, is_fast in zip(votes.itertuples(), fast_votes(votes)):
            rows.append({"kind": "vote", "id": row.vote_id, "timestamp": row.timestamp,
                         "item_id": row.item_id, "task": row.task, "preset": row.preset,
                         "method": row.method_a, "method_b": row.method_b, "fidelity": None,
                         "realism": None, "choice": row.choice,
                         "winner": {"A": row.method_a, "B": row.method_b}.get(row.choice),
                         "rater": row.rater, "signed": bool(row.signed), "seconds": row.seconds,
                         "fast": bool(is_fast), "comment": "", "app_version": row.app_version})
    for r in rows:
        rec = run(r["item_id"])
        r["gold_item"] = r["item_id"] in gold
        r["rater_flagged"] = r["rater"] in flagged
        r["seed"] = rec.get("seed")
        r["prompts"] = json.dumps(rec.get("prompts", {}), sort_keys=True)
        r["params"] = json.dumps(rec.get("params", {}), sort_keys=True)
        if with_images:
            r["image"] = image(r["item_id"], r["method"])
            r["image_b"] = image(r["item_id"], r["method_b"]) if r["method_b"] else None
            r["source"] = os.path.join(rec["dir"], rec["source"]) if rec.get("source") else None
        if hash_raters:
            r["rater"] = rater_hash(data.secret, r["rater"])
            r["id"] = id_hash(data.secret, r["id"])
    columns = COLUMNS + (["image", "image_b", "source"] if with_images else [])
    df = pd.DataFrame(rows, columns=columns)
    df = df.sort_values(["kind", "task", "item_id", "method", "method_b", "rater", "id"],
                        kind="stable", na_position="first").reset_index(drop=True)
    return df.astype({"fidelity": "Int64", "realism": "Int64", "seed": "Int64", "seconds": "float64",
                      "signed": bool, "fast": bool, "gold_item": bool, "rater_flagged": bool})


def write(df: pd.DataFrame, path: str, fmt: str) -> str:
    """`df` to `path` as csv, jsonl or parquet."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "csv":
        from .store import neutralise

        out = df.copy()
        for col in ("rater", "comment", "method", "method_b", "prompts", "item_id"):
            out[col] = out[col].map(lambda v: neutralise(v) if isinstance(v, str) else v)
        out.to_csv(path, index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        raise ValueError(f"format must be csv, jsonl or parquet, got {fmt!r}")
    return path


def push(data, repo: str, hash_raters: bool = False, private: bool = True):
    """The export with its images (output, the other output of a vote, the source) as a
    Hugging Face dataset, pushed to `repo` through the `datasets` library."""
    import datasets

    df = table(data, hash_raters=hash_raters, with_images=True)
    ds = datasets.Dataset.from_pandas(df, preserve_index=False)
    for col in ("image", "image_b", "source"):
        ds = ds.cast_column(col, datasets.Image())
    ds.push_to_hub(repo, private=private)
    return ds
