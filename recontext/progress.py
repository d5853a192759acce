"""Progress reporting: the core calls `progress(done, total, desc)`; the UI adapts it."""

from __future__ import annotations

from typing import Callable

Progress = Callable[[int, int, str], None]


def ticker(progress: Progress | None, total: int, desc: str):
    """A per-step callback for the inversion loops that counts up to `total`."""
    if progress is None:
        return None
    count = [0]

    def tick(_):
        count[0] += 1
        progress(count[0], total, desc)

    return tick


def segment(progress: Progress | None, index: int, count: int, prefix: str = ""):
    """Progress of the `index`-th of `count` equal parts of a longer job, reported on the
    whole job's scale."""
    if progress is None:
        return None
    return lambda done, total, desc: progress(index * total + done, count * total, prefix + desc)


def weighted(update: Progress | None, start: int, weight: int, grand: int):
    """Progress of one part that is `weight` units of a `grand` total starting at `start`:
    the core's (done, total) for that part mapped onto the whole job's scale, so the total is
    known from the start (a fine-tune's steps included)."""
    if update is None:
        return None

    def report(done, total, desc):
        if not total:  # one-off work of unknown length: the text alone
            return update(done, total, desc)
        update(start + round(weight * min(done, total) / total), grand, desc)

    return report


def watched(progress: Progress | None, cancel) -> Progress | None:
    """`progress`, which first raises `jobs.Cancelled` once `cancel` (anything with
    `is_set()`, e.g. a `threading.Event`) is set: the model loops report every step, so the
    work stops within one step of the signal."""
    if cancel is None:
        return progress

    def report(done, total, desc):
        stop(cancel)
        if progress is not None:
            progress(done, total, desc)

    return report


def stop(cancel) -> None:
    """Raise `jobs.Cancelled` when `cancel` is set."""
    if cancel is not None and cancel.is_set():
        from .jobs import Cancelled

        raise Cancelled("cancelled: the work stopped and nothing was saved")
