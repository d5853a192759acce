"""Cancel stops the work: a 12-scale sweep at 100 steps, cancelled 2 s in through the API
(gradio_client) or left by a client that disconnects, makes no model evaluation more than
one step after the cancel, saves nothing, and the next request of the session runs alone."""

import json
import os
import threading
import time

import httpx
import pytest
from gradio_client import Client, handle_file

from conftest import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAT = os.path.join(ROOT, "assets", "photos", "chelsea.png")
SCALES = ", ".join(f"{0.1 * i:.1f}" for i in range(12))
STEP = 2  # model evaluations of one step at most (a guided step: two latents)


@pytest.fixture(scope="module")
def served(studio, tmp_path_factory):
    """The page served in this process, with `studio.run` watched: how many top-level jobs
    run at once (`watch["most"]`), and the data folder."""
    from recontext.data import open_data
    from recontext.ui import build_demo, common

    root = str(tmp_path_factory.mktemp("data"))
    watch = {"now": 0, "most": 0, "lock": threading.Lock()}
    depth = threading.local()
    run = studio.run

    def watched(job, *args, **kwargs):
        top = not getattr(depth, "n", 0)
        depth.n = getattr(depth, "n", 0) + 1
        if top:
            with watch["lock"]:
                watch["now"] += 1
                watch["most"] = max(watch["most"], watch["now"])
        try:
            return run(job, *args, **kwargs)
        finally:
            depth.n -= 1
            if top:
                with watch["lock"]:
                    watch["now"] -= 1

    studio.run = watched
    common._runners.clear()
    demo = build_demo(studio, open_data(root, push=False))
    port = free_port()
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=port,
                                                   prevent_thread_lock=True, quiet=True)
    studio.models.pipe  # loaded before timing anything
    yield f"http://127.0.0.1:{port}/", watch, os.path.join(root, "runs")
    demo.close()
    del studio.run
    common._runners.clear()


def saved_runs(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def sweep_args():
    return dict(photo=handle_file(CAT), source="a cat", target="a dog", method="ddim", scales=SCALES,
                guidance=7.5, steps=100, seed=0, edit_method="regenerate")


def settled(studio, quiet=1.5, most=30):
    """The model evaluation count once it has not moved for `quiet` seconds."""
    end = time.time() + most
    last, since = studio.models.unet_evaluations(), time.time()
    while time.time() < end:
        time.sleep(0.1)
        now = studio.models.unet_evaluations()
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet:
            return now
    raise AssertionError("the model kept evaluating")


def started(studio, before, most=60):
    end = time.time() + most
    while studio.models.unet_evaluations() == before:
        assert time.time() < end, "the sweep never started"
        time.sleep(0.05)
    return time.time()


def test_a_cancelled_sweep_stops_within_a_step_saves_nothing_and_the_next_runs_alone(served, studio):
    url, watch, runs = served
    client = Client(url, verbose=False)
    before_runs = saved_runs(runs)
    before = studio.models.unet_evaluations()
    job = client.submit(**sweep_args(), api_name="/edit_sweep")
    time.sleep(max(0.0, started(studio, before) + 2 - time.time()))
    job.cancel()
    at_cancel = studio.models.unet_evaluations()
    # a new request of the same session, at once: it waits for the cancelled one to end
    after = client.predict(photo=handle_file(CAT), prompt="a cat", methods=["ddim"], variants=["plain"],
                           image_scale=0.4, steps=2, seed=0, api_name="/reconstruct")
    assert after[0]["runs"] and watch["most"] == 1, watch
    end = settled(studio)
    ran_after = end - at_cancel - 2 * 2  # the reconstruction's own: 2 steps inverting, 2 rebuilding
    print(f"cancel: {at_cancel - before} evaluations before the cancel, {ran_after} of the sweep after it")
    assert ran_after <= STEP, (at_cancel, end)
    assert at_cancel - before < 12 * 100 * 3, "the sweep finished before it was cancelled"
    assert [r for r in saved_runs(runs) if r not in before_runs] == [after[0]["run_id"]]  # the sweep saved nothing


def test_a_client_that_disconnects_stops_its_sweep(served, studio):
    url, watch, runs = served
    before_runs = saved_runs(runs)
    session = "disconnecting-client"
    with httpx.Client(base_url=url, timeout=30) as http:
        with open(CAT, "rb") as f:
            (path,) = http.post("gradio_api/upload", files={"files": ("cat.png", f, "image/png")}).json()
        config = http.get("config").json()
        fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "edit_sweep")
        args = sweep_args()
        args["photo"] = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "cat.png"}
        params = http.get("gradio_api/info").json()["named_endpoints"]["/edit_sweep"]["parameters"]
        data = [args.get(p["parameter_name"], p.get("parameter_default")) for p in params]
        before = studio.models.unet_evaluations()
        http.post("gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session,
                                                 "event_data": None, "trigger_id": None})
        with http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
            started(studio, before)
            time.sleep(2)
            for line in stream.iter_lines():  # read what came so far, then hang up
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_starts":
                    break
        gone = studio.models.unet_evaluations()
    end = settled(studio)
    print(f"disconnect: {gone - before} evaluations before hanging up, {end - gone} after it")
    assert end - gone <= STEP, (gone, end)
    assert end - before < 12 * 100 * 3
    assert saved_runs(runs) == before_runs
    assert watch["now"] == 0


CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (.ci/run installs it)")
def test_the_pages_cancel_button_stops_the_sweep_in_chromium(served, studio):
    from playwright.sync_api import sync_playwright

    url, watch, runs = served
    before_runs = saved_runs(runs)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(url)
        page.get_by_role("tab", name="Text editing").click()
        page.get_by_text("a photo of a tiger").first.click()
        page.locator("input[aria-label='number input for Steps']:visible").first.fill("100")
        page.get_by_label("Image scales").fill(SCALES)
        before = studio.models.unet_evaluations()
        page.get_by_role("button", name="Sweep scales").click()
        time.sleep(max(0.0, started(studio, before) + 2 - time.time()))
        page.get_by_role("button", name="Cancel", exact=True).locator("visible=true").nth(1).click()
        clicked = studio.models.unet_evaluations()
        end = settled(studio)
        print(f"page cancel: {clicked - before} evaluations before the click, {end - clicked} after it")
        assert end - clicked <= STEP, (clicked, end)
        assert saved_runs(runs) == before_runs
        page.locator("input[aria-label='number input for Steps']:visible").first.fill("2")
        page.get_by_role("button", name="Edit", exact=True).click()  # the next request runs, alone
        page.get_by_text("Saved as run").first.wait_for(timeout=120_000)
        assert watch["most"] == 1 and len(saved_runs(runs)) == len(before_runs) + 1
        browser.close()
