"""``sakd quickstart``: teacher, SNN baseline and SAKD student on the embedded digits, side by side."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sakd import runs
from sakd.training.config import load_config
from sakd.training.trainer import train


def quickstart(output_dir: str = "runs/quickstart", epochs: int | None = None, overrides: list[str] | None = None,
               console: Console | None = None) -> dict:
    """Train the three runs and return their summaries (``teacher``, ``snn``, ``sakd``)."""
    console = console or Console()
    root = Path(output_dir) / datetime.now().strftime("%Y%m%d-%H%M%S")
    common = [f"run.output_dir={root}"] + ([f"optim.epochs={epochs}"] if epochs else []) + list(overrides or [])
    start = time.perf_counter()
    results = {}
    for name, label, extra in (
        ("teacher", "ANN teacher", []),
        ("snn", "SNN baseline (surrogate gradient)", []),
        ("sakd", "SNN student (SAKD)", None),
    ):
        if extra is None:
            extra = [f"distill.teacher.weights={Path(results['teacher']['run_dir']) / runs.BEST}"]
        console.rule(f"[bold]{label}")
        results[name] = train(load_config(f"quickstart/{name}", common + extra), console=console)
    wall = time.perf_counter() - start
    print_table(results, wall, console)
    return {**results, "wall_time_s": wall, "output_dir": str(root)}


def print_table(results: dict, wall: float, console: Console) -> None:
    table = Table(title="sakd quickstart: digits, resnet_tiny, T=4; test accuracy (%) of the last and the best epoch")
    for col in ("model", "top-1 last", "top-1 best", "top-5 last", "firing rate", "time (s)"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    labels = {"teacher": "ANN teacher", "snn": "SNN baseline", "sakd": "SNN + SAKD"}
    for key, label in labels.items():
        r = results[key]
        rate = f"{r['firing_rate']:.3f}" if r["firing_rate"] is not None else "-"
        table.add_row(label, f"{r['final_top1']:.2f}", f"{r['best_top1']:.2f}", f"{r['final_top5']:.2f}", rate,
                      f"{r['wall_time_s']:.1f}")
    console.print(table)
    console.print("runs: " + ", ".join(results[k]["run_dir"] for k in labels))
    gain = results["sakd"]["final_top1"] - results["snn"]["final_top1"]
    gap = results["teacher"]["final_top1"] - results["sakd"]["final_top1"]
    console.print(
        f"SAKD gain over the SNN baseline: [bold]{gain:+.2f}[/bold] points final top-1; "
        f"gap to the ANN teacher: {gap:.2f} points; student firing rate "
        f"{results['sakd']['firing_rate']:.3f}; wall time {wall:.1f} s"
    )
    root = Path(results["sakd"]["run_dir"]).parent
    console.print(f"look inside: sakd report {root}/* -o report.html   (energy, curves, Figure 4; "
                  'Figure 4 needs pip install "sakd[vis]")', markup=False)  # [vis] is not a style
