"""``sakd compare RUN_DIR...``: runs side by side, in the shape of the paper's tables."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from sakd import runs
from sakd.errors import ConfigError, SakdError
from sakd.tables import print_table
from sakd.training.run_folder import MODES, RunFolder


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


def same_images(rows: list[dict], mixed: bool) -> None:
    """Energy figures counted on different numbers of test images do not rank: refused unless ``mixed``."""
    counts = {Path(r["run"]).name: r["analysis_images"] for r in rows if r.get("analysis_images") is not None}
    if len(set(counts.values())) > 1 and not mixed:
        listed = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise ConfigError(f"the runs' SOPs and energy were counted on different numbers of test images ({listed}), "
                          "so they do not rank; count them all on N with --analyze --images N (N no larger than the "
                          "smallest test split), or show them as they are with --mixed-images")


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
            device: str = "auto", mixed_images: bool = False) -> list[dict]:
    """Print the runs' table and return its rows. Paths that are not run folders are skipped with a
    line. With ``analyze``, every run with a checkpoint is analysed on the first ``images`` test
    images (a current ``analysis.json`` of that count is reused). Energy figures counted on
    different numbers of images are refused unless ``mixed_images``."""
    console = console or Console()
    run_dirs = usable_runs(run_dirs, console)  # before any work
    if analyze:
        from sakd.analysis.analyze import analyze_run

        for r in run_dirs:
            if runs.checkpoint_path(r).is_file():
                analyze_run(r, images, device)
    rows = [run_row(r) for r in run_dirs]
    same_images(rows, mixed_images)
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
    print_table(console, headers, cells, title=title, left={"run", "data", "model", "mode"}, key="run")
    counts = {r["analysis_images"] for r in rows if r.get("analysis_images") is not None}
    if counts:
        console.print(f"SOPs and energy per image, counted on {' / '.join(map(str, sorted(counts)))} test images"
                      + (" (different counts, shown as asked: --mixed-images)" if len(counts) > 1 else ""))
    if any(r["energy_uj"] is None for r in rows):
        console.print("SOPs and energy (45 nm: E_MAC 4.6 pJ, E_AC 0.9 pJ; see `sakd analyze`) of the last checkpoint: "
                      "run with --analyze to fill the columns marked -")
    return rows
