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


def test_edit_compare_writes_every_method_tight_and_plain(tmp_path):
    p = run("edit", os.path.join("assets", "photos", "coffee.png"), "--source", "a cup of coffee",
            "--target", "a cup of tea", "--compare", "--steps", "2", "--out", str(tmp_path),
            "--preset", "tiny")
    assert p.returncode == 0, p.stderr
    report = json.loads((tmp_path / "metrics.json").read_text())
    got = {(e["edit_method"], e["method"], e["tight"]) for e in report["edits"]}
    assert got == {(m, "edit-friendly" if m == "ledits++" else "ddim", t)
                   for m in ("regenerate", "prompt-to-prompt", "ledits++") for t in (True, False)}
    assert all((tmp_path / e["image"]).exists() for e in report["edits"])


def test_edit_method_option_and_its_errors(tmp_path):
    p = run("edit", os.path.join("assets", "photos", "coffee.png"), "--source", "a cup of coffee",
            "--target", "a cup of tea", "--edit-method", "ledits++", "--method", "edit-friendly",
            "--edit-guidance", "7", "--steps", "2", "--out", str(tmp_path), "--preset", "tiny")
    assert p.returncode == 0, p.stderr
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["edits"][0]["edit_method"] == "ledits++" and report["settings"]["edit_guidance"] == 7
    p = run("edit", os.path.join("assets", "photos", "coffee.png"), "--target", "tea",
            "--edit-method", "sdedit", "--steps", "2", "--out", str(tmp_path), "--preset", "tiny")
    assert p.returncode == 2 and "valid editing methods: regenerate" in p.stderr


def test_edit_json_names_the_methods_and_compare_with_sweep_is_refused(tmp_path):
    """Friction from a newcomer's run: `--compare --sweep` silently ignored --sweep, and the
    JSON said "method": null when --method was left out."""
    photo = os.path.join("assets", "photos", "coffee.png")
    p = run("edit", photo, "--target", "a cup of tea", "--compare", "--sweep", "0,0.4", "--steps", "2",
            "--out", str(tmp_path), "--preset", "tiny")
    assert p.returncode == 2 and "--compare and --sweep" in p.stderr
    p = run("edit", photo, "--source", "a cup of coffee", "--target", "a cup of tea", "--steps", "2",
            "--out", str(tmp_path), "--preset", "tiny")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["method"] == "ddim" and report["edit_method"] == "regenerate"


def test_method_options_are_flags_read_from_the_specs(tmp_path):
    photo = os.path.join("assets", "photos", "coffee.png")
    p = run("invert", "--help")
    assert "--renoise-steps" in p.stdout and "--gamma" in p.stdout
    outs = {}
    for n in ("0", "2"):
        p = run("invert", photo, "--method", "renoise", "--renoise-steps", n, "--steps", "3",
                "--out", str(tmp_path / f"r{n}.png"), "--preset", "tiny")
        assert p.returncode == 0, p.stderr
        outs[n] = json.loads(p.stdout)["metrics"]["psnr"]
    assert outs["0"] != outs["2"]  # the flag reaches the method
    p = run("invert", photo, "--method", "renoise", "--renoise-steps", "99", "--steps", "2",
            "--out", str(tmp_path / "x.png"), "--preset", "tiny")
    assert p.returncode == 2 and "renoise_steps must be between 0 and 20" in p.stderr


def test_commands_without_methods_import_no_model_library():
    """Only invert, edit and dress read the method specs (which import torch): parsing any
    other command leaves the model libraries unimported; parsing those gives their flags."""
    code = ("import sys; from recontext.cli import build_parser; "
            "build_parser(['ratings', 'summarize', 'x.csv']).parse_args(['ratings', 'summarize', 'x.csv']); "
            "print(sorted(m for m in ('torch', 'diffusers', 'recontext.models') if m in sys.modules)); "
            "argv = ['invert', 'p.png', '--renoise-steps', '2']; "
            "print(build_parser(argv).parse_args(argv).renoise_steps)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["[]", "2"]
