"""One method, one file: a method module that declares a `SPEC` is found by its package,
and everything else (Studio, the CLI, the tabs, the API, batch, ZeroGPU) is built from the
specs. Tested by adding methods to a temporary copy of the package; the package's syntax
trees name each method only in its own module; the package has no import cycle."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "recontext"
PHOTO = ROOT / "assets" / "photos" / "chelsea.png"


def _twin(src: Path, dst: Path, old: str, new: str) -> None:
    text = src.read_text()
    assert text.count(f'Spec("{old}"') == 1, f"{src.name} should declare its method once, in its SPEC"
    dst.write_text(text.replace(f'Spec("{old}"', f'Spec("{new}"'))


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> Path:
    """A copy of the package with four methods added, each a copy of one file with only the
    spec's name changed: ddim-twin, regen-twin, ip-adapter-twin and magicclothing-twin (a
    method with its own component, the garment extractor, and its own attention processor)."""
    root = tmp_path_factory.mktemp("pkg")
    copy = root / "recontext"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "assets").symlink_to(ROOT / "assets")  # the tabs' examples, beside the package as in the repo
    _twin(copy / "inversion" / "ddim.py", copy / "inversion" / "ddim_twin.py", "ddim", "ddim-twin")
    _twin(copy / "editing" / "regenerate.py", copy / "editing" / "regen_twin.py", "regenerate", "regen-twin")
    _twin(copy / "garment" / "methods" / "ip_adapter.py", copy / "garment" / "methods" / "ip_adapter_twin.py",
          "ip-adapter", "ip-adapter-twin")
    _twin(copy / "garment" / "methods" / "magicclothing.py", copy / "garment" / "methods" / "magicclothing_twin.py",
          "magicclothing", "magicclothing-twin")
    return root


def _run(root: Path, *args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=root,
                          timeout=600, **kw)


def test_added_methods_appear_everywhere_and_run_as_their_originals(twins, tmp_path):
    script = textwrap.dedent(f"""
        import json
        import gradio as gr
        import numpy as np
        import recontext
        from recontext import Studio, batch, zerogpu
        from recontext.ui import build_demo

        assert recontext.__file__.startswith({str(twins)!r}), recontext.__file__
        s = Studio("tiny")
        out = {{"methods": s.methods, "edit_methods": s.edit_methods, "garment_methods": s.garment_methods}}
        a = s.reconstruct({str(PHOTO)!r}, "a cat", method="ddim", steps=3)
        b = s.reconstruct({str(PHOTO)!r}, "a cat", method="ddim-twin", steps=3)
        out["inversion_same"] = bool(np.array_equal(np.asarray(a.output), np.asarray(b.output)))
        a = s.edit({str(PHOTO)!r}, "a cat", "a dog", method="ddim", steps=3, edit_method="regenerate")
        b = s.edit({str(PHOTO)!r}, "a cat", "a dog", method="ddim", steps=3, edit_method="regen-twin")
        out["edit_same"] = bool(np.array_equal(np.asarray(a.output), np.asarray(b.output)))
        a = s.dress({str(PHOTO)!r}, "a person", method="ip-adapter", steps=3)
        b = s.dress({str(PHOTO)!r}, "a person", method="ip-adapter-twin", steps=3)
        out["dress_same"] = bool(np.array_equal(np.asarray(a.image), np.asarray(b.image)))
        unet = s.models.pipe.unet
        before = dict(unet.attn_processors)
        a = s.dress({str(PHOTO)!r}, "a person", method="magicclothing", steps=3)
        b = s.dress({str(PHOTO)!r}, "a person", method="magicclothing-twin", steps=3)
        out["garment_twin_same"] = bool(np.array_equal(np.asarray(a.image), np.asarray(b.image)))
        out["garment_twin_cached"] = b.cached  # its own garment states, not the original's
        out["processors_back"] = all(before[k] is v for k, v in unet.attn_processors.items())
        out["batch_columns"] = list(batch.OPTIONAL)
        out["zerogpu"] = [r["handler"] for r in zerogpu.page_requests(s.preset)]
        demo = build_demo(s)
        choices = []
        for block in demo.blocks.values():
            for c in getattr(block, "choices", None) or []:
                choices.append(c[1] if isinstance(c, (list, tuple)) else c)
        out["page_choices"] = choices
        out["api_docs"] = json.dumps(demo.get_api_info(), default=str)
        print("RESULT" + json.dumps(out))
    """)
    r = _run(twins, "-c", script)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("RESULT", 1)[1])
    assert "ddim-twin" in out["methods"] and "regen-twin" in out["edit_methods"]
    assert "ip-adapter-twin" in out["garment_methods"] and "magicclothing-twin" in out["garment_methods"]
    assert out["inversion_same"] and out["edit_same"] and out["dress_same"]
    assert out["garment_twin_same"] and out["garment_twin_cached"] is False and out["processors_back"]
    for name in ("ddim-twin", "regen-twin", "ip-adapter-twin", "magicclothing-twin"):
        assert name in out["page_choices"], name  # the tabs' checkboxes and dropdowns
        assert name in out["api_docs"], name      # the API's parameter docs

    # the command line: the method is a valid --method, its reconstruction the original's
    outs = {}
    for method in ("ddim", "ddim-twin"):
        png = tmp_path / f"{method}.png"
        r = _run(twins, "-m", "recontext", "invert", str(PHOTO), "--method", method, "--steps", "3",
                 "--preset", "tiny", "--out", str(png))
        assert r.returncode == 0, r.stderr[-2000:]
        outs[method] = json.loads(r.stdout)["metrics"]
    assert outs["ddim"] == outs["ddim-twin"]
    r = _run(twins, "-m", "recontext", "dress", "--help")
    assert "ip-adapter-twin" in r.stdout


# -- no method named outside its own module -----------------------------------------------

# where a method's name may appear besides its own module: the presets' tables, the tiny
# world's training (its stages are named, one after HyperLoRA) and claims (which pick methods
# to measure), and docs (docstrings)
ALLOWED = {"presets.py", "tiny/__init__.py", "tiny/train.py", "tiny/trainer.py", "tiny/claims.py", "tiny/swaps.py",
           "tiny/typical.py", "tiny/flux_train.py"}


def _docstrings(tree) -> set[int]:
    """Docstrings, and a spec's `pairs_with` (the one place a method names another)."""
    ids = {id(k.value) for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == "pairs_with"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _method_files() -> dict[str, str]:
    from recontext import editing, garment, inversion

    out = {}
    for family in (inversion, editing, garment):
        for name in family.names():
            out[name] = os.path.relpath(family.get(name).__file__, PACKAGE).replace(os.sep, "/")
    return out


def test_each_method_is_named_only_in_its_own_module():
    owners = _method_files()
    assert len(owners) >= 12
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                owner = owners.get(node.value)
                if owner is not None and owner != rel:
                    found.append(f"{rel}:{node.lineno} names {node.value!r}")
    assert not found, "\n".join(found)


def test_the_check_finds_a_method_named_elsewhere(tmp_path):
    """The walk above would see a stray name (the test can fail)."""
    owners = _method_files()
    tree = ast.parse('x = "renoise"\n')
    hits = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in owners]
    assert hits == ["renoise"]


# -- import cycles -------------------------------------------------------------------------

def _cycles(graph) -> list[list[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            strong(m)
    return out


def test_the_package_has_no_import_cycle():
    """Counting imports inside functions (grimp reads every import statement)."""
    import grimp

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    graph = grimp.build_graph("recontext")
    assert graph.find_modules_directly_imported_by("recontext.tiny.train")  # the graph is read
    assert _cycles(graph) == []
    graph.add_import(importer="recontext.presets", imported="recontext.models")
    graph.add_import(importer="recontext.models", imported="recontext.presets")
    assert _cycles(graph)  # a cycle, when there is one, is found


def test_editing_imports_nothing_from_the_tiny_world():
    import grimp

    graph = grimp.build_graph("recontext")
    editing = [m for m in graph.modules if m == "recontext.editing" or m.startswith("recontext.editing.")]
    for m in editing:
        assert not [i for i in graph.find_modules_directly_imported_by(m) if i.startswith("recontext.tiny")], m


# -- the specs -----------------------------------------------------------------------------

def test_every_spec_is_sound():
    from recontext import editing, garment, inversion, presets

    for family in (inversion, editing, garment):
        for name in family.names():
            spec = family.spec(name)
            assert spec.name == name and spec.help, name
            assert spec.family in ("epsilon", "flow", "any"), name
            for o in spec.options:
                for preset in (None, *presets.NAMES):
                    value = o.default_for(preset)
                    if o.kind not in ("fixed", "text"):
                        assert o.check(value) == value, (name, o.name)
                if o.kind in ("float", "int"):
                    with pytest.raises(ValueError, match=o.name):
                        o.check(o.hi + 1)
    for name in editing.names():
        paired = editing.spec(name).pairs_with
        assert paired is None or paired in inversion.names(), name
    # a method that draws noise says so: its inversion cache key carries the seed
    assert {n for n in inversion.names() if inversion.spec(n).stochastic} >= {"edit-friendly", "rf-inversion"}


def test_unknown_options_are_refused_and_other_methods_options_left_alone(studio):
    """One set of settings serves several methods (a tab, a batch row): a setting no method
    takes is refused, another method's is left to it, a method's own is checked."""
    with pytest.raises(ValueError, match="unknown setting not_an_option"):
        studio.reconstruct(str(PHOTO), method="ddim", steps=1, not_an_option=1)
    with pytest.raises(ValueError, match="unknown setting"):
        studio.edit(str(PHOTO), "", "a dog", steps=1, not_an_option=1)
    with pytest.raises(ValueError, match="unknown setting"):
        studio.dress(str(PHOTO), "a person", method="prompt-only", steps=1, not_an_option=1)
    with pytest.raises(ValueError, match="renoise_steps must be between 0 and 20"):
        studio.reconstruct(str(PHOTO), method="renoise", steps=1, renoise_steps=50)
    a = studio.reconstruct(str(PHOTO), method="ddim", steps=2)
    b = studio.reconstruct(str(PHOTO), method="ddim", steps=2, renoise_steps=5, gamma=0.1)
    assert a.metrics == b.metrics


def test_a_need_no_one_loads_is_refused(tmp_path, monkeypatch):
    """A spec's `needs` is either shared by the model owner or loaded by the method's own
    module (`COMPONENTS`); anything else is refused when the methods are found."""
    from recontext.methods import Registry

    pkg = tmp_path / "needs_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "owned.py").write_text('from recontext.methods import Spec\n'
                                  'SPEC = Spec("owned", help="x", needs=("unet", "extra-model"))\n'
                                  'COMPONENTS = {"extra-model": lambda bench, settings: None}\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Registry("needs_pkg", "test method").names() == ["owned"]
    (pkg / "orphan.py").write_text('from recontext.methods import Spec\n'
                                   'SPEC = Spec("orphan", help="x", needs=("unet", "extra-model"))\n')
    with pytest.raises(RuntimeError, match="orphan needs extra-model"):
        Registry("needs_pkg", "test method").names()


def test_files_stay_small_and_the_model_owner_keeps_only_what_is_shared():
    """No module of the package over 600 lines; `ModelOwner` under 350 (what every method
    shares: a method's own components live in the method's file)."""
    long = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
    tree = ast.parse((PACKAGE / "models.py").read_text())
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ModelOwner")
    assert owner.end_lineno - owner.lineno + 1 < 350
