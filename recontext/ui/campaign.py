"""The Review tab's campaign view: how far the pairwise votes have got. Per task, the
Bradley–Terry ranking with 95% intervals (raters as clusters), the win-rate matrix as a
heatmap, votes per method pair, how many pairs reached their minimum, the fragility
figure and the votes estimated to separate the closest adjacent pair. Drawn from the
report's "campaign" entry (`review.ranking.campaign`, what /summary returns)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd

from ..review import sampling
from .common import fmt

COLUMNS = ["task", "rank", "method", "strength", "95% low", "95% high", "votes", "weighted",
           "weighted 95% low", "weighted 95% high"]


def build(report_json: gr.JSON) -> None:
    """The view's widgets, redrawn whenever the summary's report changes."""
    gr.Markdown("### Pairwise campaign")
    text = gr.Markdown("No pairwise votes yet.", elem_id="campaign-text")
    plot = gr.Plot(label="Ranking, win rates and votes per pair", show_label=False, elem_id="campaign-plot")
    table = gr.Dataframe(value=pd.DataFrame(columns=COLUMNS), interactive=False, wrap=True,
                         label="Ranking (strengths on the log scale; 95% intervals with raters as clusters; "
                               "weighted: every method pair counts alike)")
    report_json.change(view, report_json, [text, plot, table], api_visibility="private", queue=False)


def view(report: dict | None):
    """(Markdown, matplotlib Figure or None, ranking table) for the report's campaigns."""
    tasks = (report or {}).get("campaign") or []
    if not tasks:
        return "No pairwise votes yet.", None, pd.DataFrame(columns=COLUMNS)
    rows = [{"task": c["task"], "rank": k + 1, "method": r["method"], "strength": r["strength"],
             "95% low": r["low"], "95% high": r["high"], "votes": r["votes"], "weighted": r["weighted"],
             "weighted 95% low": r["weighted_low"], "weighted 95% high": r["weighted_high"]}
            for c in tasks for k, r in enumerate(c["ranking"])]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return "  \n".join(describe(c) for c in tasks), figure(tasks), table.map(fmt)


def describe(c: dict) -> str:
    """One task's campaign in words."""
    cov = c["coverage"]
    lines = [f"**{c['task']}**: {c['votes']} votes from {c['raters']} rater{'s' * (c['raters'] != 1)}; "
             f"{cov['pairs_at_min']} of {cov['pairs']} method pairs have at least {cov['min_votes']} votes "
             f"(pair choice: {sampling.mode()})."]
    frag = c["fragility"]
    if frag["votes"] is not None:
        lines.append(f"Fragility: removing **{frag['votes']}** vote{'s' * (frag['votes'] != 1)} changes the "
                     f"order ({frag['pair'][0]} above {frag['pair'][1]} flips).")
    if c["raters"] < 2:
        lines.append("One rater so far: no interval that treats raters as clusters yet.")
    elif c["all_separated"]:
        lines.append("Every adjacent pair is separated at 95% (the interval of each difference of "
                     "strengths excludes 0).")
    elif (close := c["closest"]) is not None:
        more = close["more_votes"]
        lines.append(f"Closest adjacent pair: {close['upper']} vs {close['lower']} (gap {fmt(close['gap'])}, "
                     f"95% interval {fmt(close['low'])} to {fmt(close['high'])}); "
                     + (f"about **{more}** more vote{'s' * (more != 1)} to separate it at 95% (if the gap holds)."
                        if more is not None else "no estimate of the votes it needs yet."))
    if not c["weighted_order_agrees"]:
        lines.append("The pair-frequency-weighted order differs from this one: the ranking depends on "
                     "which pairs were shown most.")
    return " ".join(lines)


def figure(tasks: list[dict]):
    """Per task: strengths with intervals, the win-rate heatmap, votes per pair."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6 * len(tasks)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(tasks), 3))
    for (rank_ax, win_ax, n_ax), c in zip(axes, tasks):
        ranked = c["ranking"]
        names = [r["method"] for r in ranked]
        s = np.array([r["strength"] for r in ranked], float)
        lo = np.array([np.nan if r["low"] is None else r["low"] for r in ranked], float)
        hi = np.array([np.nan if r["high"] is None else r["high"] for r in ranked], float)
        y = np.arange(len(ranked))
        rank_ax.errorbar(s, y, xerr=[np.nan_to_num(s - lo), np.nan_to_num(hi - s)], fmt="o", capsize=4)
        rank_ax.set_yticks(y, names)
        rank_ax.invert_yaxis()
        rank_ax.grid(axis="x", alpha=0.3)
        rank_ax.set_title(f"{c['task']}\nstrength, 95% interval (raters as clusters)", fontsize=10)
        order = [c["methods"].index(m) for m in names]
        rate = np.array([[np.nan if v is None else v for v in c["win_rate"][i]] for i in order], float)[:, order]
        im = win_ax.imshow(rate, vmin=0, vmax=1, cmap="RdBu")
        count = np.array(c["pair_votes"])[np.ix_(order, order)]
        blues = matplotlib.colormaps["Blues"].copy()
        blues.set_bad("white")  # the diagonal and pairs that never met
        n_im = n_ax.imshow(np.where(count > 0, count, np.nan), cmap=blues, vmin=0)
        for ax, title, values in ((win_ax, "win rate of row over column", rate),
                                  (n_ax, "votes per pair", count)):
            ax.set_xticks(y, names, rotation=45, ha="right")
            ax.set_yticks(y, names)
            ax.set_title(title, fontsize=10)
            top = np.nanmax(np.where(np.isfinite(values), values, np.nan)) if np.isfinite(values).any() else 1
            for i in y:
                for j in y:
                    if i != j and np.isfinite(values[i, j]) and (values is rate or values[i, j] > 0):
                        v = values[i, j]
                        dark = (v < 0.2 or v > 0.8) if values is rate else v > 0.6 * top
                        ax.text(j, i, f"{v:.2f}" if values is rate else f"{int(v)}", ha="center",
                                va="center", fontsize=8, color="white" if dark else "black")
        fig.colorbar(im, ax=win_ax, shrink=0.8)
        fig.colorbar(n_im, ax=n_ax, shrink=0.8)
    return fig
