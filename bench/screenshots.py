"""Screenshots of every tab for the README: launches `python app.py --preset tiny` on a free
port with a temporary data folder, opens it in headless Chromium (Debian's, at
/usr/bin/chromium, driven by playwright; never `playwright install`) and writes, for each tab,

- assets/screenshots/<tab>.png          the tab as a visitor first sees it, and
- assets/screenshots/<tab>-example.png  after clicking its first example and its main button
                                        (the page's default settings) and waiting for the result;
- out/screenshots-3s/<tab>-3s.png       3 s after pressing that button: the progress shown
                                        over the results while it runs (not committed).

The Review tab has no examples: its "-example" shot is the first blind item, after the other
tabs' runs have made some. Each PNG is scaled to 1000 px wide and palette-quantised to stay
under 200 KB.

    python bench/screenshots.py [--out assets/screenshots] [--tabs garment,inversion,edit,review]
                                [--timeout 600]

Prints each file with its size and the seconds each example took.
"""

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# tab id -> (tab label, main button, text that shows the run finished)
TABS = {
    "garment": ("Garment → model", "Dress", "Saved as run"),
    "inversion": ("Inversion", "Invert and reconstruct", "Saved as run"),
    "edit": ("Text editing", "Edit", "Saved as run"),
    # with no item to rate (only --tabs edit,review: an edit makes one output), the page says so
    "review": ("Review", "Next item", "left for you|You have rated every item"),
}
WIDTH = 1000
MAX_BYTES = 200_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(data: str, log, timeout: float):
    """app.py on a free port; returns (process, url, seconds until it answered HTTP)."""
    port = free_port()
    env = {**os.environ, "RECONTEXT_DATA_DIR": data, "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--preset", "tiny", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - start
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app.py did not answer in {timeout:.0f} s; see {log.name}")


def save(png: bytes, path: str) -> int:
    """Scale to WIDTH px wide, quantise to a palette (fewer colours until under MAX_BYTES)."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if im.width > WIDTH:
        im = im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)
    for colours in (256, 128, 64, 32):
        buf = io.BytesIO()
        im.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, "PNG", optimize=True)
        if buf.tell() <= MAX_BYTES:
            break
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return buf.tell()


def settle(page, timeout_ms: int):
    """Wait until no progress indicator is visible and every visible image has loaded."""
    page.wait_for_function("""() => ![...document.querySelectorAll('.eta-bar, .progress-text, .wrap.generating')]
        .some(e => e.offsetParent !== null)""", timeout=timeout_ms)
    page.wait_for_function("""() => [...document.querySelectorAll('img')].filter(i => i.offsetParent !== null)
        .every(i => i.complete)""", timeout=60_000)
    page.wait_for_timeout(1500)


def open_tab(page, label: str):
    page.get_by_role("tab", name=label).click()
    page.wait_for_timeout(800)


def first_example(page):
    """The first row (or card) of the visible tab's Examples."""
    for selector in (".tr-body", ".gallery-item", "button.gallery"):
        rows = page.locator(f"{selector}:visible")
        if rows.count():
            return rows.first
    raise RuntimeError("no examples visible on this tab")


def shoot(page, path: str, files: list):
    size = save(page.screenshot(full_page=True), path)
    files.append((path, size))
    print(f"{os.path.relpath(path, ROOT)}: {size / 1000:.0f} KB", flush=True)


def run_tab(page, tab, label, button, done, out, files, timeout_ms, running_dir=None):
    """The tab on arrival, 3 s into its first example's run (in `running_dir`, default
    out/screenshots-3s in the clone, ignored by git), then after the run."""
    running_dir = running_dir or os.path.join(ROOT, "out", "screenshots-3s")
    os.makedirs(running_dir, exist_ok=True)
    open_tab(page, label)
    settle(page, timeout_ms)
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, os.path.join(out, f"{tab}.png"), files)
    start = time.perf_counter()
    if tab == "review":
        page.get_by_label("Your name").fill("screenshot-rater")
    for attempt in (1, 2):  # a click that lands before the page is ready is tried once more
        if tab != "review":
            first_example(page).click()
            page.wait_for_timeout(1500)  # the example's images settle into the form
        page.get_by_role("button", name=button, exact=True).locator("visible=true").first.click()
        print(f"{tab}: example clicked, {button!r} pressed; waiting for {done!r}", flush=True)
        if attempt == 1 and tab != "review":  # 3 s in: the progress over the results (issue 38)
            page.wait_for_timeout(3000)
            shoot(page, os.path.join(running_dir, f"{tab}-3s.png"), files)
        finished = page.get_by_text(re.compile(done)).locator("visible=true").first
        error = page.locator(".toast-body.error").first
        finished.or_(error).first.wait_for(timeout=timeout_ms)
        if finished.is_visible():
            break
        message = error.inner_text()
        if attempt == 2:
            raise RuntimeError(f"{tab}: the page showed an error: {message}")
        print(f"{tab}: the page showed an error ({message.strip()[:200]}); trying again", flush=True)
        page.evaluate("document.querySelectorAll('.toast-body button').forEach(b => b.click())")
        page.wait_for_timeout(1000)
    settle(page, timeout_ms)
    print(f"{tab}: example done in {time.perf_counter() - start:.1f} s", flush=True)
    shoot(page, os.path.join(out, f"{tab}-example.png"), files)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "assets", "screenshots"))
    parser.add_argument("--tabs", default=",".join(TABS))
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for each example's run")
    args = parser.parse_args(argv)
    tabs = [t.strip() for t in args.tabs.split(",") if t.strip()]
    if unknown := set(tabs) - set(TABS):
        sys.exit(f"unknown tabs: {sorted(unknown)}; known: {list(TABS)}")
    if not os.path.exists(CHROMIUM):
        sys.exit("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    os.makedirs(args.out, exist_ok=True)
    timeout_ms = int(args.timeout * 1000)
    files = []
    with tempfile.TemporaryDirectory() as tmp:
        log = open(os.path.join(tmp, "app.log"), "w")
        proc, url, up = launch(os.path.join(tmp, "data"), log, args.timeout)
        print(f"app.py answered HTTP after {up:.1f} s", flush=True)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.set_default_timeout(timeout_ms)
                page.goto(url)
                page.get_by_role("tab", name=TABS["inversion"][0]).wait_for()
                page.wait_for_timeout(2000)
                for tab in tabs:
                    label, button, done = TABS[tab]
                    try:
                        run_tab(page, tab, label, button, done, args.out, files, timeout_ms)
                    except Exception:
                        debug = os.path.join(tempfile.gettempdir(), f"recontext-screenshot-{tab}-failed.png")
                        page.screenshot(path=debug, full_page=True)
                        print(f"{tab} failed; the page as it was: {debug}", flush=True)
                        raise
                context.close()
                browser.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    too_big = [p for p, s in files if s > MAX_BYTES]
    if too_big:
        sys.exit(f"over {MAX_BYTES} bytes: {too_big}")


if __name__ == "__main__":
    main()
