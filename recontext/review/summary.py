"""Per-method scores with bootstrap intervals, pairwise win rates, rater agreement."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from .ranking import campaign
from .sampling import min_votes

CRITERIA = ("fidelity", "realism")


def bootstrap_ci(values, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return (math.nan, math.nan)
    means = np.random.default_rng(seed).choice(x, size=(n, len(x)), replace=True).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per task and method: ratings, raters, mean and 95% interval per criterion."""
    rows = []
    for (task, method), g in df.groupby(["task", "method"], sort=True):
        row = {"task": task, "method": method, "ratings": len(g), "raters": g["rater"].nunique()}
        for c in CRITERIA:
            lo, hi = bootstrap_ci(g[c])
            row.update({f"{c}_mean": float(g[c].mean()), f"{c}_ci_low": lo, f"{c}_ci_high": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def win_rates(df: pd.DataFrame) -> pd.DataFrame:
    """For each pair of methods on the same task: how often the first scored higher than
    the second, from each rater's ratings of items where that rater rated both (ties 1/2)."""
    rows = []
    for task, g in df.groupby("task"):
        for c in CRITERIA:
            wide = g.pivot_table(index=["rater", "item_id"], columns="method", values=c, aggfunc="last")
            for a, b in itertools.combinations(sorted(wide.columns), 2):
                both = wide[[a, b]].dropna()
                if both.empty:
                    continue
                wins = (both[a] > both[b]).sum() + 0.5 * (both[a] == both[b]).sum()
                rows.append({"task": task, "criterion": c, "method_a": a, "method_b": b,
                             "pairs": len(both), "win_rate_a": float(wins / len(both))})
    return pd.DataFrame(rows, columns=["task", "criterion", "method_a", "method_b", "pairs", "win_rate_a"])


def agreement(df: pd.DataFrame) -> dict[str, float | None]:
    """Krippendorff's alpha (ordinal) per criterion over units = (item, method)."""
    import krippendorff

    out = {}
    for c in CRITERIA:
        wide = df.pivot_table(index="rater", columns=["item_id", "method"], values=c, aggfunc="last")
        data = wide.to_numpy(dtype=float)
        try:
            alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                                       value_domain=[1, 2, 3, 4, 5])
        except (ValueError, ZeroDivisionError):
            alpha = math.nan
        out[c] = None if alpha is None or not math.isfinite(alpha) else float(alpha)
    return out


def report(df: pd.DataFrame) -> dict:
    """Everything above as plain data (for JSON)."""
    return {"ratings": len(df), "raters": int(df["rater"].nunique()) if len(df) else 0,
            "methods": summarize(df).to_dict(orient="records"),
            "win_rates": win_rates(df).to_dict(orient="records"),
            "agreement": agreement(df)}


def summary_plot(table: pd.DataFrame):
    """Mean fidelity and realism per method with their 95% intervals (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not len(table):  # a message, not empty axes with text across them
        fig = Figure(figsize=(8, 1.2))
        fig.text(0.5, 0.5, "No ratings yet: rate an item above and the scores appear here.",
                 ha="center", va="center", fontsize=12, color="#555")
        return fig
    fig = Figure(figsize=(8, 0.9 + 0.45 * max(len(table), 1)), layout="constrained")
    axes = fig.subplots(1, len(CRITERIA), sharey=True)
    names = [f"{t}: {m}" for t, m in zip(table.get("task", []), table.get("method", []))]
    for ax, c in zip(axes, CRITERIA):
        ax.set_title(f"{c} (mean, 95% CI)")
        ax.set_xlim(0.8, 5.2)
        ax.grid(axis="x", alpha=0.3)
        mean = table[f"{c}_mean"].to_numpy()
        lo = np.nan_to_num(mean - table[f"{c}_ci_low"].to_numpy())
        hi = np.nan_to_num(table[f"{c}_ci_high"].to_numpy() - mean)
        y = np.arange(len(table))
        ax.errorbar(mean, y, xerr=[lo, hi], fmt="o", capsize=4)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
    return fig


# -- pairwise votes: Bradley–Terry -----------------------------------------------------------
def _bt_fit(methods: list[str], wins: np.ndarray, iters: int = 500, prior: float = 0.5) -> np.ndarray:
    """Bradley–Terry strengths (log scale, mean 0) from `wins[i, j]`, the wins of i over j
    (ties as ½ each), by the MM algorithm (Hunter 2004). `prior` adds that many virtual
    wins each way to every pair that met, so a method that won every time still has a
    finite strength."""
    n = len(methods)
    games = wins + wins.T
    met = games > 0
    w = wins + prior * met
    games = w + w.T
    p = np.ones(n)
    total_wins = w.sum(axis=1)
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :] + 1e-300)).sum(axis=1)
        new = np.where(denom > 0, total_wins / np.maximum(denom, 1e-300), p)
        new = np.maximum(new, 1e-12)
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(np.log(new) - np.log(p))) < 1e-9:
            p = new
            break
        p = new
    return np.log(p)


def _wins(votes: pd.DataFrame, methods: list[str]) -> np.ndarray:
    index = {m: i for i, m in enumerate(methods)}
    wins = np.zeros((len(methods), len(methods)))
    a = votes["method_a"].map(index).to_numpy()
    b = votes["method_b"].map(index).to_numpy()
    choice = votes["choice"].to_numpy()
    np.add.at(wins, (a[choice == "A"], b[choice == "A"]), 1.0)
    np.add.at(wins, (b[choice == "B"], a[choice == "B"]), 1.0)
    even = (choice == "tie") | (choice == "both_bad")  # neither preferred: half a win each
    np.add.at(wins, (a[even], b[even]), 0.5)
    np.add.at(wins, (b[even], a[even]), 0.5)
    return wins


def bradley_terry(votes: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> list[dict]:
    """Per task, each method's Bradley–Terry strength (log scale, mean 0 over the task's
    methods) with a 95% bootstrap interval (votes resampled with replacement), in rank
    order: [{task, method, strength, low, high, votes}]."""
    out = []
    if votes is None or not len(votes):
        return out
    rng = np.random.default_rng(seed)
    for task, g in votes.groupby("task", sort=True):
        methods = sorted(set(g["method_a"]) | set(g["method_b"]))
        strength = _bt_fit(methods, _wins(g, methods))
        boot = np.array([_bt_fit(methods, _wins(g.iloc[rng.integers(0, len(g), len(g))], methods))
                         for _ in range(n_boot)])
        low, high = np.percentile(boot, [2.5, 97.5], axis=0)
        count = pd.concat([g["method_a"], g["method_b"]]).value_counts()
        rows = [{"task": task, "method": m, "strength": float(s), "low": float(lo), "high": float(hi),
                 "votes": int(count.get(m, 0))}
                for m, s, lo, hi in zip(methods, strength, low, high)]
        out += sorted(rows, key=lambda r: (-r["strength"], r["method"]))
    return out


# -- gold checks, timing, coverage: which ratings are served ---------------------------------
FAST_SECONDS = 1.0      # a Likert rating faster than this per output, or a vote faster than this, is flagged
GOLD_FAIL_SHARE = 0.25  # a rater who fails more than this share of their gold checks is flagged
GOLD_MIN_CHECKS = 3     # ... once they have made at least this many
GOLD_RULE = (f"a rater is left out once they have answered at least {GOLD_MIN_CHECKS} gold checks "
             f"and failed more than {GOLD_FAIL_SHARE:.0%} of them")


def gold_items(runs, root: str | None = None) -> dict[str, dict]:
    """{item_id: {"top": method, "bottom": method}} for the gold items: the data folder's
    gold answers (kept apart from the runs, see `gold`), whether or not their runs remain."""
    from .gold import answers_for

    return answers_for(runs, root)


def _verified_only_as_verified(df):
    """Without the rows that carry a verified rater's id (`@name`) but were not verified (an
    older file, or a hand edit): they can never make a verified rater fail a gold check."""
    if df is None or not len(df) or "signed" not in df:
        return df
    return df[~(df["rater"].str.startswith("@") & ~df["signed"].astype(bool))]


def gold_checks(ratings: pd.DataFrame, votes: pd.DataFrame, gold: dict) -> pd.DataFrame:
    """One row per rater with gold answers: checks, failed, flagged. Each rater's first
    decision per gold item counts, however many views or votes followed. A rating passes
    when the reference scores at least as high as its degraded copy on both criteria and
    higher on one; a vote passes when it prefers the reference. Flagged: at least
    `GOLD_MIN_CHECKS` checks and more than `GOLD_FAIL_SHARE` of them failed."""
    results = []
    ratings, votes = _verified_only_as_verified(ratings), _verified_only_as_verified(votes)
    if len(ratings):
        for (rater, item), g in ratings[ratings["item_id"].isin(gold)].groupby(["rater", "item_id"]):
            g = g.sort_values("timestamp", kind="stable")
            first = g[g["view_id"] == g["view_id"].iloc[0]].drop_duplicates("method", keep="last")
            s = first.set_index("method")[["fidelity", "realism"]]
            top, bottom = gold[item]["top"], gold[item]["bottom"]
            if top in s.index and bottom in s.index:
                diff = s.loc[top] - s.loc[bottom]
                results.append((rater, item, first["timestamp"].min(), bool((diff >= 0).all() and diff.sum() > 0)))
    if votes is not None and len(votes):
        for row in votes[votes["item_id"].isin(gold)].itertuples():
            answer = gold[row.item_id]
            if {row.method_a, row.method_b} == {answer["top"], answer["bottom"]}:
                picked = {"A": row.method_a, "B": row.method_b}.get(row.choice)
                results.append((row.rater, row.item_id, row.timestamp, picked == answer["top"]))
    df = pd.DataFrame(results, columns=["rater", "item_id", "timestamp", "passed"])
    df = df.sort_values("timestamp", kind="stable").drop_duplicates(["rater", "item_id"], keep="first")
    table = df.groupby("rater")["passed"].agg(checks="size", passed="sum").reset_index()
    table["failed"] = table["checks"] - table["passed"]
    table["flagged"] = (table["checks"] >= GOLD_MIN_CHECKS) & (
        table["failed"] / table["checks"].clip(lower=1) > GOLD_FAIL_SHARE)
    return table[["rater", "checks", "failed", "flagged"]].astype({"checks": int, "failed": int})


def fast(ratings: pd.DataFrame) -> pd.Series:
    """Which Likert rows were given implausibly fast: under `FAST_SECONDS` per output of
    the submission (a row without its seconds, from an older file, is not flagged)."""
    if not len(ratings):
        return pd.Series(False, index=ratings.index, dtype=bool)
    n = ratings.groupby(["rater", "item_id", "view_id"])["method"].transform("size")
    return (ratings["seconds"] < FAST_SECONDS * n).fillna(False).astype(bool)


def fast_votes(votes: pd.DataFrame) -> pd.Series:
    if votes is None or not len(votes):
        return pd.Series(False, index=getattr(votes, "index", None), dtype=bool)
    return (votes["seconds"] < FAST_SECONDS).fillna(False).astype(bool)


def serve(ratings: pd.DataFrame, votes: pd.DataFrame | None = None, runs=None,
          include_flagged: bool = False, root: str | None = None) -> dict:
    """The one filter behind the page's summary, the API's, the CLI's and the export:
    final ratings only (see `queue.final`), gold items and the ratings of raters flagged
    by gold checks left out (kept apart under `flagged_*`; with `include_flagged` they
    stay in). Returns {ratings, votes, flagged_ratings, flagged_votes, gold, waiting}."""
    from .queue import final

    votes = votes if votes is not None else pd.DataFrame(columns=["rater", "item_id", "task", "method_a",
                                                                   "method_b", "choice", "seconds"])
    done = final(ratings)
    waiting = int((~done).sum())
    ratings = ratings[done]
    gold = gold_items(runs, root)
    checks = gold_checks(ratings, votes, gold)
    flagged = set(checks.loc[checks["flagged"], "rater"]) if not include_flagged else set()
    r_out = ratings["rater"].isin(flagged)
    v_out = votes["rater"].isin(flagged)
    return {"ratings": ratings[~r_out & ~ratings["item_id"].isin(gold)],
            "votes": votes[~v_out & ~votes["item_id"].isin(gold)],
            "flagged_ratings": ratings[r_out & ~ratings["item_id"].isin(gold)],
            "flagged_votes": votes[v_out & ~votes["item_id"].isin(gold)],
            "gold": checks, "waiting": waiting, "gold_items": set(gold)}


def coverage(ratings: pd.DataFrame, votes: pd.DataFrame | None, runs, target: int, skip=()) -> dict:
    """Each item's raters so far (Likert or pairwise) against the target number; items in
    `skip` (gold items: listing them would tell which they are) left out."""
    items = [r["run_id"] for r in runs.items()] if runs is not None else sorted(set(ratings["item_id"]))
    items = [i for i in items if i not in set(skip)]
    raters: dict[str, set] = {}
    for df in (ratings, votes):
        if df is not None and len(df):
            for item, rater in zip(df["item_id"], df["rater"]):
                raters.setdefault(item, set()).add(rater)
    per_item = [{"item_id": i, "raters": len(raters.get(i, ()))} for i in items]
    return {"target": target, "items": len(items),
            "items_at_target": sum(p["raters"] >= target for p in per_item), "per_item": per_item}


def full_report(picked: dict, runs=None, target: int = 3) -> dict:
    """`report` of the served ratings plus Bradley–Terry on the served votes (and the
    campaign's view of them: `ranking.campaign`), gold checks, fast ratings, the flagged
    raters' ratings apart, signed-in raters apart, and coverage."""
    r, v = picked["ratings"], picked["votes"]
    out = report(r) if len(r) else {"ratings": 0, "raters": 0, "methods": [], "win_rates": [],
                                    "agreement": {c: None for c in CRITERIA}}
    signed = r[r["signed"].astype(bool)] if len(r) else r
    out["signed_in_raters"] = int(signed["rater"].nunique()) if len(signed) else 0
    out["signed_in_methods"] = summarize(signed).to_dict(orient="records") if len(signed) else []
    out["votes"] = int(len(v))
    out["bradley_terry"] = bradley_terry(v)
    out["campaign"] = campaign(v, min_votes())  # clustered intervals, fragility, ... (review.ranking)
    out["fast"] = {"ratings": int(fast(r).sum()), "votes": int(fast_votes(v).sum()),
                   "seconds_threshold": FAST_SECONDS}
    out["gold"] = picked["gold"].to_dict(orient="records")
    gold = picked["gold"]
    out["flagged"] = {"raters": sorted(gold.loc[gold["flagged"], "rater"]) if len(gold) else [],
                      "methods": summarize(picked["flagged_ratings"]).to_dict(orient="records")
                      if len(picked["flagged_ratings"]) else []}
    out["waiting"] = picked["waiting"]
    out["coverage"] = coverage(r, v, runs, target, picked.get("gold_items", ()))
    return out


def public_report(rep: dict) -> dict:
    """What anyone may see of `full_report`: aggregates only (per method: counts, means,
    intervals, win rates, Bradley–Terry; agreement; coverage; how many ratings were fast
    or left out). No rater's name, comment or gold result: the per-rater gold table is
    dropped and the flagged raters are counted, not named."""
    out = {k: v for k, v in rep.items() if k != "gold"}
    out["flagged"] = {"raters": len(rep["flagged"]["raters"]), "methods": rep["flagged"]["methods"]}
    out["gold"] = {"raters_checked": len(rep["gold"]), "rule": GOLD_RULE}
    return out
