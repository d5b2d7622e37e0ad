"""Stopping and going on: the signals that ask a run to stop, and when it writes a checkpoint.

SIGTERM or SIGUSR1 (what SLURM and Kubernetes send before a kill) and a first Ctrl-C ask for a
stop after the current optimiser step, with a checkpoint (exit status 75; 130 for Ctrl-C); a
second Ctrl-C stops at once. Inside an epoch ``run.checkpoint_every`` writes ``last.pt`` every N
steps or minutes. The :class:`~sakd.training.trainer.Trainer` asks these two what to do; every
process of a distributed run takes the same decision at the same step (the trainer agrees on them
by an all-reduce).
"""

from __future__ import annotations

import signal
import time

from rich.console import Console

from sakd.errors import Preempted
from sakd.training.config import parse_interval


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

    def __enter__(self) -> "StopSignals":
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
