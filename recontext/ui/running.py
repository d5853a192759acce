"""Running a job from the page: on ZeroGPU priced by the job itself, under a cancel signal
that the page's Cancel button, a cancelled event or a gone client sets. The tabs call
`run_job`; the core never sees Gradio."""

from __future__ import annotations

import contextlib
import functools
import os
import threading

import gradio as gr

from .. import jobs, zerogpu


def on_gpu(run, preset, loaded=lambda: True):
    """On a ZeroGPU Space (`spaces` importable, SPACES_ZERO_GPU set), `run(job, ...)` under
    `spaces.GPU` for the duration `recontext.zerogpu` prices from that same `job` (its own
    fields, each method's options included) on `preset`, plus loading while `loaded()` is
    false. A job too long for one ZeroGPU call is refused with a message saying what to
    lower. Anywhere else `run` is returned unchanged."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return run
    try:
        import spaces
    except ImportError:
        return run

    def estimated(job) -> float:
        return zerogpu.estimate(preset, zerogpu.work(job, preset), loaded=loaded())

    def duration(job, *args, **kwargs):
        try:
            return zerogpu.requested(estimated(job))
        except Exception:  # a bad value: the run will say so; ask for the default
            return 60

    gpu_run = spaces.GPU(duration=duration)(run)

    @functools.wraps(run)
    def checked(job, *args, **kwargs):
        seconds = estimated(job)  # a bad field: ValueError naming it, before any GPU is asked for
        if not zerogpu.fits(seconds):
            raise gr.Error(f"This request needs about {seconds:.0f} s of GPU time, more than one ZeroGPU call "
                           f"may take ({zerogpu.LIMIT_S} s with a {zerogpu.MARGIN}x margin): lower the steps, "
                           "the fine-tune steps, or the number of methods / scales.", print_exception=False)
        return gpu_run(job, *args, **kwargs)

    return checked


_runners: dict = {}


def execute(studio, job, progress=None, cancel=None):
    """Run `job` on `studio` (`Studio.run`): on ZeroGPU one GPU call priced by the job, and
    for a sweep or a comparison one GPU call per edit, each priced by its own edit's job."""
    import sys

    key = (id(studio), os.environ.get("SPACES_ZERO_GPU"), id(sys.modules.get("spaces")))
    if key not in _runners:
        _runners[key] = on_gpu(studio.run, studio.preset, lambda: studio.models.loaded)
    runner = _runners[key]
    if isinstance(job, jobs.Edit) and job.kind != "one":
        return studio.run(job, progress, cancel, each=runner)
    return runner(job, progress, cancel)


# -- cancelling: a signal per request, set by Cancel, by a cancelled event or a gone client ------
class Signal:
    """The cancel signal of one request (`is_set()`, as `Studio.run` checks it): set by the
    page's Cancel button (`cancel_session`), and read as set once Gradio no longer runs the
    request's event (cancelled through the API, or its client disconnected: Gradio stops
    waiting for the function but cannot stop its thread)."""

    def __init__(self, blocks=None, event_id=None):
        self.event, self.done = threading.Event(), threading.Event()
        self.blocks, self.event_id = blocks, event_id

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set() or not self.running()

    def running(self) -> bool:
        """Whether Gradio still runs this request's event (always, outside a Gradio request)."""
        queue = getattr(self.blocks, "_queue", None)
        if queue is None or self.event_id is None:
            return True
        for events in list(queue.active_jobs):
            for evt in events or ():
                if evt._id == self.event_id:
                    return bool(evt.alive)
        return False


_lock = threading.Lock()
_running: dict[str, Signal] = {}  # browser session -> its request's signal


@contextlib.contextmanager
def request_signal(request=None):
    """The cancel signal of the request being handled. A new request from a browser session
    waits until its predecessor (cancelled, it stops within a model step) has ended, so the
    two never run side by side."""
    from gradio.context import LocalContext

    session = getattr(request, "session_hash", None)
    signal = Signal(LocalContext.blocks.get(None), LocalContext.event_id.get(None))
    with _lock:
        before = _running.get(session) if session else None
        if session:
            _running[session] = signal
    try:
        if before is not None:
            before.done.wait()
        yield signal
    finally:
        signal.done.set()
        with _lock:
            if session and _running.get(session) is signal:
                del _running[session]


def cancel_session(request: gr.Request = None):
    """The Cancel button: set the cancel signal of its browser session's running request."""
    with _lock:
        signal = _running.get(getattr(request, "session_hash", None))
    if signal is not None:
        signal.set()


def run_job(studio, job, progress=None, request=None):
    """`execute` under the request's cancel signal; a cancelled job is an error message on
    the page (and nothing is saved: the caller saves only what comes back)."""
    with request_signal(request) as signal:
        try:
            return execute(studio, job, progress, signal)
        except jobs.Cancelled as e:
            raise gr.Error(str(e), print_exception=False) from None
