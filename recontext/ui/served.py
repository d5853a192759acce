"""Served copies of the review's images: one per view, named at random, and bounded.

Gradio names a served file by its content's hash and keeps a copy in its cache
(`GRADIO_TEMP_DIR`); a copy per view, with a random note in its PNG metadata, keeps the
URL from telling which output it is. Every copy, and Gradio's cached copy of it, is
removed when its rater's next view replaces it, after `VIEW_TTL`, or beyond `MAX_SERVED`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
import time

from PIL import Image, PngImagePlugin

VIEWS = os.path.join(tempfile.gettempdir(), "recontext-views")
VIEW_TTL = 3600  # seconds a served copy is kept (Gradio copies it into its cache at once)
MAX_SERVED = 600  # served copies kept at most by this process, oldest removed first
_served: dict[str, tuple] = {}  # copy -> (when, owner), oldest first
_views: dict[tuple, list[str]] = {}  # owner (rater, mode) -> the copies of their current view
_served_lock = threading.Lock()


def cached_copy(path: str) -> str:
    """Where Gradio keeps its copy of the file at `path` (its cache: a folder named by the
    file's content hash, under `GRADIO_TEMP_DIR`)."""
    from gradio.processing_utils import hash_file
    from gradio.utils import get_upload_folder

    return os.path.join(get_upload_folder(), hash_file(path), os.path.basename(path))


def forget(path: str) -> None:
    """Remove a served copy and Gradio's cached copy of it (and its folder, when empty)."""
    try:
        cached = cached_copy(path)
    except OSError:
        cached = None
    for p in (cached, path):
        try:
            if p:
                os.unlink(p)
        except OSError:
            pass
    if cached:
        try:
            os.rmdir(os.path.dirname(cached))
        except OSError:
            pass


def _prune(now: float) -> None:
    """Served copies older than `VIEW_TTL`, and beyond `MAX_SERVED`, with Gradio's copies."""
    for name in os.listdir(VIEWS):  # also the copies of processes that are gone
        path = os.path.join(VIEWS, name)
        try:
            if path not in _served and now - os.path.getmtime(path) > VIEW_TTL:
                forget(path)
        except OSError:
            pass
    for path, (when, owner) in list(_served.items()):
        if now - when > VIEW_TTL or len(_served) > MAX_SERVED:
            _served.pop(path, None)
            forget(path)


def served(path: str, owner: tuple | None = None) -> str:
    """A copy of the PNG at `path` for one view: a random name and a random note in its
    metadata, so the URL it is served under (Gradio names files by their content's hash)
    differs for every view and rater and tells nothing about which output it is. Never in
    the data folder (which may be pushed). Bounded: see `serve_view`."""
    os.makedirs(VIEWS, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("view", secrets.token_hex(16))
    out = os.path.join(VIEWS, f"{secrets.token_hex(12)}.png")
    with Image.open(path) as im:
        im.save(out, format="PNG", pnginfo=info)
    with _served_lock:
        _served[out] = (time.time(), owner)
    return out


def serve_view(paths: list, owner: tuple) -> list:
    """`served` copies of `paths` (None stays None) as one view of `owner` (rater, mode):
    the copies of their previous view are removed, with Gradio's cached copies, and so
    are copies older than `VIEW_TTL` or beyond `MAX_SERVED`: the cache stays bounded
    however many times a client asks for an item."""
    with _served_lock:
        for old in _views.pop(owner, []):
            _served.pop(old, None)
            forget(old)
    out = [served(p, owner) if p else None for p in paths]
    with _served_lock:
        _views[owner] = [p for p in out if p]
        _prune(time.time())
    return out
