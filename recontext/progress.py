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
