"""``sakd compare RUN_DIR...``: runs side by side, in the shape of the paper's tables."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from sakd import runs
from sakd.errors import ConfigError
from sakd.tables import print_table
from sakd.analysis.run_rows import run_row, usable_runs
from sakd.training.run_folder import MODES


def same_images(rows: list[dict], mixed: bool) -> None:
    """Energy figures counted on different numbers of test images do not rank: refused unless ``mixed``."""
    counts = {Path(r["run"]).name: r["analysis_images"] for r in rows if r.get("analysis_images") is not None}
    if len(set(counts.values())) > 1 and not mixed:
        listed = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise ConfigError(f"the runs' SOPs and energy were counted on different numbers of test images ({listed}), "
                          "so they do not rank; count them all on N with --analyze --images N (N no larger than the "
                          "smallest test split), or show them as they are with --mixed-images")


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
