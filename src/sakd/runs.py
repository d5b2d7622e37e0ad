"""The run folder's layout, defined once: every file a training run writes and every reader of it
(``sakd eval``, ``compare``, resume, teachers, the NAS search) take their names from here."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from pathlib import Path

from sakd.errors import SakdError, WriteError

CONFIG = "config.yaml"  # the resolved config
METRICS = "metrics.jsonl"  # one record per epoch
TENSORBOARD = "tensorboard"  # the same numbers as TensorBoard scalars
LAST = "last.pt"  # the latest checkpoint (every epoch end, and every run.checkpoint_every)
BEST = "best.pt"  # the best epoch's checkpoint (validation top-1 if held out, else test top-1)
ANALYSIS = "analysis.json"  # `sakd analyze` / `compare --analyze` / `report`: counts and energy of last.pt
SEARCH = "search.jsonl"  # `sakd nas search` results, beside the supernet's checkpoint
LOCK = ".lock"  # held by the process that trains in the folder (its pid and host inside)


class RunBusyError(SakdError):
    """Another process is training in the run folder."""


class FolderLock:
    """One process at a time trains in a run folder: an exclusive ``flock`` on ``folder/.lock``,
    with the holder's pid and host written in it. The OS releases it when the process ends, however
    it ends (kill -9 too), so a stale file never blocks; a second process gets one line naming the
    holder. The process that holds it may open the folder again (a notebook, a test). Loader
    workers forked while it is held share it, so after a kill -9 it lasts until they notice their
    parent is gone (seconds)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        self.fd: int | None = None

    def acquire(self) -> "FolderLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteError(f"cannot write the run's lock {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").split()
            os.close(fd)
            if holder[:2] == [str(os.getpid()), socket.gethostname()]:
                return self  # this very process holds it
            who = f"process {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise RunBusyError(f"{self.path.parent} is in use by {who} (training in it); one process at a time per "
                               "run folder: wait for it to end, or stop it") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise WriteError(f"cannot write the run's lock {self.path}: {exc.strerror or exc}") from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def discard_unstarted(folder: Path) -> bool:
    """Remove a run folder that holds no checkpoint (only what a run writes as it starts: its
    config, an empty metrics file, logger files); True if removed."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / LAST).exists() or (folder / BEST).exists():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()


def new_run_folder(base: str | Path, name: str) -> Path:
    """A new folder ``base/name`` (``name-2``, ``name-3``, ... if taken: never an earlier run's)."""
    base = Path(base).expanduser()
    path, i = base / name, 1
    while path.exists():
        i += 1
        path = base / f"{name}-{i}"
    path.mkdir(parents=True)
    return path


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's latest checkpoint."""
    path = Path(path).expanduser()
    return path / LAST if path.is_dir() else path
