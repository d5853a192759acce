"""File locks kept out of the user's folders: a lock for `path` lives in the system's temp
folder, named by a hash of the path's absolute form, so every process on this machine that
writes `path` takes the same lock, and no `.lock` file is left beside a results CSV."""

from __future__ import annotations

import hashlib
import os
import tempfile

from filelock import FileLock


def lock_for(path: str, timeout: float = -1) -> FileLock:
    folder = os.path.join(tempfile.gettempdir(), "recontext-locks")
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha1(os.path.realpath(os.path.abspath(path)).encode()).hexdigest()[:24]
    return FileLock(os.path.join(folder, name + ".lock"), timeout=timeout)


def replace_json(path: str, data) -> None:
    """Write `data` as JSON to `path` whole or not at all (a temp file, synced, then renamed
    over it). The caller holds `lock_for(path)`."""
    import json
    import uuid

    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
