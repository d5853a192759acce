"""`python -m recontext ratings ...`: summarize, export, gold items, invite and revoke raters.

The commands of the review package, added to the main parser by `recontext.cli`."""

from __future__ import annotations

import os
import sys


def _dump_json(obj) -> str:
    import json

    from .runs import plain  # JSON has no NaN (null) or infinity ("inf")

    return json.dumps(plain(obj), indent=2, allow_nan=False)


def cmd_ratings_summarize(args) -> int:
    """The same numbers as the page's summary: `review.serve` picks the final ratings
    (gold items and flagged raters apart), with the votes and runs beside the CSV."""
    from .review import RatingStore, VoteStore, full_report, serve, summarize, target_raters
    from .runs import RunStore

    if not os.path.isfile(args.csv):
        raise ValueError(f"no ratings file at {args.csv}")
    folder = os.path.dirname(os.path.abspath(args.csv))
    df, problems = RatingStore(args.csv).read_checked()
    votes, vote_problems = VoteStore(os.path.join(folder, "votes.csv")).read_checked()
    runs = RunStore(os.path.join(folder, "runs")) if os.path.isdir(os.path.join(folder, "runs")) else None
    problems += [f"votes: {p}" for p in vote_problems]
    for p in problems:
        print(f"warning: {args.csv}: {p}", file=sys.stderr)
    picked = serve(df, votes, runs, root=folder)
    if args.json:
        print(_dump_json({**full_report(picked, runs, target_raters()), "problems": problems}))
    else:
        import pandas as pd

        r = picked["ratings"]
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(summarize(r).round(3).to_string(index=False) if len(r)
                  else f"{args.csv} holds no final ratings yet")
        if picked["waiting"]:
            print(f"{picked['waiting']} ratings made without the reveal may still change: not counted yet")
        ranking = full_report(picked, runs, target_raters())["bradley_terry"]
        print("\npairwise votes: Bradley-Terry strength (log scale: higher is preferred; low/high: 95% interval)")
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(pd.DataFrame(ranking).round(3).to_string(index=False) if ranking else "no pairwise votes yet")
    return 0


def cmd_ratings_export(args) -> int:
    from .data import open_data
    from .review import export

    if args.data and not os.path.isdir(args.data):
        raise ValueError(f"no data folder at {args.data}")
    data = open_data(args.data, push=False)
    if args.push:
        ds = export.push(data, args.push, hash_raters=args.hash_raters)
        print(f"pushed {len(ds)} rows with images to the dataset {args.push}")
    if args.out:
        df = export.table(data, hash_raters=args.hash_raters)
        export.write(df, args.out, args.format)
        print(f"{len(df)} rows ({(df['kind'] == 'rating').sum()} ratings, {(df['kind'] == 'vote').sum()} "
              f"votes) written to {args.out}")
    if not args.out and not args.push:
        raise ValueError("give --out FILE, --push REPO or both")
    return 0


def cmd_ratings_gold(args) -> int:
    from .data import open_data
    from .review.gold import make_gold

    if args.data and not os.path.isdir(args.data):
        raise ValueError(f"no data folder at {args.data}")
    data = open_data(args.data, push=False)
    for run_id in args.runs:
        print(f"gold item {make_gold(data.runs, run_id)} made from run {run_id}")
    return 0


def cmd_ratings_invite(args) -> int:
    from .data import open_data
    from .review import raters

    data = open_data(args.data, push=False)
    print(raters.link(raters.invite(data.root, data.secret, args.name, args.campaign), args.url))
    return 0


def cmd_ratings_revoke(args) -> int:
    from .data import open_data
    from .review import raters

    data = open_data(args.data, push=False)
    raters.revoke(data.root, args.name)
    print(f"revoked {args.name}'s link")
    return 0


def add(sub) -> None:
    """Add the `ratings` command and its subcommands to `sub` (the main parser's subparsers)."""
    p = sub.add_parser("ratings", help="human ratings: summarize or export them")
    rsub = p.add_subparsers(dest="ratings_command", required=True)
    p = rsub.add_parser("summarize", help="per-method scores with 95%% intervals, win rates, agreement")
    p.add_argument("csv")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=cmd_ratings_summarize)
    p = rsub.add_parser("export", help="ratings and votes in one fixed schema (see recontext.review.export)")
    p.add_argument("data", nargs="?", default=None, help="the data folder (default: $RECONTEXT_DATA_DIR or ./data)")
    p.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    p.add_argument("--out", help="file to write")
    p.add_argument("--push", metavar="REPO", help="push as a Hugging Face dataset with images (needs HF_TOKEN)")
    p.add_argument("--hash-raters", action="store_true", help="replace names by a keyed hash")
    p.set_defaults(func=cmd_ratings_export)
    p = rsub.add_parser("gold", help="make gold items (a run's outputs, one replaced by a degraded copy of "
                        "another, see recontext.review.gold) from runs")
    p.add_argument("runs", nargs="+", help="run ids whose source image the gold items show")
    p.add_argument("--data", default=None, help="the data folder (default: $RECONTEXT_DATA_DIR or ./data)")
    p.set_defaults(func=cmd_ratings_gold)
    p = rsub.add_parser("invite", help="print a rater's personal link (a signed, revocable token)")
    p.add_argument("name")
    p.add_argument("--campaign", default="", help="the campaign the link is for ($RECONTEXT_CAMPAIGN)")
    p.add_argument("--url", default=None, help="the studio's address (default: $RECONTEXT_PUBLIC_URL)")
    p.add_argument("--data", default=None, help="the data folder (default: $RECONTEXT_DATA_DIR or ./data)")
    p.set_defaults(func=cmd_ratings_invite)
    p = rsub.add_parser("revoke", help="stop a rater's personal link from working")
    p.add_argument("name")
    p.add_argument("--data", default=None, help="the data folder (default: $RECONTEXT_DATA_DIR or ./data)")
    p.set_defaults(func=cmd_ratings_revoke)
