"""Rows per minute: a 20-row `invert` manifest through the batch command against the same
work as 20 separate `python -m recontext invert` calls (each loads the models again).
Both on the tiny preset, one after the other in this run.

    python bench/batch_throughput.py [--rows 20] [--steps 10]

Prints `batch speedup: X` last (separate-call time / batch time, whole processes).
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ["chelsea.png", "astronaut.png", "coffee.png", "rocket.png"]
METHODS = ["ddim", "renoise", "edit-friendly"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    env = {**os.environ, "RECONTEXT_DATA_DIR": os.path.join(tmp, "data")}
    rows = []
    for i in range(args.rows):
        photo = PHOTOS[i % len(PHOTOS)]
        shutil.copy(os.path.join(ROOT, "assets", "photos", photo), tmp)
        rows.append({"task": "invert", "input": photo, "prompt": "a photo", "method": METHODS[i % 3],
                     "tight": "yes" if i % 2 else "", "steps": args.steps, "seed": i})
    manifest = os.path.join(tmp, "jobs.csv")
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    py = [sys.executable, "-m", "recontext"]
    subprocess.run(py + ["invert", os.path.join(tmp, PHOTOS[0]), "--steps", "1", "--preset", "tiny",
                         "--out", os.path.join(tmp, "warm.png")], cwd=ROOT, env=env, check=True,
                   capture_output=True)  # builds the tiny preset, warms the disk cache

    start = time.perf_counter()
    subprocess.run(py + ["batch", manifest, "--out", os.path.join(tmp, "out"), "--preset", "tiny"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    batch = time.perf_counter() - start

    start = time.perf_counter()
    for i, r in enumerate(rows):
        cmd = py + ["invert", os.path.join(tmp, r["input"]), "--method", r["method"], "--prompt",
                    r["prompt"], "--steps", str(r["steps"]), "--seed", str(r["seed"]), "--preset", "tiny",
                    "--out", os.path.join(tmp, f"single{i}.png")] + (["--tight"] if r["tight"] else [])
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    single = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)
    n = args.rows
    print(f"{n} rows, {args.steps} steps: batch {batch:.1f} s ({60 * n / batch:.1f} rows/min), "
          f"separate calls {single:.1f} s ({60 * n / single:.1f} rows/min)")
    print(f"batch speedup: {single / batch:.2f}")


if __name__ == "__main__":
    main()
