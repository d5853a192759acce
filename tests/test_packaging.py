"""`pip install -e .` gives `import recontext` from any folder and a `recontext` command
that is `python -m recontext`."""

import os
import subprocess
import sys
import sysconfig
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_editable_install_gives_the_package_and_the_command(tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    # the new environment sees this one's packages (pip, setuptools, the requirements) through
    # a .pth file, so nothing is downloaded and this environment is left as it was
    site = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "outer.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-build-isolation", "--no-index", "-e", ROOT],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert pip.returncode == 0, pip.stderr[-2000:]
    where = subprocess.run([str(bin_dir / "python"), "-c",
                            "import recontext; print(recontext.__file__, recontext.__version__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert where.startswith(os.path.join(ROOT, "recontext"))
    # the command runs the same parser as `python -m recontext` (--help needs no dependency)
    command = subprocess.run([str(bin_dir / "recontext"), "--help"], capture_output=True,
                             text=True, cwd=tmp_path)
    module = subprocess.run([sys.executable, "-m", "recontext", "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert command.returncode == 0, command.stderr[-2000:]
    assert command.stdout == module.stdout and "ratings" in command.stdout
