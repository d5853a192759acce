"""The data folder: runs and ratings together, and their push to the Hub on Spaces.

`RECONTEXT_DATA_DIR` (default `./data`) holds `runs/`, `ratings.csv`, `votes.csv` and `.blind-secret`,
the key of the review's blind order: made once, never served, never pushed. When
`RECONTEXT_HF_DATASET` names a dataset repo, a `huggingface_hub.CommitScheduler` pushes
the folder every `RECONTEXT_HF_EVERY` minutes (default 5), and every write holds the
scheduler's lock so a push never sees half of one. Without it nothing leaves the machine.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

import numpy as np

from .errors import StorageError
from .review import RatingStore
from .review.votes import VoteStore
from .runs import RunStore, data_dir


@dataclass
class DataFolder:
    root: str
    runs: RunStore
    ratings: RatingStore
    votes: VoteStore | None = None
    scheduler: object | None = None  # huggingface_hub.CommitScheduler when pushing
    _secret: bytes | None = field(default=None, repr=False)

    @property
    def secret(self) -> bytes:
        """This deployment's key for the blind order, made on first use."""
        if self._secret is None:
            self._secret = deployment_secret(self.root)
        return self._secret


SECRET = ".blind-secret"
MIN_SECRET = 32  # characters
MIN_BITS = 128  # estimated entropy (`entropy_bits`)


def check_secret(root: str) -> None:
    """Refuse to start on a review secret that is there but too short (an empty or
    hand-written `.blind-secret`): the blind order and the view tokens would be guessable.
    Says what to do. A missing secret is fine (it is made on first use)."""
    path = os.path.join(root, SECRET)
    try:
        with open(path, "rb") as f:
            value = f.read().strip()
    except FileNotFoundError:
        return
    except OSError as e:
        raise StorageError(f"the review's secret cannot be read ({e.strerror or e})") from e
    fix = ("Delete that file to have a new one made at start (blind orders, open view tokens and "
           "rater links change), or put a random secret in it (e.g. `openssl rand -hex 32`).")
    if len(value) < MIN_SECRET:
        raise ValueError(
            f"the review's secret ({SECRET} in the data folder) is {len(value)} characters long; it "
            f"needs at least {MIN_SECRET} random ones. {fix}")
    bits = entropy_bits(value)
    if len(set(value)) == 1 or bits < MIN_BITS:
        raise ValueError(f"the review's secret ({SECRET} in the data folder) is not random enough "
                         f"(about {bits:.0f} bits by its characters' frequencies; it needs {MIN_BITS}). {fix}")


def entropy_bits(value: bytes) -> float:
    """A simple estimate of a secret's entropy: its length times the Shannon entropy of its
    characters' frequencies (64 random hex digits: about 240 bits; 32 × "a": 0)."""
    counts = np.unique(np.frombuffer(value, dtype=np.uint8), return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() * len(value))


def deployment_secret(root: str) -> bytes:
    """The secret in `root/.blind-secret`, created once (32 random bytes, hex, mode 0600;
    written aside and linked into place, so two processes starting at once agree)."""
    path = os.path.join(root, SECRET)
    check_secret(root)
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise StorageError(f"the review's secret cannot be read ({e.strerror or e})") from e
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces a secret another process made first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        check_secret(root)
        with open(path, "rb") as f:
            return f.read().strip()
    except OSError as e:
        raise StorageError(f"the data folder has no review secret yet and cannot make one "
                           f"({e.strerror or e}): start the studio once with write access "
                           "to its data folder") from e


def hub_scheduler(root: str):
    """A CommitScheduler pushing `root` to `RECONTEXT_HF_DATASET`, or None when unset."""
    repo = os.environ.get("RECONTEXT_HF_DATASET", "").strip()
    if not repo:
        return None
    from huggingface_hub import CommitScheduler

    return CommitScheduler(repo_id=repo, repo_type="dataset", folder_path=root,
                           path_in_repo="data", every=float(os.environ.get("RECONTEXT_HF_EVERY", 5)),
                           private=True, ignore_patterns=["*.lock", "**/.tmp-*", ".tmp-*", SECRET, SECRET + ".*"])


def open_data(root: str | None = None, push: bool = True) -> DataFolder:
    """The data folder at `root` (default `$RECONTEXT_DATA_DIR`); with `push` and
    `RECONTEXT_HF_DATASET` set, pushed to the Hub by a CommitScheduler."""
    root = os.path.abspath(root or data_dir())
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        raise StorageError(f"the data folder {root} cannot be made ({e.strerror or e})") from e
    scheduler = hub_scheduler(root) if push else None
    lock = scheduler.lock if scheduler is not None else None
    runs = RunStore(os.path.join(root, "runs"), lock=lock)
    ratings = RatingStore(os.path.join(root, "ratings.csv"), known=runs.known, commit_lock=lock)
    votes = VoteStore(os.path.join(root, "votes.csv"), known=runs.known, commit_lock=lock)
    return DataFolder(root, runs, ratings, votes, scheduler)
