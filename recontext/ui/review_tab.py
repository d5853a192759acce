"""Review tab: blind ratings of fidelity and realism, pairwise votes, and the summary."""

from __future__ import annotations

import hmac
import os
import tempfile

import gradio as gr
import pandas as pd

from ..review import (CHOICES, OPEN_SECONDS, full_report, next_item as pick_next, next_pair as pick_pair,
                      rate as record, serve, summary_plot, target_raters, vote as record_vote)
from ..review import raters as rater_ids
from ..review.queue import LABELS
from ..review.summary import GOLD_RULE, public_report
from ..runs import MAX_OUTPUTS
from . import campaign
from .common import fmt, mcp_tool, not_mcp_tool, user_errors
from .served import VIEW_TTL, VIEWS, serve_view, served  # noqa: F401 (served copies, bounded)

SLOTS = MAX_OUTPUTS  # every run the studio can save fits on the page (a 12-scale sweep)
SCORES = [1, 2, 3, 4, 5]
WIN_COLUMNS = ["task", "criterion", "method_a", "method_b", "pairs", "win_rate_a"]
BT_COLUMNS = ["task", "method", "strength", "low", "high", "votes"]
MODES = ("both", "likert", "pairwise")

ABOUT = """Rate outputs **blind**: every run from the other tabs with two or more outputs is an
item. Give your name, press **Next item**, and score each output 1–5 for **fidelity** (does it
keep the source photo / garment / what the prompt asks for?) and **realism** (would it pass as a
real photo?). Labels A, B, C… are shuffled for each rater; which method made which output is
shown after you submit. Items with the fewest ratings come first."""
GOLD_NOTE = "Some items are gold checks with a known answer: " + GOLD_RULE + "."
PAIR_ABOUT = """**Pairwise**: press **Next pair**, see two outputs of one item (positions drawn at
random) and say which is better, or that they are equally good or both bad."""

SUMMARY_COLUMNS = {"task": "task", "method": "method", "ratings": "ratings", "raters": "raters",
                   "fidelity_mean": "fidelity", "fidelity_ci_low": "fid. 95% low",
                   "fidelity_ci_high": "fid. 95% high", "realism_mean": "realism",
                   "realism_ci_low": "real. 95% low", "realism_ci_high": "real. 95% high"}


def review_mode() -> str:
    """What this deployment asks raters for: `$RECONTEXT_REVIEW_MODE` = both (default),
    likert or pairwise."""
    mode = os.environ.get("RECONTEXT_REVIEW_MODE", "both").strip().lower() or "both"
    if mode not in MODES:
        raise ValueError(f"RECONTEXT_REVIEW_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _describe(item) -> str:
    """The item's heading: only text the studio made (ids, task, counts), as Markdown.
    What a user typed (prompts) is shown apart, as plain text (`_prompts`)."""
    lines = [f"**Item** `{item.item_id}` · task **{item.task}** · rated by {item.ratings_so_far} "
             f"so far · {item.remaining} left for you"]
    if item.task == "edit":
        lines.append("Fidelity: keeps the photo's identity and layout. Realism: a plausible photo "
                     "that shows the target prompt.")
    return "  \n".join(lines)


def _prompts(prompts: dict) -> str:
    """What the generation was asked for, as plain text (never rendered as Markdown)."""
    names = (("prompt", "Prompt"), ("caption", "Caption"), ("source", "Source prompt"),
             ("target", "Target prompt"))
    return "\n".join(f"{name}: {prompts[key]}" for key, name in names if prompts.get(key))


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


def who(data, rater, username: str | None = None) -> tuple[str, bool]:
    """(rater id, verified) for what a request carries: a typed name, a rater token from a
    personal link, or a signed-in account (`review.raters`, `RECONTEXT_RATERS`)."""
    return rater_ids.identify(data.root, data.secret, rater or "", username)


def item(data, rater, username: str | None = None):
    """The next blind item for `rater`, plain: a dict {"item_id", "view_token",
    "description" (Markdown, only text the studio made), "prompts" (plain text), "labels"
    (the outputs' labels A, B, … in this rater's order), "message"}, then the source image
    (or None) and one image per slot, labelled in order, None beyond the item's outputs."""
    rater, _ = who(data, rater, username)
    found = pick_next(data.runs, data.ratings, rater, data.secret, votes=data.votes)
    if found is None:
        return ({"item_id": "", "view_token": "", "description": "", "prompts": "", "labels": [],
                 "message": "You have rated every item. Thank you! Make more runs in the other tabs, "
                            "or see the summary below."}, None, *[None] * SLOTS)
    n = len(found.outputs)
    images = serve_view([found.source, *found.outputs], (rater, "likert"))
    return ({"item_id": found.item_id, "view_token": found.view_token, "description": _describe(found),
             "prompts": _prompts(found.prompts), "labels": list(LABELS[:n]), "message": ""},
            images[0], *[images[1 + i] if i < n else None for i in range(SLOTS)])


def item_page(result: dict):
    """The page's view of `item`'s dict: the item and token boxes, the heading, the prompts,
    each output slot and its radios shown or hidden (scores cleared), the result text cleared."""
    n = len(result["labels"])
    shown = [gr.update(visible=i < n, label=f"Output {LABELS[i]}") for i in range(SLOTS)]
    radios = [gr.update(value=None, visible=i < n) for _ in range(2) for i in range(SLOTS)]
    return (result["item_id"], result["view_token"], result["description"] or result["message"],
            result["prompts"], *shown, *radios, "")


def next_item(data, rater, username: str | None = None):
    """`item` as the page shows it: item id, view token, description, prompts (plain
    text), source, then one image per slot (labelled A, B, … in this rater's order, the
    rest hidden) and cleared scores."""
    result, source, *outputs = item(data, rater, username)
    n = len(result["labels"])
    shown = [gr.Image(value=outputs[i], label=f"Output {LABELS[i]}", visible=True) if i < n
             else gr.Image(value=None, visible=False) for i in range(SLOTS)]
    radios = [gr.Radio(value=None, visible=i < n) for _ in range(2) for i in range(SLOTS)]
    return (result["item_id"], result["view_token"], result["description"] or result["message"],
            result["prompts"], source, *shown, *radios, "")


def rate(data, preset, rater, item_id, scores, comment="", reveal=True, view_token="", username=None):
    """Record one item's scores, {label: {"fidelity": 1–5, "realism": 1–5}} (or label →
    [fidelity, realism]), for the view `view_token` (from `next_item`). Returns a
    thank-you and, with `reveal`, what each label was; once revealed, the item cannot be
    rated again by this rater."""
    if review_mode() == "pairwise":
        raise ValueError("this studio collects pairwise votes only: use Next pair (/next_pair, /vote)")
    if not item_id:
        raise ValueError("press Next item first")
    rater, verified = who(data, rater, username)
    rows = record(data.runs, data.ratings, rater, item_id, scores, data.secret,
                  view_token=view_token or "", comment=comment or "", preset=preset,
                  reveal=bool(reveal), signed=verified, votes=data.votes)
    text = f"Saved {len(rows)} ratings for item `{item_id}`. Press **Next item** to go on."
    if reveal:
        text += "  \n" + "  \n".join(f"**{r['label']}** was `{r['method']}`" for r in rows)
    else:
        text += (f"  \nThe methods stay hidden. To change your scores, change them above and "
                 f"submit again within {OPEN_SECONDS // 60} minutes; then they are final and join "
                 "the summary.")
    return text


def next_pair(data, rater, username: str | None = None):
    """({item_id, view_token, prompts}, output A, output B, source or None) for `rater`."""
    rater, _ = who(data, rater, username)
    pair = pick_pair(data.runs, data.votes, rater, data.secret, ratings=data.ratings)
    if pair is None:
        return ({"item_id": "", "view_token": "", "prompts": {},
                 "message": "You have compared every pair. Thank you!"}, None, None, None)
    a, b, source = serve_view([*pair.outputs, pair.source], (rater, "pair"))
    return ({"item_id": pair.item_id, "view_token": pair.view_token, "prompts": pair.prompts}, a, b, source)


def vote(data, preset, rater, item_id, view_token, choice, username=None) -> str:
    if review_mode() == "likert":
        raise ValueError("this studio collects Likert ratings only: use Next item (/next_item, /rate)")
    if not item_id:
        raise ValueError("press Next pair first")
    rater, verified = who(data, rater, username)
    row = record_vote(data.runs, data.votes, rater, item_id, view_token or "", choice,
                      data.secret, preset=preset, signed=verified, ratings=data.ratings)
    said = {"A": "A is better", "B": "B is better", "tie": "a tie", "both_bad": "both bad"}[choice]
    return (f"Vote saved for item `{item_id}`: {said}. A was `{row['method_a']}`, B was "
            f"`{row['method_b']}`. Press **Next pair** to go on.")


def page_scores(values) -> dict:
    """The page's radios (fidelity ×SLOTS, then realism ×SLOTS, by label) as `rate` takes
    them, for the outputs that have at least one score or are shown."""
    fidelity, realism = values[:SLOTS], values[SLOTS:2 * SLOTS]
    return {LABELS[i]: {"fidelity": f, "realism": r} for i, (f, r) in enumerate(zip(fidelity, realism))
            if f is not None or r is not None}


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary_report(data, admin: bool = False) -> tuple[dict, str | None]:
    """The summary of the served ratings (`review.serve`: final only, gold items and
    raters flagged by gold checks apart) as plain data: the report (per-method scores
    with 95% intervals, agreement, win rates, the Bradley–Terry ranking of the pairwise
    votes, coverage, ...) with "text", the summary in words; then a CSV to download (None
    when there is nothing in it). Public (the default): aggregates only, no rater's name,
    comment or gold result (`summary.public_report`), and the CSV is the per-method table.
    With `admin`: everything, and the CSV is the full export (`review.export`)."""
    df, problems = data.ratings.read_checked()
    votes, vote_problems = data.votes.read_checked() if data.votes is not None else (None, [])
    picked = serve(df, votes, data.runs, root=data.root)
    r = picked["ratings"]
    rep = full_report(picked, data.runs, target_raters())
    if len(r):
        alpha = ", ".join(f"{c} {fmt(a) if a is not None else 'n/a (too few overlapping ratings)'}"
                          for c, a in rep["agreement"].items())
        signed_in = (f" {rep['signed_in_raters']} of them verified (an invite link or an account); the "
                     "other names are unverified." if rep["signed_in_raters"] else "")
        text = (f"{plural(rep['ratings'], 'rating')} from {plural(rep['raters'], 'rater')}.{signed_in} "
                f"Agreement between raters (Krippendorff's α, ordinal): {alpha}.")
    else:
        text = "No final ratings yet." if picked["waiting"] else "No ratings yet."
    if rep["votes"]:
        text += f"  \n{plural(rep['votes'], 'pairwise vote')}: Bradley–Terry ranking below."
    if picked["waiting"]:
        text += (f"  \n{plural(picked['waiting'], 'rating')} made without the reveal may still change "
                 f"and join the summary {OPEN_SECONDS // 60} minutes after they were given.")
    cov = rep["coverage"]
    text += (f"  \nCoverage: {cov['items_at_target']} of {plural(cov['items'], 'item')} have "
             f"{cov['target']} or more raters.")
    if rep["fast"]["ratings"] or rep["fast"]["votes"]:
        text += (f"  \nFlagged as implausibly fast (under {FAST_TEXT}): "
                 f"{plural(rep['fast']['ratings'], 'rating')}, {plural(rep['fast']['votes'], 'vote')}.")
    if rep["flagged"]["raters"]:
        text += (f"  \n{plural(len(rep['flagged']['raters']), 'rater')} failed gold checks; their "
                 f"{plural(len(picked['flagged_ratings']), 'rating')} and "
                 f"{plural(len(picked['flagged_votes']), 'vote')} are left out above.")
    problems = problems + [f"votes: {p}" for p in vote_problems]
    if problems:
        text += "  \n**The ratings file has problems** (the rest was read): " + "; ".join(problems) + "."
    if admin:
        return {**rep, "text": text}, _export(data) if len(df) or (votes is not None and len(votes)) else None
    rep = public_report(rep)
    return {**rep, "text": text}, _aggregates(rep) if rep["methods"] or rep["bradley_terry"] else None


def summary_view(report: dict, csv: str | None):
    """The page's view of `summary_report`: the per-method table, the chart with 95%
    intervals, the text, the win rates, the CSV, the Bradley–Terry ranking, the report.
    `report` may have come back from the page, its NaNs (a one-rating interval) as nulls."""
    table = pd.DataFrame(report["methods"])
    scores = [c for c in table.columns if c.endswith(("_mean", "_ci_low", "_ci_high"))]
    table[scores] = table[scores].astype(float)
    shown = (table.rename(columns=SUMMARY_COLUMNS).map(fmt) if len(table)
             else pd.DataFrame(columns=list(SUMMARY_COLUMNS.values())))
    wins = pd.DataFrame(report["win_rates"], columns=WIN_COLUMNS)
    bt = pd.DataFrame(report["bradley_terry"], columns=BT_COLUMNS)
    return (shown, summary_plot(table), report["text"], wins.map(fmt) if len(wins) else wins, csv,
            bt.map(fmt) if len(bt) else bt, report)


def summary(data):
    """`summary_view` of `summary_report`: what the page shows."""
    return summary_view(*summary_report(data))


FAST_TEXT = "1 s per output"


def _temp_csv(df: pd.DataFrame, stem: str) -> str:
    """`df` as a CSV in a temporary folder (never in the data folder, which may be pushed),
    named by content so repeated refreshes reuse one file."""
    import hashlib

    from ..review.export import write

    folder = os.path.join(tempfile.gettempdir(), "recontext-exports")
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".csv", dir=folder)
    os.close(fd)
    write(df, tmp, "csv") if stem == "ratings" else df.to_csv(tmp, index=False)
    with open(tmp, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    path = os.path.join(folder, f"{stem}-{digest}.csv")
    os.replace(tmp, path)
    return path


def _aggregates(report: dict) -> str:
    """The public CSV: one row per task and method, the Likert means and intervals and the
    Bradley–Terry strength with its interval; no rater, no id, no comment."""
    likert = pd.DataFrame(report["methods"])
    bt = pd.DataFrame(report["bradley_terry"], columns=BT_COLUMNS).rename(columns={
        "strength": "bt_strength", "low": "bt_low", "high": "bt_high"})
    if len(likert) and len(bt):
        table = likert.merge(bt, on=["task", "method"], how="outer")
    else:
        table = likert if len(likert) else bt
    return _temp_csv(table.sort_values(["task", "method"]), "summary")


def _export(data) -> str:
    """The admin's CSV: every final rating and vote with its rater, comment, gold and
    flags (`review.export.table`)."""
    from ..review.export import table

    return _temp_csv(table(data), "ratings")


ADMIN = "RECONTEXT_REVIEW_ADMIN"


def admin_summary(data, key) -> tuple[dict, str | None]:
    """`summary_report` with everything (per-rater gold checks, flagged raters, comments in
    the CSV), for whoever gives the deployment's admin secret (`$RECONTEXT_REVIEW_ADMIN`)."""
    secret = os.environ.get(ADMIN, "")
    if not secret:
        raise ValueError(f"the admin view is off on this studio (set {ADMIN} to turn it on), or use "
                         "`python -m recontext ratings export` where the data folder is")
    if not isinstance(key, str) or not hmac.compare_digest(key.encode(), secret.encode()):
        raise ValueError("wrong admin key")
    return summary_report(data, admin=True)


def remembered_rater() -> gr.BrowserState:
    """The rater's name in the browser's storage. Render it outside the tabs (a hidden tab's
    state loads only when opened). Not a secret, only a name: a fixed key keeps it readable
    after the server restarts."""
    return gr.BrowserState("", storage_key="recontext-rater", secret="recontext-rater")


def saving_note(data) -> str:
    """What happens to what visitors upload and make: said on the page."""
    repo = os.environ.get("RECONTEXT_HF_DATASET", "").strip() if data.scheduler is not None else ""
    return ("Uploads and outputs of every run are **saved** on this studio's server (its data "
            "folder), with the ratings" + (f", and pushed to the Hugging Face dataset `{repo}`" if repo
                                            else "") + ".")


RATERS_NOTE = {
    "invite": "**Rating by invitation**: open the personal link you were sent (it signs your ratings); "
              "a typed name is not accepted.",
    "signin": "Sign in with Hugging Face: your account signs your ratings.",
    "open": "**Names are not verified** (there is no sign-in here): anyone can type any name; "
            "variants of one name (case, full-width or look-alike letters) count as one rater. Unverified "
            "names are counted apart from invited or signed-in raters and never affect theirs.",
}


def build(studio, data, demo, remembered):
    """The Review tab. `studio` may be None (a review-only deployment: the rows take the
    preset from each run)."""
    preset = studio.preset.name if studio is not None else ""
    who_rates = rater_ids.raters_mode()
    oauth = who_rates == "signin"
    mode = review_mode()
    likert, pairwise = mode in ("both", "likert"), mode in ("both", "pairwise")
    gr.Markdown((ABOUT if likert else PAIR_ABOUT) + "  \n" + GOLD_NOTE)
    gr.Markdown(RATERS_NOTE[who_rates])
    with gr.Row(equal_height=True):
        rater = gr.Textbox(label="Your name", placeholder="e.g. ana", max_lines=1, scale=3,
                           interactive=who_rates == "open", visible=who_rates != "invite",
                           info="your Hugging Face account signs your ratings" if oauth
                           else "remembered in this browser; ratings are signed with it (unverified)")
        if oauth:
            gr.LoginButton(scale=1)
        go = gr.Button("Next item", variant="primary", scale=1, visible=likert)
    item_id = gr.Textbox(label="Item", interactive=False, max_lines=1, visible=False)
    view_token = gr.Textbox(label="View token", interactive=False, max_lines=1, visible=False)
    with gr.Column(visible=likert):
        info = gr.Markdown("Give your name and press **Next item**.")
        prompts = gr.Textbox(label="What the generation was asked for (as typed)", interactive=False,
                             lines=2, max_lines=4)
        with gr.Row():
            source = gr.Image(label="Source", type="filepath", format="png", interactive=False,
                              height=220, scale=1, elem_classes="result-image")
            gr.Column(scale=3)
        images, fid, real = [], [], []
        for row in range(0, SLOTS, 4):
            with gr.Row():
                for i in range(row, row + 4):
                    with gr.Column(min_width=180):
                        images.append(gr.Image(label=f"Output {LABELS[i]}", type="filepath", format="png",
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

    with gr.Column(visible=pairwise):
        if likert:
            gr.Markdown("### Pairwise votes\n" + PAIR_ABOUT)
        pair_go = gr.Button("Next pair", variant="primary")
        pair = gr.JSON(visible=False, label="Pair")
        pair_prompts = gr.Textbox(label="What the generation was asked for (as typed)",
                                  interactive=False, lines=2, max_lines=4)
        with gr.Row():
            pair_source = gr.Image(label="Source", type="filepath", format="png", interactive=False,
                                   height=256, elem_classes="result-image")
            pair_a = gr.Image(label="Pair: A", type="filepath", format="png", interactive=False,
                              height=256, elem_classes="result-image")
            pair_b = gr.Image(label="Pair: B", type="filepath", format="png", interactive=False,
                              height=256, elem_classes="result-image")
        with gr.Row():
            choice_buttons = [gr.Button(text) for text in
                              ("A is better", "B is better", "Tie", "Both are bad")]
        pair_result = gr.Markdown()

    gr.Markdown("### Summary of all ratings")
    refresh = gr.Button("Refresh summary", size="sm")
    table = gr.Dataframe(value=pd.DataFrame(columns=list(SUMMARY_COLUMNS.values())),
                         label="Per task and method (scores 1–5, bootstrap 95% intervals)",
                         interactive=False, wrap=True)
    chart = gr.Plot(label="Mean scores with 95% intervals", show_label=False)
    stats = gr.Markdown()
    wins = gr.Dataframe(value=pd.DataFrame(columns=WIN_COLUMNS), interactive=False, wrap=True,
                        label="Pairwise win rates (items both methods were rated on; ties count ½)")
    bt = gr.Dataframe(value=pd.DataFrame(columns=BT_COLUMNS), interactive=False, wrap=True,
                      label="Pairwise votes: Bradley–Terry strength (log scale) with bootstrap 95% "
                            "intervals, best first")
    download = gr.File(label="Per-method summary (CSV: aggregates only)", interactive=False)
    report_json = gr.JSON(label="Everything as JSON", visible=False)
    campaign.build(report_json)  # ranking with clustered intervals, heatmaps, fragility
    summary_outputs = [table, chart, stats, wins, download, bt, report_json]

    def account(profile) -> str | None:
        return profile.username if oauth and profile is not None else None

    @not_mcp_tool
    @user_errors
    def on_next(profile: gr.OAuthProfile | None, rater: str):
        """The next blind item. Returns, in this order: a dict {"item_id", "view_token",
        "description", "prompts", "labels" (the labels of the outputs shown), "message"}; the
        item's source image (or null); then one output image per label A, B, … (null beyond
        the item's outputs)."""
        return item(data, rater, account(profile))

    @user_errors
    def on_rate_page(profile: gr.OAuthProfile | None, rater, item_id, view_token, *values):
        return rate(data, preset, rater, item_id, page_scores(values), values[2 * SLOTS],
                    values[2 * SLOTS + 1], view_token, account(profile))

    @not_mcp_tool
    @user_errors
    def api_rate(rater: str, item_id: str, view_token: str, scores: dict[str, dict[str, int]],
                 comment: str = "", reveal: bool = True, profile: gr.OAuthProfile | None = None) -> dict:
        """Rate one review item, blind. Returns {"item_id", "message"} (the message says what
        was saved and, with reveal, which method made each output).

        Args:
            rater: your name (on a Space with sign-in, your account is used instead)
            item_id: the item from /next_item
            view_token: the view token /next_item returned with it (binds your labels to the methods)
            scores: for every output label you were shown, {"A": {"fidelity": 1-5, "realism": 1-5}, "B": ...}
            comment: optional remark
            reveal: show which method made each output; afterwards the item cannot be rated again
        """
        if not isinstance(reveal, bool):
            raise ValueError(f"reveal must be true or false, got {reveal!r}")
        return {"item_id": item_id, "message": rate(data, preset, rater, item_id, scores, comment, reveal,
                                                    view_token, account(profile))}

    @not_mcp_tool
    @user_errors
    def api_next_pair(rater: str, profile: gr.OAuthProfile | None = None):
        """Two outputs of one item to compare, blind: ({item_id, view_token, prompts}, output A,
        output B, the item's source image or none).

        Args:
            rater: your name (on a Space with sign-in, your account is used instead)
        """
        return next_pair(data, rater, account(profile))

    @not_mcp_tool
    @user_errors
    def api_vote(rater: str, item_id: str, view_token: str, choice: str,
                 profile: gr.OAuthProfile | None = None) -> dict:
        """Vote on the pair /next_pair showed. Returns {"item_id", "choice", "message"} (the
        message names the methods of A and B).

        Args:
            rater: your name (on a Space with sign-in, your account is used instead)
            item_id: the item_id from /next_pair
            view_token: the view_token from /next_pair
            choice: A, B, tie or both_bad
        """
        return {"item_id": item_id, "choice": choice,
                "message": vote(data, preset, rater, item_id, view_token, choice, account(profile))}

    @mcp_tool("summary")
    @user_errors
    def on_summary():
        """The human ratings so far, as aggregates. Returns, in this order: a dict ("ratings",
        "raters", "methods" (per task and method: mean fidelity and realism with bootstrap 95%
        intervals), "agreement" (Krippendorff's alpha), "win_rates", "bradley_terry" (the
        pairwise votes' ranking), "campaign" (per task: that ranking with intervals that treat
        raters as clusters, win rates, votes per pair, fragility), "coverage", how many raters were flagged by gold checks, fast
        ratings, and "text", the page's summary in words), then the per-method table as a CSV
        file (null when empty). No rater's name, comment or gold result."""
        return summary_report(data)

    item_json = gr.JSON(visible=False, label="Item")
    go.click(on_next, rater, [item_json, source, *images], api_name="next_item").success(
        item_page, item_json, [item_id, view_token, info, prompts, *images, *fid, *real, result],
        api_visibility="private", queue=False)
    submit.click(on_rate_page, [rater, item_id, view_token, *fid, *real, comment, reveal], result,
                 api_visibility="private"
                 ).success(user_errors(lambda: summary(data)), None, summary_outputs,
                           api_visibility="private")
    gr.api(api_rate, api_name="rate")

    @not_mcp_tool
    @user_errors
    def api_admin_summary(admin_key: str) -> tuple[dict, str | None]:
        """The full summary for the campaign's admin: per-rater gold checks, flagged raters,
        and a CSV of every rating and vote with its rater and comment.

        Args:
            admin_key: the deployment's admin secret ($RECONTEXT_REVIEW_ADMIN)
        """
        return admin_summary(data, admin_key)
    gr.api(api_admin_summary, api_name="admin_summary")
    pair_outputs = [pair, pair_a, pair_b, pair_source]
    pair_go.click(api_next_pair, rater, pair_outputs, api_name="next_pair").then(
        lambda p: (_prompts((p or {}).get("prompts") or {}) or (p or {}).get("message", ""), ""),
        pair, [pair_prompts, pair_result], api_visibility="private", queue=False)
    gr.api(api_vote, api_name="vote")

    def vote_for(choice):
        def on_vote_page(profile: gr.OAuthProfile | None, rater, shown):
            shown = shown or {}
            return vote(data, preset, rater, shown.get("item_id"), shown.get("view_token"), choice,
                        account(profile))
        return user_errors(on_vote_page)

    for button, choice in zip(choice_buttons, CHOICES):
        button.click(vote_for(choice), [rater, pair], pair_result, api_visibility="private"
                     ).success(user_errors(lambda: summary(data)), None, summary_outputs,
                               api_visibility="private")
    refresh.click(on_summary, None, [report_json, download], api_name="summary").success(
        summary_view, [report_json, download], summary_outputs, api_visibility="private", queue=False)
    if not oauth:  # a personal link's token (?rater=...) first, else the name remembered
        def from_link(saved, request: gr.Request):
            link = request.query_params.get("rater", "") if request is not None else ""
            return link or (saved if who_rates == "open" or rater_ids.is_token(saved) else "") or gr.skip()
        rater.change(lambda name: name, rater, remembered, api_visibility="private", queue=False)
        demo.load(from_link, remembered, rater, api_visibility="private", queue=False)
    else:
        def from_login(profile: gr.OAuthProfile | None):
            return profile.username if profile else ""
        demo.load(from_login, None, rater, api_visibility="private", queue=False)
    demo.load(user_errors(lambda: summary(data)), None, summary_outputs,
              api_visibility="private")
