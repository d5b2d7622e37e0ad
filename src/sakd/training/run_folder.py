"""A training run's folder and its checkpoints, read through one typed owner.

Every reader of a run (``sakd eval``, ``analyze``, ``visualize``, ``report``, ``compare``,
``export``, the NAS search, ``--resume``) goes through :class:`RunFolder` or :class:`Checkpoint`:
the config is parsed once into a :class:`~sakd.training.config.Config` (its plug-ins imported
first), a run's mode has one vocabulary (:data:`MODES`), and checkpoints of earlier versions load
(``sakd.models.checkpoint`` reads their header and model record). The file names are
:mod:`sakd.runs`'. A run folder is made by :func:`new_run_folder`, held by one process at a time
(:class:`FolderLock`) and taken away if its run ends before its first checkpoint
(:func:`discard_unstarted`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from torch import nn

from sakd import runs
from sakd.errors import CheckpointError, SakdError, WriteError
from sakd.models import checkpoint as ckpt_io
from sakd.models.registry import ModelSpec
from sakd.training.config import Config, load_yaml, recorded_config

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
        self.path = Path(folder) / runs.LOCK
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
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
    if not folder.is_dir() or (folder / runs.LAST).exists() or (folder / runs.BEST).exists():
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


# a run's mode (Config.mode) and how tables label it
MODES = {"ann": "ANN", "snn": "SNN", "sakd": "SAKD-SNN"}


def history_summary(records: list[dict]) -> dict:
    """Best and final test top-1 of a run's epoch records and, when the run held out a validation
    split, the test top-1 of the epoch that validation selects (model selection without the test set)."""
    if not records:
        return {"best_top1": None, "best_epoch": None, "final_top1": None, "final_epoch": None}
    best, last = max(records, key=lambda r: r["test/top1"]), records[-1]
    out = {"best_top1": best["test/top1"], "best_epoch": best["epoch"],
           "final_top1": last["test/top1"], "final_epoch": last["epoch"]}
    if "val/top1" in last:
        chosen = max(records, key=lambda r: r["val/top1"])
        out.update(selected_top1=chosen["test/top1"], selected_epoch=chosen["epoch"])
    return out


@dataclass
class Checkpoint:
    """A loaded checkpoint: where it is, its model's spec, its run's config (``data.*``-style
    overrides applied), and the rest as saved (``state``: the weights under ``"model"``, the
    optimiser, the epoch and step, the metric history ...)."""

    path: str
    spec: ModelSpec
    config: Config
    state: dict = field(repr=False)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None, training: bool = False) -> Checkpoint:
        """A checkpoint file, or a run folder's ``last.pt``; its config as
        :func:`~sakd.training.config.recorded_config` reads it (``training``: to resume it)."""
        state = ckpt_io.load_checkpoint(path)
        if not state.get("config"):
            raise CheckpointError(f"{state['path']} records no config: it was not written by a sakd run")
        config = recorded_config(state["config"], state["path"], overrides, training)
        return cls(state["path"], state["spec"], config, state)

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def epoch(self) -> int:
        return self.state["epoch"]

    @property
    def history(self) -> list[dict]:
        return list(self.state.get("history", []))

    def model(self) -> nn.Module:
        """The model it holds, with its weights."""
        model, _ = ckpt_io.model_from_checkpoint(self.state)
        return model


class RunFolder:
    """A run folder: ``config.yaml``, ``metrics.jsonl``, ``last.pt`` and ``best.pt``."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if not (self.path / runs.CONFIG).is_file() or not (self.path / runs.METRICS).is_file():
            raise SakdError(f"{self.path} is not a sakd run folder (no metrics.jsonl / config.yaml)")

    @cached_property
    def config(self) -> Config:
        return recorded_config(load_yaml(self.path / runs.CONFIG), str(self.path / runs.CONFIG))

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def plugins(self) -> list[str]:
        return list(self.config.run.plugins)

    @property
    def history(self) -> list[dict]:
        lines = (self.path / runs.METRICS).read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def checkpoint(self, which: str = runs.LAST) -> Checkpoint:
        return Checkpoint.load(self.path / which)

    def summary(self) -> dict:
        """The run in one record: what it trained, its best, final (and validation-selected) test
        top-1, its last top-5 and firing rate."""
        cfg, records = self.config, self.history
        last = records[-1] if records else {}
        return {
            "run": str(self.path), "model": cfg.model.name, "data": cfg.data.name, "mode": cfg.mode,
            "timesteps": cfg.model.timesteps if cfg.model.spiking else None,
            "epochs": last.get("epoch", 0), "planned_epochs": cfg.optim.epochs,
            **history_summary(records),
            "final_top5": last.get("test/top5"), "firing_rate": last.get("test/firing_rate"),
        }
