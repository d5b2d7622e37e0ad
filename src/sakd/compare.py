"""``sakd compare RUN_DIR...``: runs side by side, in the shape of the paper's tables."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from sakd.errors import SakdError


def summarise_run(run_dir: str | Path) -> dict:
    run = Path(run_dir).expanduser()
    metrics, config = run / "metrics.jsonl", run / "config.yaml"
    if not metrics.is_file() or not config.is_file():
        raise SakdError(f"{run} is not a sakd run folder (no metrics.jsonl / config.yaml)")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    cfg = yaml.safe_load(config.read_text())
    model, distill = cfg["model"], cfg["distill"]
    mode = "ANN" if not model["spiking"] else ("SAKD-SNN" if distill["teacher"]["weights"] else "SNN")
    best = max(records, key=lambda r: r["test/top1"]) if records else {}
    last = records[-1] if records else {}
    return {
        "run": str(run), "model": model["name"], "data": cfg["data"]["name"], "mode": mode,
        "timesteps": model["timesteps"] if model["spiking"] else None,
        "epochs": last.get("epoch", 0), "planned_epochs": cfg["optim"]["epochs"],
        "best_top1": best.get("test/top1"), "final_top1": last.get("test/top1"),
        "final_top5": last.get("test/top5"), "firing_rate": last.get("test/firing_rate"),
    }


def compare(run_dirs: list[str], console: Console | None = None) -> list[dict]:
    rows = [summarise_run(r) for r in run_dirs]
    table = Table(title="runs")
    for col in ("run", "data", "model", "mode", "T", "epochs", "best top-1", "final top-1", "top-5", "rate"):
        table.add_column(col, justify="left" if col in ("run", "data", "model", "mode") else "right")

    def fmt(v, spec=".2f"):
        return "-" if v is None else format(v, spec)

    for r in rows:
        table.add_row(Path(r["run"]).name, r["data"], r["model"], r["mode"], fmt(r["timesteps"], "d"),
                      f"{r['epochs']}/{r['planned_epochs']}", fmt(r["best_top1"]), fmt(r["final_top1"]),
                      fmt(r["final_top5"]), fmt(r["firing_rate"], ".3f"))
    (console or Console()).print(table)
    return rows
