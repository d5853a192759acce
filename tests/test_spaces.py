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
    from recontext.ui.common import on_gpu

    def handler(a, steps):
        return a

    from recontext import presets, zerogpu

    p = presets.get("sdxl")

    def work(a, steps):
        return zerogpu.Work(evaluations=int(steps))

    assert on_gpu(handler, work, p) is handler  # not a ZeroGPU Space
    seen = {}

    def GPU(duration):
        def wrap(fn):
            seen["duration"] = duration
            return fn
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert on_gpu(handler, work, p)("x", 10) == "x"
    assert seen["duration"]("x", 1000) > seen["duration"]("x", 10) >= zerogpu.FLOOR_S
    assert seen["duration"]("x", "not a number") == 60
