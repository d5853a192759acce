"""Simulated pairwise campaigns: how many votes until the ranking is right and every
adjacent pair's 95% intervals are apart, with uniform and with active pair choice.

    python bench/pairwise_campaign.py [--seeds 20] [--write-docs]

Six methods with strengths drawn once from a fixed seed; raters who see every method a
little differently (their own offsets: their votes are correlated), prefer the output
shown at position A (a position bias), and call close pairs a tie; some raters vote far
more than others. Each vote goes through the project's own sampler
(`recontext.review.sampling.choose`, the function `/next_pair` calls) and, every
`--check` votes, the project's own ranking (`recontext.review.ranking.intervals`, what
`/summary` reports: raters as clusters). A campaign stops when the order matches the
truth and all adjacent intervals are apart. "Coverage" is the share of the methods'
intervals, at that moment, that contain the true strength on the Bradley–Terry scale
(the Bradley–Terry fit to the population's exact expected scores: rater offsets, position
bias and ties shrink the generating strengths a little, and that is what any fit of the
votes estimates).

Prints, last, `votes to a separated ranking: uniform U, active A, ratio A/U` (medians over
the seeds) and the interval coverage of both samplers. `--write-docs` rewrites the marked
section of docs/pairwise.md with the table this run measured.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from recontext.review import ranking, sampling  # noqa: E402

METHODS = [f"m{i}" for i in range(6)]
STRENGTH_SEED = 2026
RATERS, ITEMS = 40, 40
OFFSET_SD = 0.15      # a rater's own view of each method (log-odds)
POSITION = 0.3        # mean extra log-odds for the output shown at A
TIE = 0.4             # the share of ties between two outputs that look alike
DOCS = os.path.join(ROOT, "docs", "pairwise.md")
BEGIN, END = "<!-- bench:pairwise_campaign -->", "<!-- /bench:pairwise_campaign -->"


def true_strengths() -> np.ndarray:
    """Six strengths from a fixed seed: gaps between neighbours drawn from 0.25–0.6."""
    rng = np.random.default_rng(STRENGTH_SEED)
    s = np.concatenate([[0.0], np.cumsum(rng.uniform(0.25, 0.6, len(METHODS) - 1))])
    return rng.permutation(s - s.mean())


def outcome_probs(d):
    """P(A wins), P(B wins) for a perceived log-odds difference d (A minus B): a tie
    takes up to `TIE` of the votes, most when the two look alike (TIE · 4p(1-p)), half
    from each side, so the expected score, a tie counting ½, is the logistic p itself."""
    p = 1 / (1 + np.exp(-d))
    tie = TIE * 4 * p * (1 - p)
    return p - tie / 2, 1 - p - tie / 2


def bt_scale(strength: np.ndarray, draws: int = 400_000) -> np.ndarray:
    """The Bradley–Terry strengths the population's votes estimate: the fit to the exact
    expected score of every pair over raters (offsets, position bias) and positions."""
    rng = np.random.default_rng(0)
    n = len(strength)
    offset = rng.normal(0, OFFSET_SD, (draws, n))
    bias = rng.normal(POSITION, 0.15, draws)
    expected = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                d = strength[i] - strength[j] + offset[:, i] - offset[:, j]
                first = outcome_probs(d + bias)   # i shown at A
                second = outcome_probs(-d + bias)  # i shown at B
                score = 0.5 * (first[0] + (1 - first[0] - first[1]) / 2) + \
                    0.5 * (second[1] + (1 - second[0] - second[1]) / 2)
                expected[i, j] = score.mean()
    return ranking.fit(expected, prior=0.0)


def campaign(rule: str, seed: int, strength: np.ndarray, truth: np.ndarray, check: int, cap: int) -> dict:
    """One campaign with `rule`: {"votes": votes until separated (None: not within `cap`),
    "covered": per method, whether its interval holds the truth then, "covered_votes": the
    same for intervals that treat every vote as independent}."""
    rng = np.random.default_rng(seed)
    n = len(METHODS)
    activity = rng.lognormal(0, 0.8, RATERS)
    activity /= activity.sum()
    offset = rng.normal(0, OFFSET_SD, (RATERS, n))
    bias = rng.normal(POSITION, 0.15, RATERS)
    candidates = [sampling.Candidate("edit", f"item{k:02d}", METHODS[i], METHODS[j], (k, i, j),
                                     (f"item{k:02d}", i, j))
                  for k in range(ITEMS) for i in range(n) for j in range(i + 1, n)]
    tally = sampling.Tally()
    a, b, who, y = np.zeros(cap, int), np.zeros(cap, int), np.zeros(cap, int), np.zeros(cap)
    want = [int(k) for k in np.argsort(-truth)]
    votes, full = 0, set()
    while votes < cap and len(full) < RATERS:
        r = int(rng.choice(RATERS, p=activity))
        if r in full:
            continue
        picked = sampling.choose(candidates, tally, f"r{r}", rule, rng, sampling.MIN_VOTES)
        if picked is None:  # this rater has voted on every item pair
            full.add(r)
            continue
        item, i, j = picked
        if rng.random() < 0.5:  # positions drawn per showing, as next_pair does
            i, j = j, i
        d = strength[i] - strength[j] + offset[r, i] - offset[r, j] + bias[r]
        pa, pb = outcome_probs(d)
        u = rng.random()
        choice = "A" if u < pa else "B" if u < pa + pb else "tie"
        a[votes], b[votes], y[votes], who[votes] = i, j, ranking.SCORE[choice], r
        tally.add(f"r{r}", "edit", item, METHODS[i], METHODS[j], choice)
        votes += 1
        if votes % check == 0 and votes >= n * (n - 1) // 2 * sampling.MIN_VOTES:
            est = ranking.intervals(n, a[:votes], b[:votes], y[:votes], who[:votes])
            order = [int(k) for k in np.argsort(-est["strength"], kind="stable")]
            if order == want and ranking.separated(order, est):
                naive = ranking.intervals(n, a[:votes], b[:votes], y[:votes], np.arange(votes))
                return {"votes": votes, "covered": (est["low"] <= truth) & (truth <= est["high"]),
                        "covered_votes": (naive["low"] <= truth) & (truth <= naive["high"])}
    return {"votes": None, "covered": None, "covered_votes": None}


def summarise(results: list[dict]) -> dict:
    done = [r for r in results if r["votes"] is not None]
    votes = [r["votes"] if r["votes"] is not None else np.inf for r in results]
    cov = np.concatenate([r["covered"] for r in done]) if done else np.zeros(0)
    naive = np.concatenate([r["covered_votes"] for r in done]) if done else np.zeros(0)
    return {"median": float(np.median(votes)), "q25": float(np.percentile(votes, 25)),
            "q75": float(np.percentile(votes, 75)), "censored": len(results) - len(done),
            "coverage": float(cov.mean()) if len(cov) else float("nan"),
            "coverage_votes": float(naive.mean()) if len(naive) else float("nan"), "intervals": len(cov)}


def table(seeds: int, stats: dict, truth: np.ndarray, seconds: float, cap: int) -> str:
    def votes(x):
        return f"> {cap}" if not np.isfinite(x) else f"{x:.0f}"
    lines = [f"Measured by `python bench/pairwise_campaign.py --seeds {seeds} --write-docs` "
             f"({seeds} seeds per sampler, {seconds:.0f} s). Strengths on the Bradley–Terry scale: "
             + ", ".join(f"{t:+.2f}" for t in sorted(truth, reverse=True)) + ".", "",
             "| sampler | votes to a separated ranking (median) | 25–75% | not separated within the cap "
             "| coverage of the true strengths (raters as clusters) | coverage if votes were independent |",
             "|---|---|---|---|---|---|"]
    for rule, s in stats.items():
        lines.append(f"| {rule} | {votes(s['median'])} | {votes(s['q25'])}–{votes(s['q75'])} | {s['censored']} "
                     f"| {100 * s['coverage']:.1f}% ({s['intervals']} intervals) | {100 * s['coverage_votes']:.1f}% |")
    ratio = stats["active"]["median"] / stats["uniform"]["median"]
    lines += ["", f"Ratio active / uniform: **{ratio:.2f}**."]
    return "\n".join(lines)


def write_docs(text: str) -> None:
    with open(DOCS) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOCS} has no section marked {BEGIN} … {END}")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(DOCS, "w") as f:
        f.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--check", type=int, default=10, help="votes between checks of the ranking")
    parser.add_argument("--cap", type=int, default=8000, help="votes after which a campaign gives up")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the table in docs/pairwise.md")
    args = parser.parse_args(argv)
    strength = true_strengths()
    truth = bt_scale(strength)
    t0 = time.perf_counter()
    stats = {}
    for rule in ("uniform", "active"):
        results = [campaign(rule, seed, strength, truth, args.check, args.cap) for seed in range(args.seeds)]
        stats[rule] = s = summarise(results)
        print(f"{rule}: median {s['median']:.0f} votes (25–75%: {s['q25']:.0f}–{s['q75']:.0f}), "
              f"{s['censored']} not separated within {args.cap}; coverage {100 * s['coverage']:.1f}% "
              f"(votes as independent: {100 * s['coverage_votes']:.1f}%)", flush=True)
    seconds = time.perf_counter() - t0
    u, a = stats["uniform"]["median"], stats["active"]["median"]
    if args.write_docs:
        write_docs(table(args.seeds, stats, truth, seconds, args.cap))
    print(f"time: {seconds:.0f} s")
    print(f"interval coverage of the true strengths: uniform {100 * stats['uniform']['coverage']:.1f}%, "
          f"active {100 * stats['active']['coverage']:.1f}%")
    print(f"votes to a separated ranking: uniform {u:.0f}, active {a:.0f}, ratio A/U {a / u:.2f}")


if __name__ == "__main__":
    main()
