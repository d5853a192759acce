"""Every ```bash and ```python block of README.md and docs/*.md runs as written (issues 27
and 38), on the tiny preset, from a temporary folder that holds links to the clone's
top-level files and folders (so relative outputs such as `out/` or `data/` land there, and
the clone stays clean). A block that must not run is fenced ```text.

Python blocks run as a script with this interpreter; one that talks to a running studio
(`Client("http://127.0.0.1:7860/")`) gets the test's launched app (`app_url`) instead of
that address.

Skipped, and only these:
- a line ending in a comment that says what it needs or how long it takes (`# needs a GPU`,
  `# needs Hub weights`, `# needs the dataset`, `# needs a Hub account`, `# needs 10 GB of
  disk`, `# takes 90 min on 2 CPU cores`): the reason shown is that comment;
- `bash .ci/run ...`: the test suite itself, which this test is part of.

Checked differently: a command that starts `app.py` is run up to the server (the install
before it, `python3 -m venv .venv && .venv/bin/pip install ...`, is what `.ci/run` has
done already), on a free port, until it answers HTTP, then stopped.

A block's commands run in order in one shell each, the block's folder shared (the batch
block writes its manifest, then runs it). Commands that read ratings (`data/ratings.csv`,
`ratings export data`) get a small ratings file written first with the project's store."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
PAGES = [README] + sorted(os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md"))
APP_ADDRESS = "http://127.0.0.1:7860/"
MARKER = re.compile(r"#\s*((?:needs|takes)\b[^#`]*)$")
NOT_LINKED = {".git", "data", "out", ".cache", "test-artifacts"}

pytestmark = pytest.mark.slow  # a few minutes: every offline command of the README and docs/, run as written


def logical_lines(block: str) -> list[str]:
    """The block's commands: continuation lines (ending in a backslash) joined, comments
    and blank lines dropped."""
    out, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1].rstrip() + " "
            continue
        out.append((current + line.strip()).strip())
        current = ""
    if current:
        out.append(current.strip())
    return out


def readme_blocks(text: str | None = None) -> list[list[str]]:
    """Each ```bash block's commands; and any other block's `python -m recontext` lines
    except ```python and ```text blocks (```text: shown, not run)."""
    text = open(README, encoding="utf-8").read() if text is None else text
    blocks = []
    for lang, body in re.findall(r"(?ms)^```(\w*)\n(.*?)^```", text):
        if lang == "bash":
            blocks.append(logical_lines(body))
        elif lang not in ("python", "text"):
            lines = [l for l in logical_lines(body) if re.match(r"(\S*/)?python3? -m recontext ", l)]
            if lines:
                blocks.append(lines)
    return [b for b in blocks if b]


def python_blocks(text: str) -> list[str]:
    return [body for lang, body in re.findall(r"(?ms)^```(\w*)\n(.*?)^```", text) if lang == "python"]


def page_name(path: str) -> str:
    return os.path.relpath(path, ROOT)


def skip_reason(command: str) -> str | None:
    if m := MARKER.search(command):
        return m.group(1).strip()
    if re.match(r"bash \.ci/run\b", command):
        return "the test suite itself (this test is part of it)"
    return None


def block_id(block: list[str]) -> str:
    words = re.sub(r"\S*/(python|accelerate) ", r"\1 ", block[0]).split()
    return "-".join(w for w in words[:5] if not w.startswith("-"))[:60]


TEXTS = {page_name(p): open(p, encoding="utf-8").read() for p in PAGES}
BLOCKS = [(name, b) for name, text in TEXTS.items() for b in readme_blocks(text)]
PYTHON = [(name, b) for name, text in TEXTS.items() for b in python_blocks(text)]


def test_the_readme_has_commands_and_marks():
    commands = [c for _, b in BLOCKS for c in b]
    assert len(commands) >= 15, commands
    assert any("app.py" in c for c in commands)
    assert any(c.startswith("bash .ci/run") for c in commands)
    # each skip is marked on its own line, so a reader sees why it cannot run here
    for c in commands:
        if "accelerate launch" in c or "huggingface.co" in c or "app.py --preset sdxl" in c:
            assert skip_reason(c), f"needs a GPU, Hub weights or an account but is not marked: {c}"
    assert "cat.png" not in TEXTS["README.md"]  # issue 27: a file not in the repo
    assert len(TEXTS["README.md"].encode()) <= 15_000  # issue 38: read in five minutes
    assert len(PYTHON) >= 2 and any(APP_ADDRESS in b for _, b in PYTHON)


def test_outputs_go_to_an_ignored_folder():
    """Every `--out` of a command that runs writes under out/ (ignored by git), never the
    clone's root."""
    ignored = open(os.path.join(ROOT, ".gitignore"), encoding="utf-8").read().split()
    assert "out/" in ignored and "data/" in ignored
    for name, block in BLOCKS:
        for command in block:
            for out in re.findall(r"--out[ =](\S+)", command):
                assert out.startswith("out/") or out == "out" or skip_reason(command), (name, command)


def test_markers_are_parsed():
    block = "a --x 1 \\\n  --y 2  # needs a GPU\n# a comment\nb  # takes 90 min on 2 CPU cores\nbash .ci/run -m \"not slow\"\nc\n"
    lines = logical_lines(block)
    assert lines == ["a --x 1 --y 2  # needs a GPU", "b  # takes 90 min on 2 CPU cores",
                     'bash .ci/run -m "not slow"', "c"]
    assert [skip_reason(l) for l in lines] == ["needs a GPU", "takes 90 min on 2 CPU cores",
                                               "the test suite itself (this test is part of it)", None]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A folder whose top-level entries link to the clone's (the package, assets, app.py,
    spaces_config, .venv, ...): commands run there as from the clone's root."""
    folder = tmp_path_factory.mktemp("readme")
    for name in os.listdir(ROOT):
        if name not in NOT_LINKED:
            os.symlink(os.path.join(ROOT, name), folder / name)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("RECONTEXT_DATA_DIR", None)  # the default, ./data, as a reader has it
    if not os.path.exists(os.path.join(ROOT, ".venv", "bin", "python")):
        # the README's `.venv/bin/python`: this interpreter when the suite runs from elsewhere
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def write_ratings(folder):
    from recontext.review import RatingStore

    os.makedirs(folder / "data", exist_ok=True)
    store = RatingStore(folder / "data" / "ratings.csv")
    for rater, fidelity in (("ana", 4), ("bo", 2)):
        for method, label, position in (("ddim", "A", 0), ("ddim+tight", "B", 1)):
            store.add(rater=rater, item_id="run1", task="inversion", method=method, fidelity=fidelity,
                      realism=3, label=label, position=position, revealed=True)


def serve(command: str, cwd, env, timeout: float = 600) -> str:
    """Run the app.py part of `command` until it answers HTTP; return what it logged."""
    app = command.split("&&")[-1].strip()
    assert "app.py" in app, command
    port = free_port()
    env = {**env, "GRADIO_SERVER_PORT": str(port), "RECONTEXT_PRESET": env.get("RECONTEXT_PRESET", "tiny")}
    log = open(cwd / f"app-{port}.log", "w+")
    proc = subprocess.Popen(app, shell=True, executable="/bin/bash", cwd=cwd, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert proc.poll() is None, f"`{app}` exited with {proc.returncode}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    return app
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"`{app}` did not answer HTTP in {timeout:.0f} s")
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.seek(0)
        print(log.read()[-3000:])
        log.close()


@pytest.mark.parametrize("page,block", BLOCKS, ids=[f"{n}-{i}-{block_id(b)}" for i, (n, b) in enumerate(BLOCKS)])
def test_readme_block_runs_as_written(page, block, clone):
    env = environment()
    ran, skipped = [], []
    for command in block:
        if reason := skip_reason(command):
            skipped.append((command, reason))
            continue
        if "app.py" in command:
            serve(command, clone, env)
            ran.append(command)
            continue
        if "data/ratings.csv" in command or "ratings export data" in command:
            write_ratings(clone)
        start = time.perf_counter()
        out = subprocess.run(command, shell=True, executable="/bin/bash", cwd=clone, env=env,
                             capture_output=True, text=True, timeout=900)
        print(f"$ {command}\n  {time.perf_counter() - start:.1f} s, exit {out.returncode}")
        assert out.returncode == 0, f"`{command}` exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        ran.append(command)
    if not ran:
        pytest.skip("; ".join(f"{reason}: {c[:60]}" for c, reason in skipped))


@pytest.mark.parametrize("page,code", PYTHON, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PYTHON)])
def test_python_block_runs_as_written(page, code, clone, request):
    if APP_ADDRESS in code:  # the studio a reader has running: the test's launched app
        code = code.replace(APP_ADDRESS, request.getfixturevalue("app_url"))
    script = clone / f"block-{abs(hash(code))}.py"
    script.write_text(code, encoding="utf-8")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, script.name], cwd=clone, env=environment(), capture_output=True,
                         text=True, timeout=900)
    print(f"{page}: {time.perf_counter() - start:.1f} s, exit {out.returncode}\n{out.stdout[-1500:]}")
    assert out.returncode == 0, f"{page}'s block exited {out.returncode}:\n{code}\n{out.stderr[-4000:]}"
