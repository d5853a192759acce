"""The data folder: runs and ratings together, and their push to the Hub on Spaces.

`RECONTEXT_DATA_DIR` (default `./data`) holds `runs/` and `ratings.csv`. When
`RECONTEXT_HF_DATASET` names a dataset repo, a `huggingface_hub.CommitScheduler` pushes
the folder every `RECONTEXT_HF_EVERY` minutes (default 5), and every write holds the
scheduler's lock so a push never sees half of one. Without it nothing leaves the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .review import RatingStore
from .runs import RunStore, data_dir


@dataclass
class DataFolder:
    root: str
    runs: RunStore
    ratings: RatingStore
    scheduler: object | None = None  # huggingface_hub.CommitScheduler when pushing


def hub_scheduler(root: str):
    """A CommitScheduler pushing `root` to `RECONTEXT_HF_DATASET`, or None when unset."""
    repo = os.environ.get("RECONTEXT_HF_DATASET", "").strip()
    if not repo:
        return None
    from huggingface_hub import CommitScheduler

    return CommitScheduler(repo_id=repo, repo_type="dataset", folder_path=root,
                           path_in_repo="data", every=float(os.environ.get("RECONTEXT_HF_EVERY", 5)),
                           private=True, ignore_patterns=["*.lock", "**/.tmp-*", ".tmp-*"])


def open_data(root: str | None = None) -> DataFolder:
    root = os.path.abspath(root or data_dir())
    os.makedirs(root, exist_ok=True)
    scheduler = hub_scheduler(root)
    lock = scheduler.lock if scheduler is not None else None
    runs = RunStore(os.path.join(root, "runs"), lock=lock)
    ratings = RatingStore(os.path.join(root, "ratings.csv"), known=runs.known, commit_lock=lock)
    return DataFolder(root, runs, ratings, scheduler)
