"""``sakd compare RUN_DIR...``: runs side by side, in the shape of the paper's tables."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from sakd import runs
from sakd.tables import print_table
from sakd.training.run_folder import MODES, RunFolder


def run_row(run_dir: str | Path) -> dict:
    """A run's record (:meth:`RunFolder.summary`) with its energy columns."""
    folder = RunFolder(run_dir)
    return {**folder.summary(), **energy_columns(folder.path)}


def energy_columns(run: Path) -> dict:
    """SOPs, energy and the SNN/ANN energy ratio per image from the run's ``analysis.json``, if it
    was made from the run's current last checkpoint (``sakd analyze RUN``, ``compare --analyze``)."""
    from sakd.analysis.analyze import cache_key

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


def compare(run_dirs: list[str], console: Console | None = None, analyze: bool = False, images: int | None = 1000,
            device: str = "auto") -> list[dict]:
    """Print the runs' table and return its rows. With ``analyze``, runs without a current
    ``analysis.json`` are analysed first (SNNs on the first ``images`` test images)."""
    rows = [run_row(r) for r in run_dirs]  # a folder that is not a run fails before any work
    if analyze and any(r["energy_uj"] is None for r in rows):
        from sakd.analysis.analyze import analyze_run

        for r in rows:
            if r["energy_uj"] is None:
                analyze_run(r["run"], images, device)
        rows = [run_row(r) for r in run_dirs]
    selected = any("selected_top1" in r for r in rows)
    title = ("test top-1 (%) of the best epoch, of the last"
             + (" and of the epoch the validation split selects (val-sel)" if selected else ""))
    headers = ["run", "data", "model", "mode", "T", "epochs", "top-1 best", "top-1 last"]
    headers += ["top-1 val-sel"] if selected else []
    headers += ["top-5 last", "rate", "SOPs/img", "energy/img", "vs ANN"]

    def fmt(v, spec=".2f"):
        return "-" if v is None else format(v, spec)

    cells = []
    for r in rows:
        row = [Path(r["run"]).name, r["data"], r["model"], MODES[r["mode"]], fmt(r["timesteps"], "d"),
               f"{r['epochs']}/{r['planned_epochs']}", fmt(r["best_top1"]), fmt(r["final_top1"])]
        row += [fmt(r.get("selected_top1"))] if selected else []
        row += [fmt(r["final_top5"]), fmt(r["firing_rate"], ".3f"),
                "-" if r["sops"] is None else f"{r['sops'] / 1e6:,.2f} M",
                "-" if r["energy_uj"] is None else f"{r['energy_uj']:,.2f} uJ", fmt(r["energy_ratio"], ".3f")]
        cells.append(row)
    console = console or Console()
    print_table(console, headers, cells, title=title, left={"run", "data", "model", "mode"}, key="run")
    if any(r["energy_uj"] is None for r in rows):
        console.print("SOPs and energy (45 nm: E_MAC 4.6 pJ, E_AC 0.9 pJ; see `sakd analyze`) of the last checkpoint: "
                      "run with --analyze to fill the columns marked -")
    return rows
