"""The Space: front matter, the assembled folder, and ZeroGPU wrapping."""

import os
import re
import subprocess
import sys
import types

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pinned(package):
    text = open(os.path.join(ROOT, "requirements.txt")).read()
    return re.search(rf"^{package}==(\S+)$", text, re.M).group(1)


def test_front_matter_parses_and_pins_the_gradio_we_test():
    meta = yaml.safe_load(open(os.path.join(ROOT, "spaces_config", "front_matter.yaml")))
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert str(meta["sdk_version"]) == pinned("gradio")
    assert len(meta["short_description"]) <= 60
    from recontext import presets

    sdxl = presets.get("sdxl")
    preloaded = " ".join(meta["preload_from_hub"])
    for repo in (sdxl.base, sdxl.vae, sdxl.ip_adapter, sdxl.clip):
        assert repo in meta["models"] and repo in preloaded
    assert sdxl.ip_adapter_weight in preloaded


def test_assemble_builds_a_space_folder(tmp_path):
    out = tmp_path / "space"
    subprocess.run([sys.executable, os.path.join("spaces_config", "assemble.py"), str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n")
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["app_file"] == "app.py" and (out / "app.py").exists()
    assert (out / "recontext" / "studio.py").exists() and (out / "assets" / "photos").is_dir()
    reqs = (out / "requirements.txt").read_text()
    assert f"gradio=={pinned('gradio')}" in reqs and "spaces==" in reqs
    assert not list(out.rglob("__pycache__"))


def test_gpu_wrapping_only_on_zerogpu(monkeypatch):
    """`on_gpu(run, preset)` wraps a job runner in spaces.GPU only on ZeroGPU, asking for the
    duration priced from the job it is handed (jobs: one request object, issue 36)."""
    from recontext import jobs, presets, zerogpu
    from recontext.ui.common import on_gpu

    def run(job, *args):
        return job.prompt

    p = presets.get("sdxl")
    assert on_gpu(run, p) is run  # not a ZeroGPU Space
    seen = {}

    def GPU(duration):
        def wrap(fn):
            seen["duration"] = duration
            return fn
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    job = lambda steps: jobs.Generate(prompt="x", steps=steps)  # noqa: E731
    assert on_gpu(run, p)(job(10)) == "x"
    assert seen["duration"](job(200)) > seen["duration"](job(10)) >= zerogpu.FLOOR_S
    assert seen["duration"](job("not a number")) == 60
