"""The ratings log: one CSV, append-only, safe across processes.

Every append holds a cross-process file lock, is flushed and fsynced. A crash mid-write
can leave a torn last line: reading skips it with a warning, and the next append starts
on a fresh line. A rater re-rating the same output appends again; reading keeps the latest.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import uuid
import warnings
from datetime import datetime, timezone

import pandas as pd
from filelock import FileLock

HEADER = ["rating_id", "timestamp", "rater", "item_id", "task", "method", "label", "position",
          "fidelity", "realism", "comment", "preset", "app_version"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_COMMENT = 2000


def neutralise(text: str) -> str:
    """Text a spreadsheet would run as a formula gets a leading apostrophe."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _score(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not value.strip().isdigit()):
        raise ValueError(f"{name} must be a whole number from 1 to 5, got {value!r}")
    v = int(value)
    if not 1 <= v <= 5:
        raise ValueError(f"{name} must be from 1 to 5, got {value!r}")
    return v


def _text(name: str, value, lo: int, hi: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {value!r}")
    value = value.strip()
    if not lo <= len(value) <= hi:
        raise ValueError(f"{name} must be {lo} to {hi} characters, got {len(value)}")
    if not value.isprintable() and name != "comment":
        raise ValueError(f"{name} must be printable characters only")
    return value


class RatingStore:
    """`RatingStore(path, known=None)`: `known(item_id, method) -> bool` says whether an
    item and method exist (the runs folder); without it any item is accepted."""

    def __init__(self, path: str, known=None, commit_lock=None):
        self.path = os.fspath(path)
        self.known = known
        self.lock = FileLock(self.path + ".lock")
        self.commit_lock = commit_lock or contextlib.nullcontext()  # a Hub push's lock

    def add(self, rater: str, item_id: str, task: str, method: str, fidelity, realism,
            label: str = "", position: int = 0, comment: str = "", preset: str = "",
            app_version: str = "") -> dict:
        """Validate and append one rating; returns the row as written."""
        return self.add_many([dict(rater=rater, item_id=item_id, task=task, method=method,
                                   fidelity=fidelity, realism=realism, label=label,
                                   position=position, comment=comment, preset=preset,
                                   app_version=app_version)])[0]

    def add_many(self, ratings: list[dict]) -> list[dict]:
        """Validate every rating first, then append them all in one locked write: a bad
        value anywhere raises `ValueError` naming the field and nothing is written."""
        rows = [self._row(**r) for r in ratings]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, HEADER, lineterminator="\n")
        for row in rows:
            writer.writerow({k: neutralise(v) if isinstance(v, str) else v for k, v in row.items()})
        self._append(buf.getvalue().encode("utf-8"))
        return rows

    def _row(self, rater: str, item_id: str, task: str, method: str, fidelity, realism,
             label: str = "", position: int = 0, comment: str = "", preset: str = "",
             app_version: str = "") -> dict:
        from .. import __version__

        row = {
            "rating_id": uuid.uuid4().hex,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "rater": _text("rater", rater, 1, 64),
            "item_id": _text("item_id", item_id, 1, 128),
            "task": _text("task", task, 1, 64),
            "method": _text("method", method, 1, 64),
            "label": _text("label", label, 0, 8),
            "position": int(position),
            "fidelity": _score("fidelity", fidelity),
            "realism": _score("realism", realism),
            "comment": _text("comment", comment or "", 0, MAX_COMMENT).replace("\r", " "),
            "preset": _text("preset", preset, 0, 64),
            "app_version": app_version or __version__,
        }
        if self.known is not None and not self.known(row["item_id"], row["method"]):
            raise ValueError(f"item_id {item_id!r} with method {method!r} is not a known review item")
        return row

    def _append(self, line: bytes) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with self.commit_lock, self.lock, open(self.path, "ab+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                f.write((",".join(HEADER) + "\n").encode())
            else:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn last line: start ours on a fresh one
                    f.write(b"\n")
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read(self, latest: bool = True) -> pd.DataFrame:
        """All ratings as a DataFrame; with `latest`, one row per (rater, item, method)."""
        if not os.path.exists(self.path):
            return pd.DataFrame(columns=HEADER)
        with self.lock, open(self.path, encoding="utf-8", newline="") as f:
            text = f.read()
        rows, skipped = [], 0
        lines = text.split("\n")
        complete = lines[:-1]  # what follows the last newline was never finished
        if lines[-1]:
            skipped += 1
        for rec in csv.reader(complete[1:]):
            if len(rec) != len(HEADER):
                skipped += 1
                continue
            rows.append(rec)
        if skipped:
            warnings.warn(f"{self.path}: skipped {skipped} torn or malformed line(s)", stacklevel=2)
        df = pd.DataFrame(rows, columns=HEADER)
        for col in ("fidelity", "realism", "position"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        df = df.dropna(subset=["fidelity", "realism"]).astype({"fidelity": int, "realism": int})
        if latest:
            df = df.drop_duplicates(["rater", "item_id", "method"], keep="last")
        return df.reset_index(drop=True)
