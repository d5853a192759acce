"""What a rater sees: the next item to rate, its outputs in a blind order, and the
ratings of one submitted item. Works on a `RunStore` and a `RatingStore`; no torch, no
gradio."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass

LABELS = string.ascii_uppercase
TARGET = 3  # ratings wanted per item before it stops being preferred


def blind_order(rater: str, item_id: str, n: int) -> list[int]:
    """The outputs' indices in the order this rater sees them: shuffled per rater and
    item, the same every time they look."""
    def key(i: int) -> str:
        return hashlib.sha256(f"{rater.strip()}\n{item_id}\n{i}".encode()).hexdigest()
    return sorted(range(n), key=key)


@dataclass
class BlindItem:
    item_id: str
    task: str
    source: str | None       # path of the source PNG (photo or garment), if any
    prompts: dict            # what the generation was asked for (no method names)
    outputs: list[str]       # output PNG paths in blind order; labelled A, B, C…
    ratings_so_far: int      # distinct raters who rated this item
    remaining: int           # items this rater has not rated, this one included


def next_item(runs, ratings, rater: str, target: int = TARGET) -> BlindItem | None:
    """An item `rater` has not rated yet, fewest raters first (items that reached `target`
    come last), oldest first among equals. None when they have rated every item."""
    rater = _rater(rater)
    df = ratings.read()
    done = set(df.loc[df["rater"] == rater, "item_id"])
    counts = df.groupby("item_id")["rater"].nunique().to_dict() if len(df) else {}
    todo = [r for r in runs.items() if r["run_id"] not in done]
    if not todo:
        return None
    todo.sort(key=lambda r: (min(counts.get(r["run_id"], 0), target), r["created"], r["run_id"]))
    record = todo[0]
    order = blind_order(rater, record["run_id"], len(record["outputs"]))
    path = lambda name: f"{record['dir']}/{name}"  # noqa: E731
    return BlindItem(
        item_id=record["run_id"], task=record["task"],
        source=path(record["source"]) if record.get("source") else None,
        prompts=record.get("prompts", {}),
        outputs=[path(record["outputs"][i]["image"]) for i in order],
        ratings_so_far=counts.get(record["run_id"], 0), remaining=len(todo))


def rate(runs, ratings, rater: str, item_id: str, scores: list[tuple], comment: str = "",
         preset: str = "") -> list[dict]:
    """Record `scores` — (fidelity, realism) per output, in the blind order `rater` saw —
    for one item. All outputs must be scored; nothing is written unless every score is valid.
    Returns the ratings written, with the method each label stood for."""
    rater = _rater(rater)
    record = runs.get(item_id)
    n = len(record["outputs"])
    if n < 2:
        raise ValueError(f"item_id {item_id!r} is not a review item (it has one output)")
    if len(scores) < n:
        raise ValueError(f"scores: give fidelity and realism for all {n} outputs, got {len(scores)}")
    for label, (fid, real) in zip(LABELS, scores[:n]):
        for name, v in (("fidelity", fid), ("realism", real)):
            if v is None or v == "":
                raise ValueError(f"{name} of output {label} is missing: score every output 1–5")
    order = blind_order(rater, item_id, n)
    rows = [dict(rater=rater, item_id=item_id, task=record["task"],
                 method=record["outputs"][i]["method"], fidelity=fid, realism=real,
                 label=LABELS[pos], position=pos, comment=comment,
                 preset=preset or record.get("preset", ""))
            for pos, (i, (fid, real)) in enumerate(zip(order, scores[:n]))]
    return ratings.add_many(rows)


def _rater(rater) -> str:
    if not isinstance(rater, str) or not rater.strip():
        raise ValueError("rater: give your name first (1–64 characters)")
    return rater.strip()
