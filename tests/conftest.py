import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("RECONTEXT_CACHE_DIR", os.path.join(ROOT, ".cache", "recontext"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes on 2 CPU cores; `bash .ci/run -m \"not slow\"` leaves them out")


@pytest.fixture(scope="session")
def studio():
    """One tiny-preset studio shared by the whole run (the base model loads once)."""
    from recontext import Studio
    from recontext.logs import quiet_libraries

    quiet_libraries()
    return Studio("tiny")


@pytest.fixture(scope="session")
def photo():
    from PIL import Image

    return Image.open(os.path.join(ROOT, "assets", "photos", "chelsea.png")).convert("RGB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_data(tmp_path_factory):
    """The data folder of the app under test."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def app_log(tmp_path_factory):
    """The log (stdout and stderr) of the app under test."""
    return tmp_path_factory.mktemp("app") / "app.log"


@pytest.fixture(scope="session")
def app_url(app_log, app_data):
    """`python app.py --preset tiny --mcp` launched on a free port, as a user would run it."""
    port = free_port()
    log = open(app_log, "w")
    env = {**os.environ, "RECONTEXT_DATA_DIR": str(app_data), "PYTHONUNBUFFERED": "1"}  # the log as it happens
    proc = subprocess.Popen([sys.executable, "app.py", "--preset", "tiny", "--port", str(port), "--mcp"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 600  # a busy machine (2 shared cores) can take minutes to import torch and gradio
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited early; see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("app did not start in 600 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
