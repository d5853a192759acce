"""A pairwise campaign's ranking, as far as it can be defended: Bradley–Terry strengths with
ties (a tie or "both bad" is half a win each way, as in `summary.bradley_terry`), 95%
intervals that treat raters as clusters, strengths reweighted for uneven pair frequency,
and how fragile the order is.

- **Fit**: the same objective as `summary._bt_fit` (wins plus `PRIOR` virtual wins each
  way for every pair that met), maximised by Newton's method, batched so that many
  variants of one campaign (the fragility search) fit at once.
- **Intervals**: a bootstrap by rater. A rater's votes are not independent (one who likes
  a method likes it on every item), so a replicate draws raters with replacement and
  keeps all of each one's votes; 200 replicates are fitted at once, and the 2.5% and
  97.5% percentiles are the interval. An adjacent pair is *separated* when the interval
  of the difference of the two strengths (from the same replicates) excludes 0. One
  rater gives no interval. The resampling seed is fixed: the same votes, the same figures.
- **Weights**: every pair that met counts alike (its win share, times the average votes
  per pair), LMArena's correction for uneven sampling. Shown beside the plain fit: when
  the model holds both estimate the same strengths, and active sampling makes pairs
  uneven on purpose, so the plain fit is the ranking and the weighted one the check that
  the design did not bend it.
- **Fragility**: the smallest number of votes whose removal changes the order (any
  ranking change flips some adjacent pair, so this is the top method or an adjacent order),
  found greedily: for each adjacent pair, closest first, remove the vote whose removal
  narrows that pair's gap most, refit, repeat until the pair flips (or ties).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PRIOR = 0.5   # virtual wins each way per pair that met: the same as summary._bt_fit
LEVEL = 0.95
REPS = 200    # rater resamples behind each interval
SCORE = {"A": 1.0, "B": 0.0, "tie": 0.5, "both_bad": 0.5}  # what a vote gives method_a


# -- fitting ---------------------------------------------------------------------------------
def _laplacian(games: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The negative Hessian of the Bradley–Terry log-likelihood: games × p(1-p) as a
    graph Laplacian (batched over leading axes)."""
    info = games * p * np.swapaxes(p, -1, -2)
    return np.eye(games.shape[-1]) * info.sum(-1)[..., None] - info


def augmented(wins: np.ndarray, prior: float = PRIOR) -> np.ndarray:
    """`wins` plus `prior` virtual wins each way for every pair that met."""
    return wins + prior * ((wins + np.swapaxes(wins, -1, -2)) > 0)


def fit(wins: np.ndarray, prior: float = PRIOR, iters: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Bradley–Terry strengths (log scale, mean 0) from `wins[..., i, j]`, i's wins over j
    (ties ½ each way); any leading axes are a batch of campaigns fitted at once."""
    w = augmented(np.asarray(wins, dtype=float), prior)
    games = w + np.swapaxes(w, -1, -2)
    n = w.shape[-1]
    s = np.zeros(w.shape[:-1])  # a method with no votes stays at 0
    ones = np.full((n, n), 1.0 / n)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(s[..., :, None] - s[..., None, :])))
        grad = (w - games * p).sum(-1)
        # the Laplacian is singular along the all-ones direction (strengths are relative):
        # adding 1/n there makes it solvable without changing the step's centred part
        hess = _laplacian(games, p) + ones + 1e-12 * np.eye(n)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        step = np.clip(step, -2.0, 2.0)
        s = s + step
        s -= s.mean(-1, keepdims=True)
        if np.max(np.abs(step), initial=0.0) < tol:
            break
    return s


def wins_matrix(n: int, a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """wins[i, j] from votes (method indices `a`, `b`; `y` what each vote gives `a`)."""
    wins = np.zeros((n, n))
    np.add.at(wins, (a, b), y)
    np.add.at(wins, (b, a), 1.0 - y)
    return wins


# -- intervals -------------------------------------------------------------------------------
def intervals(n: int, a, b, y, cluster, weighted: bool = False, reps: int = REPS, seed: int = 0,
              prior: float = PRIOR, level: float = LEVEL) -> dict:
    """Strengths and their 95% intervals by resampling raters (`cluster`: each vote's rater):
    a replicate draws as many raters as there are, with replacement, and keeps all their
    votes. With `weighted` every method pair counts alike in each fit (`_even`).
    Returns {strength, low, high, se, replicates, clusters}; with fewer than two raters
    the intervals are NaN (one rater's votes say nothing about other raters)."""
    a, b, y = np.asarray(a, int), np.asarray(b, int), np.asarray(y, float)
    cluster = np.unique(np.asarray(cluster), return_inverse=True)[1] if len(a) else np.zeros(0, int)
    n_clusters = int(cluster.max()) + 1 if len(a) else 0
    per = np.zeros((max(n_clusters, 1), n, n))      # each rater's wins[i, j]
    np.add.at(per, (cluster, a, b), y)
    np.add.at(per, (cluster, b, a), 1.0 - y)
    s = fit(_even(per.sum(0)) if weighted else per.sum(0), prior)
    if n_clusters < 2:
        nan = np.full(n, np.nan)
        return {"strength": s, "low": nan, "high": nan, "se": nan, "replicates": np.zeros((0, n)),
                "clusters": n_clusters}
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=reps)
    wins = np.einsum("rc,cij->rij", draws.astype(float), per)
    boot = fit(_even(wins) if weighted else wins, prior)
    low, high = np.percentile(boot, [50 - 50 * level, 50 + 50 * level], axis=0)
    return {"strength": s, "low": low, "high": high, "se": boot.std(0), "replicates": boot,
            "clusters": n_clusters}


def _even(wins: np.ndarray) -> np.ndarray:
    """Wins reweighted so that every pair that met weighs alike: each pair's win shares
    times the average number of votes per pair that met."""
    games = wins + np.swapaxes(wins, -1, -2)
    met = games > 0
    per_pair = games.sum((-1, -2), keepdims=True) / np.maximum(met.sum((-1, -2), keepdims=True), 1)
    return np.where(met, wins / np.where(met, games, 1.0), 0.0) * per_pair


def difference(est: dict, u: int, l: int, level: float = LEVEL) -> tuple[float, float, float]:
    """(gap, low, high): the difference of strengths u − l and its 95% interval, from the
    same rater resamples as `intervals`' (NaN without them)."""
    gap = float(est["strength"][u] - est["strength"][l])
    if not len(est["replicates"]):
        return gap, math.nan, math.nan
    low, high = np.percentile(est["replicates"][:, u] - est["replicates"][:, l],
                              [50 - 50 * level, 50 + 50 * level])
    return gap, float(low), float(high)


def separated(order, est: dict) -> bool:
    """Whether every adjacent pair (`order`: best first) is told apart at 95%: the
    interval of the difference of their strengths excludes 0."""
    return bool(all(difference(est, u, l)[1] > 0 for u, l in zip(order[:-1], order[1:])))


# -- fragility -------------------------------------------------------------------------------
def fragility(n: int, a, b, y, prior: float = PRIOR) -> dict:
    """The fewest votes whose removal changes the fitted order (greedy; see the module's
    text): {"votes": k, "upper", "lower" (the pair that flips, as indices, upper ranked
    above), "removed": [(i, j, y_i)] the votes removed, by kind}. {"votes": None} with
    fewer than two methods."""
    a, b, y = np.asarray(a, int), np.asarray(b, int), np.asarray(y, float)
    wins = wins_matrix(n, a, b, y)
    s0 = fit(wins, prior)
    order = list(np.argsort(-s0, kind="stable"))
    if n < 2 or not len(a):
        return {"votes": None, "upper": None, "lower": None, "removed": []}
    # votes of one kind (pair, outcome) have the same effect: one candidate per kind
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    y_lo = np.where(a == lo, y, 1.0 - y)
    kinds, counts = np.unique(np.stack([lo, hi, y_lo], 1), axis=0, return_counts=True)
    ki, kj, ky = kinds[:, 0].astype(int), kinds[:, 1].astype(int), kinds[:, 2]
    delta = np.zeros((len(kinds), n, n))
    delta[np.arange(len(kinds)), ki, kj] = ky
    delta[np.arange(len(kinds)), kj, ki] = 1.0 - ky
    adjacent = list(zip(order[:-1], order[1:]))
    adjacent.sort(key=lambda p: s0[p[0]] - s0[p[1]])  # closest first: prunes the others
    best = {"votes": len(a) + 1}
    for u, l in adjacent:
        left, w, s, removed = counts.copy(), wins.copy(), s0, []
        while s[u] - s[l] > 1e-9 and len(removed) < best["votes"] - 1 and left.any():
            avail = np.flatnonzero(left)
            trial = fit(w[None] - delta[avail], prior)  # from 0: a pair left with no votes has no say
            k = int(np.argmin(trial[:, u] - trial[:, l]))
            t = avail[k]
            left[t] -= 1
            w = w - delta[t]
            s = trial[k]
            removed.append((int(ki[t]), int(kj[t]), float(ky[t])))
        if s[u] - s[l] <= 1e-9 and len(removed) < best["votes"]:
            best = {"votes": len(removed), "upper": int(u), "lower": int(l), "removed": removed}
    return best


# -- the campaign report ---------------------------------------------------------------------
def votes_arrays(votes: pd.DataFrame, methods: list[str]):
    index = {m: i for i, m in enumerate(methods)}
    a = votes["method_a"].map(index).to_numpy(int)
    b = votes["method_b"].map(index).to_numpy(int)
    y = votes["choice"].map(SCORE).to_numpy(float)
    return a, b, y


def to_separate(n_votes: int, gap: float, low: float) -> int | None:
    """More votes until a difference's 95% interval (lower end `low`) excludes 0, if the
    gap stays and new votes keep the campaign's current mix of pairs and raters (the
    interval's half-width shrinks as 1/sqrt(votes)). None without a gap or an interval, or
    when the gap is a tie (`TIED`) or too small for any campaign (over `MAX_MORE` votes): a
    rounding-sized gap once gave an integer JSON cannot hold, and /summary failed."""
    half = gap - low
    if not (gap > TIED and half > 0):  # a gap of rounding size is a tie: nothing to separate
        return None
    more = n_votes * ((half / gap) ** 2 - 1.0)
    if not math.isfinite(more) or more > MAX_MORE:
        return None
    return max(0, int(math.ceil(more)))


MAX_MORE = 10**9  # more votes than this: no estimate
TIED = 1e-9       # strengths closer than this (log scale) are tied: fitted apart only by rounding


def _num(x):
    x = float(x)
    return x if math.isfinite(x) else None


def campaign(votes: pd.DataFrame | None, min_votes: int = 0) -> list[dict]:
    """Per task, everything a campaign view shows, as plain data (JSON-safe, NaN as None):
    the ranking with raters-as-clusters intervals and the pair-frequency-weighted strengths,
    adjacent pairs and whether they are separated, the win-rate and votes-per-pair
    matrices, pair coverage against `min_votes`, the fragility figure, and the votes
    estimated to separate the closest adjacent pair."""
    out = []
    if votes is None or not len(votes):
        return out
    for task, g in votes.groupby("task", sort=True):
        methods = sorted(set(g["method_a"]) | set(g["method_b"]))
        n = len(methods)
        a, b, y = votes_arrays(g, methods)
        plain = intervals(n, a, b, y, g["rater"].to_numpy())
        weighted = intervals(n, a, b, y, g["rater"].to_numpy(), weighted=True)
        s = plain["strength"]
        order = [int(i) for i in np.argsort(-s, kind="stable")]
        count = np.bincount(np.concatenate([a, b]), minlength=n)
        ranking = [{"method": methods[i], "strength": _num(s[i]), "low": _num(plain["low"][i]),
                    "high": _num(plain["high"][i]), "votes": int(count[i]),
                    "weighted": _num(weighted["strength"][i]), "weighted_low": _num(weighted["low"][i]),
                    "weighted_high": _num(weighted["high"][i])} for i in order]
        adjacent = []
        for u, l in zip(order[:-1], order[1:]):
            gap, low, high = difference(plain, u, l)
            adjacent.append({"upper": methods[u], "lower": methods[l], "gap": _num(gap), "low": _num(low),
                             "high": _num(high), "separated": bool(low > 0),
                             "more_votes": to_separate(len(g), gap, low),
                             "z": _num(gap / (gap - low)) if gap > low else None})
        closest = min(adjacent, key=lambda p: p["z"] if p["z"] is not None else math.inf, default=None)
        wins = wins_matrix(n, a, b, y)
        games = wins + wins.T
        rate = np.where(games > 0, wins / np.maximum(games, 1e-300), np.nan)
        pairs = n * (n - 1) // 2
        at_min = int(sum(games[i, j] >= max(min_votes, 1) for i in range(n) for j in range(i + 1, n)))
        frag = fragility(n, a, b, y)
        out.append({
            "task": task, "votes": int(len(g)), "raters": plain["clusters"],
            "ranking": ranking, "adjacent": adjacent,
            "all_separated": bool(adjacent) and all(p["separated"] for p in adjacent),
            "closest": closest,
            "weighted_order_agrees": [r["method"] for r in ranking] == [
                methods[i] for i in np.argsort(-weighted["strength"], kind="stable")],
            "methods": methods,
            "win_rate": [[_num(v) for v in row] for row in rate],
            "pair_votes": games.astype(int).tolist(),
            "coverage": {"pairs": pairs, "pairs_at_min": at_min, "min_votes": int(min_votes)},
            "fragility": {"votes": frag["votes"],
                          "pair": [methods[frag["upper"]], methods[frag["lower"]]]
                          if frag["votes"] is not None else None},
        })
    return out
