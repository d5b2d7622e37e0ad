"""The run folder's layout, defined once: every file a training run writes and every reader of it
(``sakd eval``, ``compare``, resume, teachers, the NAS search) take their names from here. Making,
locking and reading a run folder is :mod:`sakd.training.run_folder`'s."""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"  # the resolved config
METRICS = "metrics.jsonl"  # one record per epoch
TENSORBOARD = "tensorboard"  # the same numbers as TensorBoard scalars
LAST = "last.pt"  # the latest checkpoint (every epoch end, and every run.checkpoint_every)
BEST = "best.pt"  # the best epoch's checkpoint (validation top-1 if held out, else test top-1)
ANALYSIS = "analysis.json"  # `sakd analyze` / `compare --analyze` / `report`: counts and energy of last.pt
SEARCH = "search.jsonl"  # `sakd nas search` results, beside the supernet's checkpoint
LOCK = ".lock"  # held by the process that trains in the folder (its pid and host inside)


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's latest checkpoint."""
    path = Path(path).expanduser()
    return path / LAST if path.is_dir() else path
