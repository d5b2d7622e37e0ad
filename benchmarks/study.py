"""Resumable studies: many training runs ("cells") recorded in one JSON file as each finishes.

A cell already in the file, recorded under the same settings, is not trained again, so an
interrupted study resumes where it stopped; other settings start afresh.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from sakd.errors import TrainingDivergedError
from sakd.training import train

# what a cell records of a run
KEPT = (
    "run_dir",
    "best_top1",
    "final_top1",
    "selected_top1",
    "firing_rate",
    "wall_time_s",
)


class Study:
    def __init__(self, out: Path, settings: dict):
        self.out, self.start = Path(out), time.perf_counter()
        done = json.loads(self.out.read_text()) if self.out.is_file() else {}
        self.result = {"settings": settings, "cells": done.get("cells", {}) if done.get("settings") == settings else {}}

    @property
    def cells(self) -> dict:
        return self.result["cells"]

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.0f}s] {msg}", file=sys.stderr, flush=True)

    def run(self, key: str, config) -> dict:
        """The cell ``key``: trained from ``config`` unless the file already holds it. A run whose
        loss diverges is recorded as such (``{"diverged": reason}``), as the paper's "unstable"."""
        if key not in self.cells:
            self.log(key)
            try:
                summary = train(config)
                self.cells[key] = {k: summary.get(k) for k in KEPT}
            except TrainingDivergedError as exc:
                self.cells[key] = {"diverged": str(exc).split(";")[0]}
            self.save()
        return self.cells[key]

    def save(self, **extra) -> None:
        self.result.update(extra)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.result, indent=1))


def mean_std(values: list[float | None]) -> dict:
    """Mean, sample standard deviation (0 for one value) and the values; ``None`` values (diverged
    runs) are counted in ``diverged`` and left out of the mean (which is None if all diverged)."""
    kept = [v for v in values if v is not None]
    return {"mean": statistics.mean(kept) if kept else None, "std": statistics.stdev(kept) if len(kept) > 1 else 0.0,
            "values": values, "diverged": len(values) - len(kept)}


def pm(stat: dict, digits: int = 2) -> str:
    """``mean ± std`` of :func:`mean_std`'s result, with the diverged runs."""
    if stat["mean"] is None:
        return f"diverged ({stat['diverged']}/{len(stat['values'])})"
    text = f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return text + (f" ({stat['diverged']}/{len(stat['values'])} diverged)" if stat["diverged"] else "")
