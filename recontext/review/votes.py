"""The pairwise votes log: one CSV beside the ratings, with the same guarantees (one
locked, all-or-nothing append per vote; a torn or broken record costs only itself).

A vote is one line: the two methods as they were shown (A is `method_a`, at position
`output_a` of the run's outputs), the answer (`A`, `B`, `tie`, `both_bad`) and the
seconds from showing to voting. Positions are drawn at random per showing and logged.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

import pandas as pd

from .store import RatingStore, float_field, seconds_field, text_field

CHOICES = ("A", "B", "tie", "both_bad")
VOTE_HEADER = ["vote_id", "timestamp", "rater", "item_id", "task", "method_a", "method_b",
               "output_a", "output_b", "choice", "seconds", "preset", "app_version", "signed", "view_id"]
_ID = re.compile(r"[0-9a-f]{32}")


class VoteStore(RatingStore):
    header = VOTE_HEADER
    old_headers: list = []
    text = ["rater", "item_id", "task", "method_a", "method_b", "choice", "preset", "app_version", "view_id"]
    defaults = {"seconds": "", "signed": "0", "view_id": ""}
    id_column = "vote_id"
    name = "votes"

    def _row(self, rater: str, item_id: str, task: str, method_a: str, method_b: str, output_a: int,
             output_b: int, choice: str, seconds=None, preset: str = "", app_version: str = "",
             signed: bool = False, view_id: str = "") -> dict:
        from .. import __version__

        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        row = {
            "vote_id": uuid.uuid4().hex,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "rater": text_field("rater", rater, 1, 64), "item_id": text_field("item_id", item_id, 1, 128),
            "task": text_field("task", task, 1, 64), "method_a": text_field("method_a", method_a, 1, 64),
            "method_b": text_field("method_b", method_b, 1, 64), "output_a": int(output_a),
            "output_b": int(output_b), "choice": choice, "seconds": seconds_field(seconds),
            "preset": text_field("preset", preset, 0, 64), "app_version": app_version or __version__,
            "signed": int(bool(signed)), "view_id": text_field("view_id", view_id or "", 0, 64),
        }
        if method_a == method_b:
            raise ValueError("a vote compares two different methods")
        if self.known is not None and not (self.known(item_id, method_a) and self.known(item_id, method_b)):
            raise ValueError(f"item_id {item_id!r} with methods {method_a!r}, {method_b!r} is not a known review item")
        return row

    def _latest(self, df):
        """One vote per rater, item and method pair (whichever was shown as A): the first.
        `queue.vote` refuses the later ones; this also drops those an older version stored."""
        if not len(df):
            return df
        lo = df[["method_a", "method_b"]].min(axis=1)
        hi = df[["method_a", "method_b"]].max(axis=1)
        keep = ~pd.DataFrame({"r": df["rater"], "i": df["item_id"], "lo": lo, "hi": hi}).duplicated(keep="first")
        return df[keep]

    def _frame(self, rows):
        df = pd.DataFrame(rows, columns=self.header)
        return df.astype({"output_a": int, "output_b": int, "seconds": float, "signed": bool})

    def _convert(self, row):
        return {"output_a": int(row["output_a"]), "output_b": int(row["output_b"]),
                "seconds": float_field(row["seconds"]), "signed": row["signed"] == "1"}

    def _problem(self, row):
        if not _ID.fullmatch(row["vote_id"]) or not row["rater"] or not row["item_id"]:
            return "no vote id, rater or item"
        if row["choice"] not in CHOICES:
            return f"a choice that is not one of {', '.join(CHOICES)}"
        if not (row["output_a"].isdigit() and row["output_b"].isdigit()):
            return "an output position that is not a whole number"
        return None

    def export(self, path, keep=None):
        raise NotImplementedError("votes are exported by recontext.review.export")
