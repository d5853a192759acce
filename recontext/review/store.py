"""The ratings log: one CSV, append-only, safe across processes.

One rating is one line. A file written by an earlier version (fewer columns), or saved
again by a spreadsheet with a byte-order mark (UTF-8 or UTF-16), is read as it is; the
first append rewrites it once in the current columns, atomically (written aside, then
renamed over it), so an append never writes more fields than the file's header names.
An append holds a cross-process file lock, writes every row of
one submission in one piece and fsyncs; if anything fails (a full disk, a read-only
folder) the file is truncated back to its size before the append, so it is all or
nothing, and `StorageError` says so. Reading needs no write access and goes line by
line: a torn or hand-broken line (an unclosed quote, a wrong number of fields, a score
out of range, bytes that are not UTF-8) costs that one record, never the ones after it,
and every problem is counted and reported by `read_checked`.

Text a spreadsheet would run as a formula is stored with a leading apostrophe, and a
value that itself starts with an apostrophe gets one more, so reading strips exactly one
and gives back what was typed: `=x` and `'=x` stay two different raters.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import uuid
import warnings
from datetime import datetime, timezone

import pandas as pd
from ..locks import lock_for

from ..errors import StorageError
from .names import rater_key

HEADER = ["rating_id", "timestamp", "rater", "item_id", "task", "method", "label", "position",
          "fidelity", "realism", "comment", "preset", "app_version", "revealed", "seconds",
          "signed", "view_id"]
# files written by earlier versions: read as they are; the first append upgrades the file
# to HEADER once, atomically (a missing `revealed` reads as not revealed)
OLD_HEADERS = [HEADER[:13], HEADER[:14]]
OLD_HEADER = OLD_HEADERS[0]
TEXT = ["rater", "item_id", "task", "method", "label", "comment", "preset", "app_version", "view_id"]
DEFAULTS = {"revealed": "0", "seconds": "", "signed": "0", "view_id": ""}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_COMMENT = 2000
MAX_JOINED = 20  # lines an old multi-line comment may span (one rating was one line since 0.2)
VERIFIED = "@"  # a verified rater's id starts with it (`raters`); a typed name never does
_RATING_ID = re.compile(r"[0-9a-f]{32}")


def neutralise(text: str) -> str:
    """Text a spreadsheet would run as a formula (or that starts with the apostrophe used
    to mark such text) gets a leading apostrophe; `canonical` undoes it."""
    return "'" + text if text.startswith(FORMULA_STARTS + ("'",)) else text


def canonical(text: str) -> str:
    """What was typed, from a stored value (the inverse of `neutralise`)."""
    return text[1:] if text.startswith("'") else text


def _score(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not value.strip().isdigit()):
        raise ValueError(f"{name} must be a whole number from 1 to 5, got {value!r}")
    v = int(value)
    if not 1 <= v <= 5:
        raise ValueError(f"{name} must be from 1 to 5, got {value!r}")
    return v


def text_field(name: str, value, lo: int, hi: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    value = value.strip()
    if not lo <= len(value) <= hi:
        raise ValueError(f"{name} must be {lo} to {hi} characters, got {len(value)}")
    if not value.isprintable() and name != "comment":
        raise ValueError(f"{name} must be printable characters only")
    return value


class RatingStore:
    """`RatingStore(path, known=None)`: `known(item_id, method) -> bool` says whether an
    item and method exist (the runs folder); without it any item is accepted."""

    header = HEADER
    old_headers = OLD_HEADERS
    text = TEXT
    defaults = DEFAULTS
    id_column = "rating_id"
    name = "ratings"

    def __init__(self, path: str, known=None, commit_lock=None):
        self.path = os.fspath(path)
        self.known = known
        self.lock = lock_for(self.path)
        self.commit_lock = commit_lock or contextlib.nullcontext()  # a Hub push's lock

    def add(self, rater: str, item_id: str, task: str, method: str, fidelity, realism,
            label: str = "", position: int = 0, comment: str = "", preset: str = "",
            app_version: str = "", revealed: bool = False, **extra) -> dict:
        """Validate and append one rating; returns the row as written."""
        return self.add_many([dict(rater=rater, item_id=item_id, task=task, method=method,
                                   fidelity=fidelity, realism=realism, label=label,
                                   position=position, comment=comment, preset=preset,
                                   app_version=app_version, revealed=revealed, **extra)])[0]

    def add_many(self, ratings: list[dict], check=None) -> list[dict]:
        """Validate every rating first, then append them all in one locked write: a bad
        value anywhere raises `ValueError` naming the field and nothing is written.
        `check(df)`, given the ratings read under the lock, may refuse with ValueError."""
        rows = [self._row(**r) for r in ratings]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.header, lineterminator="\n")
        for row in rows:
            writer.writerow({k: neutralise(v) if isinstance(v, str) else v for k, v in row.items()})
        self._append(buf.getvalue().encode("utf-8"), check)
        return rows

    def _row(self, rater: str, item_id: str, task: str, method: str, fidelity, realism,
             label: str = "", position: int = 0, comment: str = "", preset: str = "",
             app_version: str = "", revealed: bool = False, seconds: float | None = None,
             signed: bool = False, view_id: str = "") -> dict:
        from .. import __version__

        comment = text_field("comment", comment or "", 0, MAX_COMMENT)
        row = {
            "rating_id": uuid.uuid4().hex,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "rater": text_field("rater", rater, 1, 64),
            "item_id": text_field("item_id", item_id, 1, 128),
            "task": text_field("task", task, 1, 64),
            "method": text_field("method", method, 1, 64),
            "label": text_field("label", label, 0, 8),
            "position": int(position),
            "fidelity": _score("fidelity", fidelity),
            "realism": _score("realism", realism),
            "comment": " ".join(comment.split()),  # one rating, one line
            "preset": text_field("preset", preset, 0, 64),
            "app_version": app_version or __version__,
            "revealed": int(bool(revealed)),
            "seconds": seconds_field(seconds),
            "signed": int(bool(signed)),
            "view_id": text_field("view_id", view_id or "", 0, 64),
        }
        if self.known is not None and not self.known(row["item_id"], row["method"]):
            raise ValueError(f"item_id {item_id!r} with method {method!r} is not a known review item")
        return row

    def _append(self, data: bytes, check=None) -> None:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with self.commit_lock, self.lock:
                if check is not None:
                    check(self.read_checked(latest=False)[0])
                self._upgrade()
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    size = os.lseek(fd, 0, os.SEEK_END)
                    if size == 0:
                        data = (",".join(self.header) + "\n").encode() + data
                    elif os.pread(fd, 1, size - 1) != b"\n":  # a torn last line: start afresh
                        data = b"\n" + data
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view):]
                        os.fsync(fd)
                    except BaseException:
                        os.ftruncate(fd, size)  # all or nothing
                        os.fsync(fd)
                        raise
                finally:
                    os.close(fd)
        except OSError as e:
            raise StorageError(
                f"the {self.name} could not be saved ({e.strerror or e}); nothing was written. "
                "Your answers are still on the page: try again later, or tell whoever runs "
                "this studio that its data folder is full or read-only.") from e

    def _upgrade(self) -> None:
        """Rewrite a file in an older column layout or with a byte-order mark in the current
        one, once, atomically (under the lock). Valid records get the new columns' defaults;
        anything that is not a valid record is kept byte for byte (and still skipped)."""
        current = (",".join(self.header) + "\n").encode()
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(current))
                if not head or head == current:
                    return  # the usual case: no need to read the whole file
                raw = head + f.read()
        except FileNotFoundError:
            return
        text = _decode(raw)
        first = _fields(text.split(b"\n", 1)[0].rstrip(b"\r"))[0]
        if first not in [self.header, *self.old_headers] and text is raw and len(first or []) not in {
                len(h) for h in self.old_headers}:
            return  # no header, current columns (or unreadable): appends as they are
        records, header, _ = self._records(text)
        out = io.StringIO()
        out.write(",".join(self.header) + "\n")
        writer = csv.writer(out, lineterminator="\n")
        for chunk, fields, reason in records:
            if fields is not None and reason is None:
                row = {**self.defaults, **dict(zip(header, fields))}
                writer.writerow([row.get(k, "") for k in self.header])
            else:
                out.write(chunk.decode("utf-8", errors="surrogateescape") + "\n")
        data = out.getvalue().encode("utf-8", errors="surrogateescape")
        tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- reading ---------------------------------------------------------------------------
    def read(self, latest: bool = True) -> pd.DataFrame:
        """All ratings as a DataFrame; with `latest`, one row per (rater, item, method).
        Problems in the file are skipped and reported as one warning."""
        df, problems = self.read_checked(latest)
        if problems:
            warnings.warn(f"{self.path}: " + "; ".join(problems), stacklevel=2)
        return df

    def read_checked(self, latest: bool = True) -> tuple[pd.DataFrame, list[str]]:
        """(ratings, problems): problems are sentences saying what was skipped and why.
        Needs only read access: no lock is taken (an append in progress looks like an
        unfinished last line and is skipped). Rater names are read as their key
        (`names.rater_key`), so variants of one name are one rater."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return self._frame([]), []
        except OSError as e:
            raise StorageError(f"the {self.name} file cannot be read ({e.strerror or e})") from e
        rows, skipped, problems = self._parse(raw)
        for reason, n in skipped.items():
            problems.append(f"skipped {n} record{'s' * (n != 1)}: {reason}")
        df = self._frame(rows)
        if latest:
            df = self._latest(df)
        return df.reset_index(drop=True), problems

    def _latest(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.drop_duplicates(["rater", "item_id", "method"], keep="last")

    def export(self, path: str, keep=None) -> str:
        """The ratings a client may download, at `path`: every valid record (with `keep`,
        those where `keep(df)` is true), texts made safe for spreadsheets, without the
        blind label and position (what a rater saw), sorted by task, item, method and
        rater so that the order of the rows says nothing about the labels either."""
        df, _ = self.read_checked(latest=False)
        if keep is not None:
            df = df[keep(df)]
        df = df.drop(columns=["label", "position", "view_id"])
        df = df.sort_values(["task", "item_id", "method", "rater", "timestamp", "rating_id"], kind="stable")
        for col in self.text:
            if col in df:
                df[col] = df[col].map(neutralise)
        df.to_csv(path, index=False)
        return path

    def _frame(self, rows: list[dict]) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=self.header)
        return df.astype({"fidelity": int, "realism": int, "position": int, "revealed": bool,
                          "seconds": float, "signed": bool})

    def _convert(self, row: dict) -> dict:
        """One parsed record's typed values."""
        return {"fidelity": int(row["fidelity"]), "realism": int(row["realism"]),
                "position": int(row["position"] or 0), "revealed": row["revealed"] == "1",
                "seconds": float_field(row["seconds"]), "signed": row["signed"] == "1"}

    def _problem(self, row: dict) -> str | None:
        if not _RATING_ID.fullmatch(row[self.id_column]) or not row["rater"] or not row["item_id"]:
            return "no rating id, rater or item"
        for name in ("fidelity", "realism"):
            if row[name] not in ("1", "2", "3", "4", "5"):
                return f"a {name} outside the whole numbers 1–5"
        if row["position"] and not row["position"].isdigit():
            return "a position that is not a whole number"
        return None

    # -- parsing -----------------------------------------------------------------------------
    def _records(self, raw: bytes):
        """The file's records: ([(bytes, fields or None, problem or None)], header, notes).
        The last element's problem says when a record is torn or not a valid one."""
        lines = raw.split(b"\n")
        notes: list[str] = []
        last = lines[-1]
        lines = [line.rstrip(b"\r") for line in lines[:-1]]
        header = self.header
        first = _fields(lines[0])[0] if lines else None
        if first in [self.header, *self.old_headers]:
            header, lines = first, lines[1:]
        elif lines:
            notes.append("the file has no header line (expected one naming the columns); "
                         "its lines were read as ratings in the column order their length matches")
            n = len(_fields(lines[0])[0] or [])
            header = next((h for h in [self.header, *self.old_headers] if len(h) == n), self.header)
        records, i = [], 0
        while i < len(lines):
            fields, _ = _fields(lines[i])
            used = 1
            if fields is None:  # an unclosed quote: a record from before one rating was one line?
                for extra in range(1, min(MAX_JOINED, len(lines) - i)):
                    if self._valid(_fields(lines[i + extra])[0], header):
                        break  # the next line is a record of its own: this one was torn
                    fields, _ = _fields(b"\n".join(lines[i:i + extra + 1]))
                    if fields is not None:
                        used = extra + 1
                        break
            chunk = b"\n".join(lines[i:i + used])
            i += used
            if fields is None:
                records.append((chunk, None, "an unclosed quote (a torn write or a hand edit)"))
            elif not any(fields):
                continue  # a blank line
            else:
                records.append((chunk, fields, self._check(fields, header)))
        if last:
            records.append((last, None, "an unfinished last line (a write in progress, or one cut "
                                        "off by a crash)"))
        return records, header, notes

    def _parse(self, raw: bytes) -> tuple[list[dict], dict[str, int], list[str]]:
        """Records from the file's bytes, line by line; (rows, {reason: count}, notes)."""
        raw = _decode(raw)
        records, header, notes = self._records(raw)
        skipped: dict[str, int] = {}
        rows, undecodable = [], 0
        for chunk, fields, reason in records:
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            undecodable += _fields(chunk)[1]
            row = {**self.defaults, **dict(zip(header, fields))}
            row = {k: canonical(v) if k in self.text else v for k, v in row.items()}
            row["rater"] = rater_key(row["rater"])
            rows.append(row | self._convert(row))
        if undecodable:
            notes.append(f"{undecodable} record{'s' * (undecodable != 1)} held bytes that are not "
                         "UTF-8 (shown as �); they were kept")
        return rows, skipped, notes

    def _check(self, fields: list[str], header: list[str]) -> str | None:
        if len(fields) != len(header):
            return f"a wrong number of fields (expected {len(header)})"
        return self._problem(dict(zip(header, fields)))

    def _valid(self, fields, header) -> bool:
        return fields is not None and self._check(fields, header) is None


def seconds_field(value) -> str:
    if value is None or value == "":
        return ""
    v = float(value)
    if not 0 <= v < 10 ** 7:
        raise ValueError(f"seconds must be from 0, got {value!r}")
    return f"{v:.3f}"


def float_field(value: str) -> float:
    try:
        return float(value) if value else float("nan")
    except ValueError:
        return float("nan")


def _decode(raw: bytes) -> bytes:
    """The file's bytes as UTF-8 without a byte-order mark (a spreadsheet's UTF-8 or
    UTF-16 re-save); other bytes as they are."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return raw
    return raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw


def _fields(line: bytes) -> tuple[list[str] | None, bool]:
    """One CSV record from one line: (fields, whether bytes had to be replaced); fields is
    None when a quote is left open."""
    try:
        text, bad = line.decode("utf-8"), False
    except UnicodeDecodeError:
        text, bad = line.decode("utf-8", errors="replace"), True
    try:
        fields = next(csv.reader([text], strict=True), [])
    except csv.Error:
        return None, bad
    return fields, bad
