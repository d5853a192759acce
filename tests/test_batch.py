"""The batch command: resumable, bad rows recorded, the rest done, exit status says so."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def batch(manifest, out, data):
    env = {**os.environ, "RECONTEXT_DATA_DIR": str(data)}
    return subprocess.run([sys.executable, "-m", "recontext", "batch", str(manifest), "--out", str(out),
                           "--preset", "tiny"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def test_ten_rows_two_bad_then_resume(tmp_path):
    shutil.copy(os.path.join(ROOT, "assets", "photos", "chelsea.png"), tmp_path / "cat.png")
    shutil.copy(os.path.join(ROOT, "assets", "garments", "green-plain-t-shirt.png"), tmp_path / "shirt.png")
    (tmp_path / "notes.png").write_text("not an image")
    rows = [
        ["invert", "cat.png", "a cat", "", "ddim", "", "", "3", "0"],
        ["invert", "cat.png", "a cat", "", "ddim", "yes", "0.4", "3", "0"],
        ["invert", "cat.png", "a cat", "", "edit-friendly", "", "", "3", "1"],
        ["invert", "cat.png", "", "", "renoise", "", "", "2", "0"],
        ["edit", "cat.png", "a cat", "a tiger", "ddim", "yes", "0.4", "3", "0"],
        ["edit", "cat.png", "a cat", "a dog", "", "", "", "3", "0"],
        ["dress", "shirt.png", "a person on a beach", "", "hyperlora", "", "", "3", "0"],
        ["dress", "shirt.png", "a person on a beach", "", "ip-adapter", "", "0.5", "3", "0"],
        ["invert", "missing.png", "a cat", "", "ddim", "", "", "3", "0"],   # bad: no such file
        ["invert", "notes.png", "a cat", "", "ddim", "", "", "3", "0"],     # bad: not an image
    ]
    manifest = tmp_path / "jobs.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "input", "prompt", "target", "method", "tight", "scale", "steps", "seed"])
        w.writerows(rows)
    out, data = tmp_path / "out", tmp_path / "data"
    p = batch(manifest, out, data)
    assert p.returncode == 1, p.stderr[-2000:]
    assert "8 done, 0 already done, 2 failed" in p.stdout
    assert f"row 9: input file not found: {tmp_path / 'missing.png'}" in p.stderr
    assert f"row 10: {tmp_path / 'notes.png'}: " in p.stderr and "not an image" in p.stderr
    with open(out / "results.csv") as f:
        lines = list(csv.DictReader(f))
    ok = [r for r in lines if r["status"] == "ok"]
    assert len(ok) == 8 and all((out / r["output"]).exists() for r in ok)
    assert not [n for n in os.listdir(out) if n.endswith(".lock")]  # locks live in the temp folder
    assert json.loads(ok[0]["metrics"])["psnr"] > 0
    runs = os.listdir(data / "runs")
    assert len(runs) >= 8 + 2  # every row, plus review items: cat inverted 2 ways, shirt dressed 2 ways

    p = batch(manifest, out, data)
    assert p.returncode == 1 and "0 done, 8 already done, 2 failed" in p.stdout
    assert len(os.listdir(data / "runs")) == len(runs)  # no work, no new runs
    with open(out / "results.csv") as f:
        again = list(csv.DictReader(f))
    assert len(again) == 10 and sorted(int(r["row"]) for r in again) == list(range(1, 11))


def test_rows_split_between_processes(tmp_path):
    """Two processes (torchrun, as `accelerate launch` starts them): every row done once."""
    shutil.copy(os.path.join(ROOT, "assets", "photos", "coffee.png"), tmp_path / "cup.png")
    with open(tmp_path / "jobs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "input", "prompt", "method", "steps", "seed"])
        w.writerows([["invert", "cup.png", "a cup", m, 1, s] for s in (0, 1) for m in ("ddim", "renoise")])
    env = {**os.environ, "RECONTEXT_DATA_DIR": str(tmp_path / "data")}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                        "recontext", "batch", str(tmp_path / "jobs.csv"), "--out", str(tmp_path / "out"),
                        "--preset", "tiny"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(tmp_path / "out" / "results.csv") as f:
        rows = sorted(int(r["row"]) for r in csv.DictReader(f))
    assert rows == [1, 2, 3, 4]
    assert len(re.findall(r"^2 done, 0 already done", p.stdout, re.M)) == 2  # each did its half
