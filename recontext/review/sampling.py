"""Which pair a rater is shown next (`queue.next_pair` asks `choose`).

`$RECONTEXT_PAIR_SAMPLING` picks the rule:

- **uniform**: the method pair with the fewest votes so far (per task), then among that
  pair's items the one whose pair has the fewest votes, oldest first. Every pair gets
  votes in turn.
- **active**: every method pair first gets `$RECONTEXT_PAIR_MIN` votes (fewest first);
  then, except for a share `EXPLORE` of showings drawn by the uniform rule so that no
  pair starves, the pair chosen is the adjacent pair of the current Bradley–Terry
  ranking that is least settled (the largest standard error of the difference of their
  strengths per unit of gap between them): the pair whose outcome tells most about the
  order that is still in doubt. Ties go to the pair with fewer votes. The item is then chosen as in
  the uniform rule.

A rater is never shown an item's method pair they have already voted on: `choose` drops
those candidates itself, from the votes table, whatever the caller passed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .ranking import SCORE, fit, _laplacian, augmented

MODES = ("uniform", "active")
DEFAULT = "active"      # the bench (bench/pairwise_campaign.py) measures what it saves
MIN_VOTES = 5           # votes every method pair gets first under the active rule
EXPLORE = 0.1           # share of showings drawn by the uniform rule under the active rule


def mode() -> str:
    """`$RECONTEXT_PAIR_SAMPLING`: uniform or active (the default)."""
    value = os.environ.get("RECONTEXT_PAIR_SAMPLING", DEFAULT).strip().lower() or DEFAULT
    if value not in MODES:
        raise ValueError(f"RECONTEXT_PAIR_SAMPLING must be one of {', '.join(MODES)}, got {value!r}")
    return value


def min_votes() -> int:
    """`$RECONTEXT_PAIR_MIN`: votes every method pair gets first (default 5)."""
    try:
        return max(0, int(os.environ.get("RECONTEXT_PAIR_MIN", MIN_VOTES)))
    except ValueError:
        return MIN_VOTES


@dataclass
class Candidate:
    """One pair a rater could be shown: an item and two of its methods (any order)."""
    task: str
    item_id: str
    method_a: str
    method_b: str
    order: tuple                  # the item's place among equals (oldest first)
    payload: Any = None           # what the caller wants back (queue: the record and outputs)
    key: tuple = field(init=False)   # (item, m1, m2), methods sorted
    pair: tuple = field(init=False)  # (task, m1, m2)

    def __post_init__(self):
        m1, m2 = sorted((self.method_a, self.method_b))
        self.key, self.pair = (self.item_id, m1, m2), (self.task, m1, m2)


@dataclass
class Tally:
    """What the votes so far tell the sampler: votes per item pair and per method pair,
    each method pair's score, and which item pairs each rater has voted on."""
    item_pair: dict = field(default_factory=dict)   # (item, m1, m2) -> votes
    pair: dict = field(default_factory=dict)        # (task, m1, m2) -> votes
    score: dict = field(default_factory=dict)       # (task, m1, m2) -> what m1 got (½ per tie)
    voted: dict = field(default_factory=dict)       # rater -> {(item, m1, m2)}

    def add(self, rater: str, task: str, item_id: str, method_a: str, method_b: str, choice: str) -> None:
        m1, m2 = sorted((method_a, method_b))
        y = SCORE[choice] if method_a == m1 else 1.0 - SCORE[choice]
        key, pair = (item_id, m1, m2), (task, m1, m2)
        self.item_pair[key] = self.item_pair.get(key, 0) + 1
        self.pair[pair] = self.pair.get(pair, 0) + 1
        self.score[pair] = self.score.get(pair, 0.0) + y
        self.voted.setdefault(rater, set()).add(key)

    @classmethod
    def of(cls, votes: pd.DataFrame) -> "Tally":
        tally = cls()
        if votes is not None and len(votes):
            for row in zip(votes["rater"], votes["task"], votes["item_id"], votes["method_a"],
                           votes["method_b"], votes["choice"]):
                tally.add(*row)
        return tally


def choose(candidates: list[Candidate], votes, rater: str, rule: str | None = None,
           rng: np.random.Generator | None = None, minimum: int | None = None):
    """The payload of the candidate to show `rater` next (see the module's text), or None
    when every candidate is an item pair they have voted on. `votes`: the votes table or
    a `Tally` of it."""
    tally = votes if isinstance(votes, Tally) else Tally.of(votes)
    rule = rule or mode()
    minimum = min_votes() if minimum is None else minimum
    mine = tally.voted.get(rater, set())
    open_ = [c for c in candidates if c.key not in mine]
    if not open_:
        return None
    by_pair: dict = {}
    for c in open_:
        by_pair.setdefault(c.pair, []).append(c)
    rng = rng if rng is not None else np.random.default_rng()
    if rule == "active" and rng.random() >= EXPLORE:
        priority = _active(by_pair, tally, minimum)
    else:
        priority = {p: (tally.pair.get(p, 0),) for p in by_pair}
    pair = min(by_pair, key=lambda p: (priority[p], min(c.order for c in by_pair[p]), p))
    best = min(by_pair[pair], key=lambda c: (tally.item_pair.get(c.key, 0), c.order))
    return best.payload


def _active(by_pair: dict, tally: Tally, minimum: int) -> dict:
    """Each open method pair's priority (smaller first) under the active rule."""
    out = {}
    below = {p: n for p in by_pair if (n := tally.pair.get(p, 0)) < minimum}
    if below:
        return {p: (0, below.get(p, minimum)) for p in by_pair}
    for task in {p[0] for p in by_pair}:
        overlap = _overlap(task, tally)
        for p in by_pair:
            if p[0] == task:
                out[p] = (1, -overlap.get(p[1:], 0.0), tally.pair.get(p, 0))
    return out


def _overlap(task: str, tally: Tally) -> dict:
    """For each adjacent pair of the task's current ranking: the standard error of the
    difference of their strengths per unit of gap (from the fit's information matrix;
    above 1/1.96 the difference's 95% interval still holds 0)."""
    pairs = {p[1:]: n for p, n in tally.pair.items() if p[0] == task}
    methods = sorted({m for p in pairs for m in p})
    if len(methods) < 2:
        return {}
    index = {m: i for i, m in enumerate(methods)}
    wins = np.zeros((len(methods), len(methods)))
    for (m1, m2), n in pairs.items():
        score = tally.score[(task, m1, m2)]
        wins[index[m1], index[m2]] += score
        wins[index[m2], index[m1]] += n - score
    s = fit(wins)
    w = augmented(wins)
    p = 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))
    cov = np.linalg.pinv(_laplacian(w + w.T, p))
    order = np.argsort(-s, kind="stable")
    out = {}
    for u, l in zip(order[:-1], order[1:]):
        se = np.sqrt(max(cov[u, u] + cov[l, l] - 2 * cov[u, l], 0.0))
        out[tuple(sorted((methods[u], methods[l])))] = float(se / max(s[u] - s[l], 1e-9))
    return out
