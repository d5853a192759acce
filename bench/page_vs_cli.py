"""The inversion tab as the page runs it against the CLI path, on one 600×400 JPEG, side by side
in one run (issue 27: 82 s in the browser against 10 s on the command line).

- CLI: `python -m recontext invert PHOTO --preset tiny` as a user types it (one method, ddim
  plain: process start, model load and one reconstruction), and the CLI's own call,
  `Studio.reconstruct`, for the jobs the page runs by default (every method × plain and tight).
- Page: `python app.py --preset tiny` launched, the photo sent to `/reconstruct` with the
  page's defaults through gradio_client (upload, queue, progress, the handler, results
  saved as a run, images sent back), first call (the server's one-off model load) and again;
  with headless Chromium at /usr/bin/chromium, also the click in the browser until the
  metrics table is filled.

    python bench/page_vs_cli.py [--preset tiny] [--steps N]

Prints seconds and the ratios last: the page against the CLI for the same jobs (the cost
of the page itself), and the page's default request against the CLI's default (more jobs).
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CHROMIUM = "/usr/bin/chromium"


def photo(folder: str) -> str:
    from PIL import Image

    path = os.path.join(folder, "own.jpg")
    Image.open(os.path.join(ROOT, "assets", "photos", "coffee.png")).convert("RGB").resize((600, 400)).save(
        path, quality=90)
    return path


def cli_command(path: str, preset: str, steps: int | None, out: str) -> float:
    """Seconds of `python -m recontext invert` as a user runs it."""
    cmd = [sys.executable, "-m", "recontext", "invert", path, "--preset", preset, "--out", out]
    if steps:
        cmd += ["--steps", str(steps)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cli_calls(path: str, preset: str, steps: int | None) -> tuple[float, float, int]:
    """(seconds of the CLI's call for every page job, model load, jobs) in this process."""
    from recontext import Studio
    from recontext.logs import quiet_libraries

    quiet_libraries()
    studio = Studio(preset)
    start = time.perf_counter()
    studio.setup()
    load = time.perf_counter() - start
    jobs = [(m, tight) for m in studio.methods for tight in (False, True)]
    start = time.perf_counter()
    for m, tight in jobs:
        studio.reconstruct(path, method=m, tight=tight, steps=steps)
    return time.perf_counter() - start, load, len(jobs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(preset: str, data: str):
    port = free_port()
    env = {**os.environ, "RECONTEXT_DATA_DIR": data, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "app.py", "--preset", preset, "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start")


def page_calls(url: str, path: str, methods: list[str], steps: int | None) -> tuple[float, float]:
    """(first, again) seconds of the page's default request through the app's API."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    kwargs = dict(prompt="", methods=methods, variants=["plain", "tight"], image_scale=0.4, seed=0,
                  api_name="/reconstruct")
    if steps:
        kwargs["steps"] = steps
    times = []
    for _ in range(2):
        start = time.perf_counter()
        result = client.predict(photo=handle_file(path), **kwargs)[0]
        times.append(time.perf_counter() - start)
        assert len(result["runs"]) == 2 * len(methods), result
    return times[0], times[1]


def browser_call(url: str, path: str, shot: str | None = None) -> float | None:
    """Seconds from the click in headless Chromium until the metrics table is filled, with
    the page's defaults (the model already loaded); None without Chromium."""
    if not os.path.exists(CHROMIUM):
        return None
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        page = browser.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Inversion").click()
        with page.expect_file_chooser() as chooser:
            page.get_by_text("Click to Upload").locator("visible=true").first.click()
        chooser.value.set_files(path)
        page.wait_for_timeout(2000)  # the upload settles into its box
        start = time.perf_counter()
        page.get_by_role("button", name="Invert and reconstruct").click()
        page.get_by_text("Saved as run").first.wait_for(timeout=600_000)
        page.locator(".cell-wrap:visible", has_text="edit-friendly").first.wait_for(timeout=60_000)
        seconds = time.perf_counter() - start
        if shot:
            page.wait_for_timeout(1500)
            page.screenshot(path=shot, full_page=True)
        browser.close()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--shot", default=None, help="save a screenshot of the page's result here (PNG)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = photo(tmp)
        proc, url = launch(args.preset, os.path.join(tmp, "data"))
        try:
            from recontext.presets import get

            methods = ["flow-euler", "rf-inversion"] if get(args.preset).flow else ["ddim", "renoise", "edit-friendly"]
            page_first, page_again = page_calls(url, path, methods, args.steps)
            browser = browser_call(url, path, args.shot)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        command = cli_command(path, args.preset, args.steps, os.path.join(tmp, "out.png"))
        same, load, jobs = cli_calls(path, args.preset, args.steps)
    print(f"photo 600×400 JPEG, preset {args.preset}, {jobs} jobs on the page by default "
          f"({', '.join(methods)} × plain, tight)")
    print(f"CLI `python -m recontext invert` (1 job, process start and model load included): {command:.2f} s")
    print(f"CLI calls (Studio.reconstruct) for the page's {jobs} jobs, model loaded ({load:.2f} s before): "
          f"{same:.2f} s")
    print(f"page /reconstruct, first request (with the server's one-off model load): {page_first:.2f} s")
    print(f"page /reconstruct, again: {page_again:.2f} s")
    if browser is not None:
        print(f"page in headless Chromium, click to filled table: {browser:.2f} s")
    print(f"ratio page / CLI, same {jobs} jobs: {page_again / same:.2f}")
    if browser is not None:
        print(f"ratio browser / CLI, same {jobs} jobs: {browser / same:.2f}")
    print(f"ratio page's default first request / CLI command's default: {page_first / command:.2f}")


if __name__ == "__main__":
    main()
