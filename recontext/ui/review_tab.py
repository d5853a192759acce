"""Review tab: blind ratings of fidelity and realism, and the summary of all ratings."""

from __future__ import annotations

import os

import gradio as gr
import pandas as pd
from PIL import Image

from ..review import next_item as pick_next, rate as record, report, summarize, summary_plot
from ..review.queue import LABELS, TARGET
from .common import fmt, user_errors

SLOTS = 8  # most outputs a run has (inversion: 3 methods × 2 variants; a sweep: 6 scales)
SCORES = [1, 2, 3, 4, 5]
WIN_COLUMNS = ["task", "criterion", "method_a", "method_b", "pairs", "win_rate_a"]

ABOUT = """Rate outputs **blind**: every run from the other tabs with two or more outputs is an
item. Give your name, press **Next item**, and score each output 1–5 for **fidelity** (does it
keep the source photo / garment / what the prompt asks for?) and **realism** (would it pass as a
real photo?). Labels A, B, C… are shuffled for each rater; which method made which output is
shown after you submit. Items with the fewest ratings come first."""

SUMMARY_COLUMNS = {"task": "task", "method": "method", "ratings": "ratings", "raters": "raters",
                   "fidelity_mean": "fidelity", "fidelity_ci_low": "fid. 95% low",
                   "fidelity_ci_high": "fid. 95% high", "realism_mean": "realism",
                   "realism_ci_low": "real. 95% low", "realism_ci_high": "real. 95% high"}


def _describe(item) -> str:
    p = item.prompts
    lines = [f"**Item** `{item.item_id}` · task **{item.task}** · rated by {item.ratings_so_far} "
             f"so far · {item.remaining} left for you"]
    for key, name in (("prompt", "Prompt"), ("caption", "Caption"), ("source", "Source prompt"),
                      ("target", "Target prompt")):
        if p.get(key):
            lines.append(f"{name}: *{p[key]}*")
    if item.task == "edit":
        lines.append("Fidelity: keeps the photo's identity and layout. Realism: a plausible photo "
                     "that shows the target prompt.")
    return "  \n".join(lines)


def next_item(data, rater):
    """The next blind item for `rater`: item id, description, source, then one image per
    slot (labelled A, B, … in this rater's order, the rest hidden) and cleared scores."""
    item = pick_next(data.runs, data.ratings, rater or "")
    if item is None:
        hidden = [gr.Image(value=None, visible=False) for _ in range(SLOTS)]
        radios = [gr.Radio(value=None, visible=False) for _ in range(2 * SLOTS)]
        return ("", "You have rated every item. Thank you! Make more runs in the other tabs, "
                "or see the summary below.", None, *hidden, *radios, "")
    shown = []
    for i in range(SLOTS):
        if i < len(item.outputs):
            with Image.open(item.outputs[i]) as im:  # pixels, not the file: its name says nothing
                shown.append(gr.Image(value=im.copy(), label=f"Output {LABELS[i]}", visible=True))
        else:
            shown.append(gr.Image(value=None, visible=False))
    radios = [gr.Radio(value=None, visible=i < len(item.outputs)) for _ in range(2) for i in range(SLOTS)]
    source = Image.open(item.source).copy() if item.source else None
    return (item.item_id, _describe(item), source, *shown, *radios, "")


def rate(data, preset, rater, item_id, *values):
    """Record one item's scores: `values` = fidelity ×8, realism ×8 (by label), comment,
    reveal. Returns what each label was (or a thank-you)."""
    fidelity, realism = values[:SLOTS], values[SLOTS:2 * SLOTS]
    comment, reveal = values[2 * SLOTS], values[2 * SLOTS + 1]
    if not item_id:
        raise ValueError("press Next item first")
    rows = record(data.runs, data.ratings, rater or "", item_id, list(zip(fidelity, realism)),
                  comment=comment or "", preset=preset)
    text = f"Saved {len(rows)} ratings for item `{item_id}`. Press **Next item** to go on."
    if reveal:
        text += "  \n" + "  \n".join(f"**{r['label']}** was `{r['method']}`" for r in rows)
    return text


def summary(data):
    """The ratings summary: per-method table, chart with 95% intervals, agreement and win
    rates, and the ratings CSV to download."""
    df = data.ratings.read()
    table = summarize(df)
    shown = (table.rename(columns=SUMMARY_COLUMNS).map(fmt) if len(table)
             else pd.DataFrame(columns=list(SUMMARY_COLUMNS.values())))
    if len(df):
        rep = report(df)
        alpha = ", ".join(f"{c} {fmt(a) if a is not None else 'n/a (too few overlapping ratings)'}"
                          for c, a in rep["agreement"].items())
        wins = pd.DataFrame(rep["win_rates"])
        text = (f"{rep['ratings']} ratings from {rep['raters']} raters. Agreement between raters "
                f"(Krippendorff's α, ordinal): {alpha}.")
    else:
        wins, text = pd.DataFrame(columns=WIN_COLUMNS), "No ratings yet."
    csv = data.ratings.path if os.path.exists(data.ratings.path) else None
    return shown, summary_plot(table), text, wins.map(fmt) if len(wins) else wins, csv


def remembered_rater() -> gr.BrowserState:
    """The rater's name in the browser's storage. Render it outside the tabs (a hidden tab's
    state loads only when opened). Not a secret, only a name: a fixed key keeps it readable
    after the server restarts."""
    return gr.BrowserState("", storage_key="recontext-rater", secret="recontext-rater")


def build(studio, data, demo, remembered):
    gr.Markdown(ABOUT)
    with gr.Row(equal_height=True):
        rater = gr.Textbox(label="Your name", placeholder="e.g. ana", max_lines=1, scale=3,
                           info="remembered in this browser; ratings are signed with it")
        if os.environ.get("OAUTH_CLIENT_ID"):  # a Space with `hf_oauth: true`
            gr.LoginButton(scale=1)
        go = gr.Button("Next item", variant="primary", scale=1)
    item_id = gr.Textbox(label="Item", interactive=False, max_lines=1, visible=False)
    info = gr.Markdown("Give your name and press **Next item**.")
    with gr.Row():
        source = gr.Image(label="Source", type="pil", format="png", interactive=False, height=220,
                          scale=1)
        gr.Column(scale=3)
    images, fid, real = [], [], []
    for row in range(0, SLOTS, 4):
        with gr.Row():
            for i in range(row, row + 4):
                with gr.Column(min_width=180):
                    images.append(gr.Image(label=f"Output {LABELS[i]}", type="pil", format="png",
                                           interactive=False, visible=False, height=200))
                    fid.append(gr.Radio(SCORES, label=f"{LABELS[i]}: fidelity", visible=False))
                    real.append(gr.Radio(SCORES, label=f"{LABELS[i]}: realism", visible=False))
    comment = gr.Textbox(label="Comment (optional)", max_lines=3)
    with gr.Row():
        reveal = gr.Checkbox(value=True, label="Show which method made each output after I submit")
        submit = gr.Button("Submit ratings", variant="primary")
    result = gr.Markdown()

    gr.Markdown("### Summary of all ratings")
    refresh = gr.Button("Refresh summary", size="sm")
    table = gr.Dataframe(label="Per task and method (scores 1–5, bootstrap 95% intervals)",
                         interactive=False)
    chart = gr.Plot(label="Mean scores with 95% intervals", show_label=False)
    stats = gr.Markdown()
    wins = gr.Dataframe(label="Pairwise win rates (items both methods were rated on; ties count ½)",
                        interactive=False)
    download = gr.File(label="All ratings (CSV)", interactive=False)
    summary_outputs = [table, chart, stats, wins, download]

    @user_errors
    def on_next(name):
        return next_item(data, name)

    @user_errors
    def on_rate(name, item, *values):
        return rate(data, studio.preset.name, name, item, *values)

    go.click(on_next, rater, [item_id, info, source, *images, *fid, *real, result],
             api_name="next_item")
    submit.click(on_rate, [rater, item_id, *fid, *real, comment, reveal], result, api_name="rate"
                 ).success(lambda: summary(data), None, summary_outputs, api_visibility="private")
    refresh.click(lambda: summary(data), None, summary_outputs, api_name="summary")
    rater.change(lambda name: name, rater, remembered, api_visibility="private", queue=False)
    demo.load(lambda saved: saved or gr.skip(), remembered, rater, api_visibility="private",
              queue=False)
    demo.load(lambda: summary(data), None, summary_outputs, api_visibility="private")
    if os.environ.get("OAUTH_CLIENT_ID"):
        def from_login(profile: gr.OAuthProfile | None):
            return profile.username if profile else gr.skip()
        demo.load(from_login, None, rater, api_visibility="private", queue=False)
