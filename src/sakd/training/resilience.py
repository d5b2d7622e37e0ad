"""Stopping and going on: the signals that ask a run to stop, and when it writes a checkpoint.

SIGTERM or SIGUSR1 (what SLURM and Kubernetes send before a kill) and a first Ctrl-C ask for a
stop after the current optimiser step, with a checkpoint (exit status 75; 130 for Ctrl-C); a
second Ctrl-C stops at once. Inside an epoch ``run.checkpoint_every`` writes ``last.pt`` every N
steps or minutes. The :class:`CheckpointKeeper` of a run asks these two what to do and writes
``last.pt`` and ``best.pt``; every process of a distributed run takes the same decision at the
same step (the keeper agrees on them by an all-reduce).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import torch
from rich.console import Console

from sakd import runs
from sakd.errors import Preempted
from sakd.models.checkpoint import atomic_save
from sakd.training.config import parse_interval
from sakd.training.distributed import DistContext, all_reduce_sum, barrier


def place_of(epoch: int, step: int) -> str:
    """Where a run stands: ``epoch E, step S`` inside an epoch (E counted from 1), else the
    number of finished epochs."""
    return f"epoch {epoch + 1}, step {step}" if step else f"epoch {epoch}"


class StopSignals:
    """While active (a context manager, main thread only), the stop signals are caught and
    remembered in :attr:`received`."""

    NAMES = ("SIGTERM", "SIGUSR1", "SIGINT")

    def __init__(self, console: Console):
        self.console = console
        self.received: str | None = None
        self._previous: dict = {}

    def request(self, name: str) -> None:
        """Ask for a stop as the signal ``name`` would (the first one asked for is kept)."""
        self.received = self.received or name

    def __enter__(self) -> StopSignals:
        names = [n for n in self.NAMES if hasattr(signal, n)]
        try:
            self._previous = {n: signal.signal(getattr(signal, n), self._on_signal) for n in names}
        except ValueError:  # not the main thread: signals stay with whoever owns them
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for n, handler in self._previous.items():
            signal.signal(getattr(signal, n), handler)
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT":
            if self.received is not None:  # a stop was already asked for: now at once
                raise KeyboardInterrupt
            self.console.print("[yellow]Ctrl-C: finishing this step, then writing last.pt "
                               "(Ctrl-C again to stop at once)", highlight=False)
        self.request(name)

    def stop(self, run_dir, at: str, where: str) -> Preempted:
        """The error that ends a run stopped at ``at`` (``where``: :func:`place_of`), its
        checkpoint written."""
        sigint = self.received == "SIGINT"
        by = "Ctrl-C (SIGINT)" if sigint else self.received or "a signal to another process"
        stop = Preempted(f"{'stopped' if sigint else 'preempted'} by {by} at {at} ({where}); "
                         f"{run_dir}/last.pt holds the run; resume with: sakd train --resume {run_dir}")
        if sigint:
            stop.exit_code = 130  # interrupted by the user, as a shell reports Ctrl-C
        return stop


class CheckpointPolicy:
    """When a checkpoint is due inside an epoch: every N optimiser steps, or once N minutes have
    passed since the last write (``run.checkpoint_every``: ``500``, ``500steps``, ``30min``)."""

    def __init__(self, every: str | int | None):
        self.every = parse_interval(every)  # (unit, amount) or None
        self.last_write = time.monotonic()

    def due(self, step: int) -> bool:
        return self.every is not None and self.every[0] == "steps" and step % int(self.every[1]) == 0

    def late(self) -> bool:
        return (self.every is not None and self.every[0] == "min"
                and time.monotonic() - self.last_write >= self.every[1] * 60.0)

    def written(self) -> None:
        self.last_write = time.monotonic()


class CheckpointKeeper:
    """A run's ``last.pt`` and ``best.pt``: writes them (rank 0), says when a mid-epoch one is due,
    catches the stop signals (:attr:`signals`, a context manager around training) and makes every
    process of a distributed run agree on both, and says what ``last.pt`` holds when a run stops.

    ``resumed_at``: the (epoch, step) of the checkpoint a resumed run started from."""

    def __init__(self, run_dir: Path, every: str | int | None, console: Console, dist: DistContext,
                 device: torch.device, log_interval: int, resumed_at: tuple[int, int] | None = None):
        self.run_dir, self.dist, self.device, self.log_interval = run_dir, dist, device, log_interval
        self.policy = CheckpointPolicy(every)
        self.signals = StopSignals(console)
        self.saved_at = resumed_at  # (epoch, step) of this process's last last.pt, or the one resumed from

    def save(self, name: str, state: dict) -> None:
        if self.dist.is_main:
            atomic_save(state, self.run_dir / name)
        if name == runs.LAST:
            self.saved_at = (state["epoch"], state["step"])
        self.policy.written()

    def end_of_epoch(self, state: dict, improved: bool) -> None:
        """``last.pt`` at an epoch's end, and ``best.pt`` if the epoch improved the selection metric."""
        self.save(runs.LAST, state)
        if improved:
            self.save(runs.BEST, state)
        barrier(self.dist)

    def mid_epoch(self, step: int, steps: int) -> tuple[bool, bool]:
        """After optimiser step ``step`` of ``steps``: (write ``last.pt`` now, then stop). Every
        process decides the same at the same step: a count of steps is the same everywhere; a
        signal or a time limit is agreed on by an all-reduce, which under torchrun happens every
        ``run.log_interval`` steps (where the trainer syncs anyway), not every step. The epoch's
        last step writes the epoch's own checkpoint instead."""
        if step == steps:
            return False, False
        due, late = self.policy.due(step), self.policy.late()
        stop = self.signals.received is not None
        if self.dist.enabled:
            if step % self.log_interval:
                stop = late = False
            else:
                flags = torch.tensor([float(stop), float(late)], dtype=torch.float64, device=self.device)
                stop, late = (all_reduce_sum(flags, self.dist) > 0).tolist()
        return stop or due or late, stop

    def stop_requested(self) -> bool:
        """Whether any process got a stop signal (every process agrees, so all stop together)."""
        flag = torch.tensor(float(self.signals.received is not None), dtype=torch.float64, device=self.device)
        return bool(all_reduce_sum(flag, self.dist).item() > 0)

    def stopped(self, at: str, epoch: int, step: int) -> Preempted:
        """The error that ends a run stopped at ``at`` after its checkpoint."""
        return self.signals.stop(self.run_dir, at, place_of(epoch, step))

    def kept(self, made_folder: bool, epoch: int) -> str:
        """What ``last.pt`` holds now, and how to go on from it."""
        last = self.run_dir / runs.LAST
        if not last.is_file():
            again = ("run the same sakd train command again to start it afresh" if made_folder
                     else f"it resumed from {self.run_dir} and wrote nothing since")
            return f"no checkpoint was written yet ({last} does not exist): {again}"
        where = place_of(*(self.saved_at or (epoch, 0)))  # the last write, or the state resumed from
        return f"{last} holds the run at the end of {where}; continue with: sakd train --resume {self.run_dir}"
