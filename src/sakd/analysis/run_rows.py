"""A run folder as a row of a table: what ``sakd compare`` and ``sakd report`` show of each run,
and which of the paths they are given are runs."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from sakd import runs
from sakd.analysis.analyze import cache_key
from sakd.errors import ConfigError, SakdError
from sakd.training.run_folder import RunFolder


def usable_runs(paths: list[str], console: Console, checkpoint: bool = False) -> list[str]:
    """The run folders among ``paths`` (``DIR/*`` from a shell holds failed runs and other files):
    each other path skipped with one line saying why; with ``checkpoint``, a run without
    ``last.pt`` too (one that stopped before its first). None left is an error naming them."""
    kept, why = [], []
    for path in paths:
        try:
            RunFolder(path)
        except SakdError as exc:
            why.append(str(exc))
            continue
        if checkpoint and not runs.checkpoint_path(path).is_file():
            why.append(f"{path} has no {runs.LAST} (the run stopped before its first checkpoint)")
            continue
        kept.append(path)
    if not kept:
        raise ConfigError("no run to show: " + "; ".join(why))
    for reason in why:
        console.print(f"skipped: {reason}", highlight=False, soft_wrap=True)
    return kept


def run_row(run_dir: str | Path) -> dict:
    """A run's record (:meth:`RunFolder.summary`) with its energy columns."""
    folder = RunFolder(run_dir)
    return {**folder.summary(), **energy_columns(folder.path)}


def energy_columns(run: Path) -> dict:
    """SOPs, energy and the SNN/ANN energy ratio per image from the run's ``analysis.json``, if it
    was made from the run's current last checkpoint (``sakd analyze RUN``, ``compare --analyze``)."""
    path, empty = run / runs.ANALYSIS, {"sops": None, "energy_uj": None, "energy_ratio": None, "analysis_images": None}
    if not path.is_file():
        return empty
    result = json.loads(path.read_text())
    key, now = result.get("cache_key") or {}, cache_key(run, None) or {}
    if any(key.get(k) != now.get(k) for k in ("checkpoint_bytes", "checkpoint_mtime_ns", "counting")):
        return empty  # made from an earlier checkpoint
    t = result["total"]
    if not result.get("spiking", True):
        return {**empty, "energy_uj": t["ann_energy_pj"] / 1e6}
    return {"sops": t["snn_acs"], "energy_uj": t["snn_energy_pj"] / 1e6, "energy_ratio": t["energy_ratio"],
            "analysis_images": result["images"]}
