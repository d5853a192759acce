"""Review tab: blind ratings of fidelity and realism, and the summary of all ratings."""

from __future__ import annotations

import os

import gradio as gr
import pandas as pd
from PIL import Image

from ..review import OPEN_SECONDS, final, next_item as pick_next, rate as record, report, summarize, summary_plot
from ..review.queue import LABELS
from .common import fmt, mcp_tool, not_mcp_tool, user_errors

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


OAUTH = "OAUTH_CLIENT_ID"  # set on a Space with `hf_oauth: true`


def signed_rater(typed, profile) -> str:
    """Who is rating: on a Space with OAuth the logged-in user (what is typed is ignored,
    so no one can rate as someone else); elsewhere the name typed."""
    if os.environ.get(OAUTH):
        if profile is None:
            raise ValueError("sign in with Hugging Face first: on this Space ratings are "
                             "signed with your account")
        return profile.username
    return typed or ""


def next_item(data, rater):
    """The next blind item for `rater`: item id, description, source, then one image per
    slot (labelled A, B, … in this rater's order, the rest hidden) and cleared scores."""
    item = pick_next(data.runs, data.ratings, rater or "", data.secret)
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


def rate(data, preset, rater, item_id, scores, comment="", reveal=True):
    """Record one item's scores, {label: {"fidelity": 1–5, "realism": 1–5}} (or label →
    [fidelity, realism]). Returns a thank-you and, with `reveal`, what each label was;
    once revealed, the item cannot be rated again by this rater."""
    if not item_id:
        raise ValueError("press Next item first")
    rows = record(data.runs, data.ratings, rater or "", item_id, scores, data.secret,
                  comment=comment or "", preset=preset, reveal=bool(reveal))
    text = f"Saved {len(rows)} ratings for item `{item_id}`. Press **Next item** to go on."
    if reveal:
        text += "  \n" + "  \n".join(f"**{r['label']}** was `{r['method']}`" for r in rows)
    else:
        text += (f"  \nThe methods stay hidden. To change your scores, change them above and "
                 f"submit again within {OPEN_SECONDS // 60} minutes; then they are final and join "
                 "the summary.")
    return text


def page_scores(values) -> dict:
    """The page's radios (fidelity ×SLOTS, then realism ×SLOTS, by label) as `rate` takes
    them, for the outputs that have at least one score or are shown."""
    fidelity, realism = values[:SLOTS], values[SLOTS:2 * SLOTS]
    return {LABELS[i]: {"fidelity": f, "realism": r} for i, (f, r) in enumerate(zip(fidelity, realism))
            if f is not None or r is not None}


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(data):
    """The ratings summary: per-method table, chart with 95% intervals, agreement and win
    rates, and the ratings CSV to download (without the blind labels). Only final ratings
    are shown (see `review.queue`): one that may still change would not stay blind."""
    df, problems = data.ratings.read_checked()
    done = final(df)
    waiting, df = int((~done).sum()), df[done]
    table = summarize(df)
    shown = (table.rename(columns=SUMMARY_COLUMNS).map(fmt) if len(table)
             else pd.DataFrame(columns=list(SUMMARY_COLUMNS.values())))
    if len(df):
        rep = report(df)
        alpha = ", ".join(f"{c} {fmt(a) if a is not None else 'n/a (too few overlapping ratings)'}"
                          for c, a in rep["agreement"].items())
        wins = pd.DataFrame(rep["win_rates"], columns=WIN_COLUMNS)
        text = (f"{plural(rep['ratings'], 'rating')} from {plural(rep['raters'], 'rater')}. "
                f"Agreement between raters (Krippendorff's α, ordinal): {alpha}.")
    else:
        wins, text = pd.DataFrame(columns=WIN_COLUMNS), "No final ratings yet." if waiting else "No ratings yet."
    if waiting:
        text += (f"  \n{plural(waiting, 'rating')} made without the reveal may still change and "
                 f"join the summary {OPEN_SECONDS // 60} minutes after they were given.")
    if problems:
        text += "  \n**The ratings file has problems** (the rest was read): " + "; ".join(problems) + "."
    csv = _export(data.ratings) if len(df) or problems else None
    return shown, summary_plot(table), text, wins.map(fmt) if len(wins) else wins, csv


def _export(ratings) -> str | None:
    """The downloadable ratings, in a temporary folder (never in the data folder, which
    may be pushed), named by content so repeated refreshes reuse one file."""
    import hashlib
    import tempfile

    folder = os.path.join(tempfile.gettempdir(), "recontext-exports")
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".csv", dir=folder)
    os.close(fd)
    ratings.export(tmp, keep=final)
    with open(tmp, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    path = os.path.join(folder, f"ratings-{digest}.csv")
    os.replace(tmp, path)
    return path


def remembered_rater() -> gr.BrowserState:
    """The rater's name in the browser's storage. Render it outside the tabs (a hidden tab's
    state loads only when opened). Not a secret, only a name: a fixed key keeps it readable
    after the server restarts."""
    return gr.BrowserState("", storage_key="recontext-rater", secret="recontext-rater")


def build(studio, data, demo, remembered):
    oauth = bool(os.environ.get(OAUTH))
    gr.Markdown(ABOUT)
    with gr.Row(equal_height=True):
        rater = gr.Textbox(label="Your name", placeholder="e.g. ana", max_lines=1, scale=3,
                           interactive=not oauth,
                           info="your Hugging Face account signs your ratings" if oauth
                           else "remembered in this browser; ratings are signed with it")
        if oauth:
            gr.LoginButton(scale=1)
        go = gr.Button("Next item", variant="primary", scale=1)
    item_id = gr.Textbox(label="Item", interactive=False, max_lines=1, visible=False)
    info = gr.Markdown("Give your name and press **Next item**.")
    with gr.Row():
        source = gr.Image(label="Source", type="pil", format="png", interactive=False, height=220,
                          scale=1, elem_classes="result-image")
        gr.Column(scale=3)
    images, fid, real = [], [], []
    for row in range(0, SLOTS, 4):
        with gr.Row():
            for i in range(row, row + 4):
                with gr.Column(min_width=180):
                    images.append(gr.Image(label=f"Output {LABELS[i]}", type="pil", format="png",
                                           interactive=False, visible=False, height=256,
                                           elem_classes="result-image"))
                    fid.append(gr.Radio(SCORES, label=f"{LABELS[i]}: fidelity", visible=False))
                    real.append(gr.Radio(SCORES, label=f"{LABELS[i]}: realism", visible=False))
    comment = gr.Textbox(label="Comment (optional)", max_lines=3)
    with gr.Row():
        reveal = gr.Checkbox(value=True, label="Show which method made each output after I submit "
                             "(you cannot rate the item again after that)")
        submit = gr.Button("Submit ratings", variant="primary")
    result = gr.Markdown()

    gr.Markdown("### Summary of all ratings")
    refresh = gr.Button("Refresh summary", size="sm")
    table = gr.Dataframe(value=pd.DataFrame(columns=list(SUMMARY_COLUMNS.values())),
                         label="Per task and method (scores 1–5, bootstrap 95% intervals)",
                         interactive=False, wrap=True)
    chart = gr.Plot(label="Mean scores with 95% intervals", show_label=False)
    stats = gr.Markdown()
    wins = gr.Dataframe(value=pd.DataFrame(columns=WIN_COLUMNS), interactive=False, wrap=True,
                        label="Pairwise win rates (items both methods were rated on; ties count ½)")
    download = gr.File(label="All ratings (CSV, without the blind labels)", interactive=False)
    summary_outputs = [table, chart, stats, wins, download]

    @not_mcp_tool
    @user_errors
    def on_next(profile: gr.OAuthProfile | None, rater: str):
        return next_item(data, signed_rater(rater, profile))

    @user_errors
    def on_rate_page(profile: gr.OAuthProfile | None, rater, item_id, *values):
        return rate(data, studio.preset.name, signed_rater(rater, profile), item_id,
                    page_scores(values), values[2 * SLOTS], values[2 * SLOTS + 1])

    @not_mcp_tool
    @user_errors
    def api_rate(rater: str, item_id: str, scores: dict[str, dict[str, int]], comment: str = "",
                 reveal: bool = True, profile: gr.OAuthProfile | None = None) -> str:
        """Rate one review item, blind.

        Args:
            rater: your name (on a Space with sign-in, your account is used instead)
            item_id: the item from /next_item
            scores: for every output label you were shown, {"A": {"fidelity": 1-5, "realism": 1-5}, "B": ...}
            comment: optional remark
            reveal: show which method made each output; afterwards the item cannot be rated again
        """
        if not isinstance(reveal, bool):
            raise ValueError(f"reveal must be true or false, got {reveal!r}")
        return rate(data, studio.preset.name, signed_rater(rater, profile), item_id, scores,
                    comment, reveal)

    @mcp_tool("summary")
    @user_errors
    def on_summary():
        """The human ratings so far: per-method mean fidelity and realism with bootstrap 95%
        intervals, a chart, agreement between raters and pairwise win rates, and the ratings
        as a CSV file (without the blind labels)."""
        return summary(data)

    go.click(on_next, rater, [item_id, info, source, *images, *fid, *real, result],
             api_name="next_item")
    submit.click(on_rate_page, [rater, item_id, *fid, *real, comment, reveal], result,
                 api_visibility="private"
                 ).success(user_errors(lambda: summary(data)), None, summary_outputs,
                           api_visibility="private")
    gr.api(api_rate, api_name="rate")
    refresh.click(on_summary, None, summary_outputs, api_name="summary")
    if not oauth:
        rater.change(lambda name: name, rater, remembered, api_visibility="private", queue=False)
        demo.load(lambda saved: saved or gr.skip(), remembered, rater, api_visibility="private",
                  queue=False)
    else:
        def from_login(profile: gr.OAuthProfile | None):
            return profile.username if profile else ""
        demo.load(from_login, None, rater, api_visibility="private", queue=False)
    demo.load(user_errors(lambda: summary(data)), None, summary_outputs,
              api_visibility="private")
