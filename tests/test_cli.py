import json
import os
import subprocess
import sys

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    return subprocess.run([sys.executable, "-m", "recontext", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_invert_writes_png_and_prints_metrics(tmp_path):
    out = tmp_path / "rec.png"
    p = run("invert", os.path.join("assets", "photos", "coffee.png"), "--method", "renoise",
            "--tight", "--scale", "0.4", "--steps", "5", "--seed", "0", "--out", str(out),
            "--preset", "tiny")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["method"] == "renoise" and report["tight"] is True
    assert 0 < report["metrics"]["l2"] < 1
    assert Image.open(out).size == (600, 400)


def test_invert_bad_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    p = run("invert", str(bad), "--steps", "2", "--preset", "tiny")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: this file is not an image")
