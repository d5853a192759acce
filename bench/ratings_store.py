"""Ratings store throughput: appends/s for 1 process and for 8 processes at once (each
append locked, flushed and fsynced), then the time to summarise 100,000 ratings.

    python bench/ratings_store.py [--appends 500]

Prints `appends/s (8 procs): X` last, after checking that no rating was lost.
"""

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from recontext.review import HEADER, RatingStore, report  # noqa: E402


def writer(path, worker, n):
    store = RatingStore(path)
    for i in range(n):
        store.add(rater=f"r{worker}", item_id=f"item{i}", task="inversion", method="ddim",
                  fidelity=1 + i % 5, realism=1 + (i * 7 + worker) % 5)


def timed(path, procs, n):
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=writer, args=(path, w, n)) for w in range(procs)]
    for p in ps:  # start-up of the spawned interpreters is outside the timing
        p.start()
    t0 = time.perf_counter()
    for p in ps:
        p.join()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=500, help="appends per process")
    args = parser.parse_args()
    d = tempfile.mkdtemp()
    t0 = time.perf_counter()
    writer(os.path.join(d, "one.csv"), 0, args.appends)
    one = args.appends / (time.perf_counter() - t0)
    path = os.path.join(d, "eight.csv")
    elapsed = timed(path, 8, args.appends)
    rows = len(RatingStore(path).read(latest=False))
    lost = 8 * args.appends - rows

    rng = np.random.default_rng(0)
    n = 100_000
    big = pd.DataFrame({"rating_id": [f"{i:032x}" for i in range(n)], "timestamp": "",
                        "rater": rng.integers(0, 20, n).astype(str),
                        "item_id": rng.integers(0, 2000, n).astype(str), "task": "inversion",
                        "method": rng.choice(["ddim", "ddim+tight", "renoise", "edit-friendly"], n),
                        "label": "", "position": 0, "fidelity": rng.integers(1, 6, n),
                        "realism": rng.integers(1, 6, n), "comment": "", "preset": "tiny",
                        "app_version": "", "revealed": 0, "seconds": "", "signed": 0,
                        "view_id": ""})[HEADER]
    big_path = os.path.join(d, "big.csv")
    big.to_csv(big_path, index=False)
    t0 = time.perf_counter()
    read_back = len(RatingStore(big_path).read(latest=False))
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report(big)
    summary_s = time.perf_counter() - t0
    print(f"appends/s (1 proc): {one:.0f}")
    print(f"8 procs: {8 * args.appends} appends in {elapsed:.2f} s, rows read back {rows}, lost {lost}")
    print(f"read {read_back} of {n} ratings back, record by record: {read_s:.2f} s")
    print(f"summary of {n} ratings (scores, intervals, win rates, alpha): {summary_s:.2f} s")
    print(f"appends/s (8 procs): {8 * args.appends / elapsed:.0f}")


if __name__ == "__main__":
    main()
