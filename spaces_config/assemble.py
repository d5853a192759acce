"""Assemble a Hugging Face Space folder from the repository.

    python spaces_config/assemble.py OUT_DIR

OUT_DIR gets app.py, recontext/, assets/, requirements.txt (the repo's plus
requirements-gpu.txt) and README.md (front_matter.yaml as its YAML header, then the repo
README). Push OUT_DIR to the Space's git repository, or `huggingface-cli upload`.
"""

from __future__ import annotations

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COPY = ("app.py", "recontext", "assets")


def assemble(out: str) -> str:
    if os.path.exists(out) and os.listdir(out):
        raise SystemExit(f"{out} exists and is not empty")
    os.makedirs(out, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi")
    for name in COPY:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(out, name), ignore=ignore)
        else:
            shutil.copy2(src, out)
    with open(os.path.join(out, "requirements.txt"), "w") as f:
        for name in (os.path.join(ROOT, "requirements.txt"), os.path.join(HERE, "requirements-gpu.txt")):
            f.write(open(name).read().rstrip() + "\n")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("---\n" + open(os.path.join(HERE, "front_matter.yaml")).read().rstrip() + "\n---\n\n")
        f.write(open(os.path.join(ROOT, "README.md")).read())
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(assemble(sys.argv[1]))
