"""bench/gpu.py, the device check, runs every path on a CPU (--smoke) without gradio."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# gradio made unimportable: the GPU machine has none
RUN = ("import runpy, sys; sys.modules['gradio'] = None; "
       "sys.argv = ['bench/gpu.py', '--smoke', '--only', 'paths', '--json', sys.argv[1]]; "
       "runpy.run_path('bench/gpu.py', run_name='__main__')")


def test_the_smoke_run_lists_every_path_ok_and_finite(tmp_path):
    out = tmp_path / "paths.json"
    done = subprocess.run([sys.executable, "-c", RUN, str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    paths = json.loads(out.read_text())["paths"]
    names = [p["name"] for p in paths]
    for method in ("ddim", "renoise", "edit-friendly"):
        assert f"reconstruct {method}" in names and f"reconstruct {method} + tight" in names
    for edit in ("regenerate on ddim", "prompt-to-prompt on ddim", "ledits++ on edit-friendly"):
        assert f"edit {edit}" in names and f"edit {edit} + tight" in names
    for name in ("edit sweep (3 scales)", "edit compare", "generate", "dress hyperlora", "dress ip-adapter",
                 "dress finetune-lora", "dress prompt-only", "HyperLoRA training (3 steps)"):
        assert name in names
    assert all(p["ok"] and p["finite"] and p["seconds"] > 0 for p in paths), paths
