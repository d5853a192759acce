"""Per-method scores with bootstrap intervals, pairwise win rates, rater agreement."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

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
