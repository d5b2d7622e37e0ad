"""``sakd compare RUN_DIR...``: runs side by side, in the shape of the paper's tables."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from rich.console import Console

from sakd import runs
from sakd.plugins import load_recorded
from sakd.tables import print_table
from sakd.errors import SakdError


def history_summary(records: list[dict]) -> dict:
    """Best and final test top-1 of a run's epoch records and, when the run held out a validation
    split, the test top-1 of the epoch that validation selects (model selection without the test set)."""
    if not records:
        return {"best_top1": None, "best_epoch": None, "final_top1": None, "final_epoch": None}
    best, last = max(records, key=lambda r: r["test/top1"]), records[-1]
    out = {"best_top1": best["test/top1"], "best_epoch": best["epoch"],
           "final_top1": last["test/top1"], "final_epoch": last["epoch"]}
    if "val/top1" in last:
        chosen = max(records, key=lambda r: r["val/top1"])
        out.update(selected_top1=chosen["test/top1"], selected_epoch=chosen["epoch"])
    return out


def summarise_run(run_dir: str | Path) -> dict:
    run = Path(run_dir).expanduser()
    metrics, config = run / runs.METRICS, run / runs.CONFIG
    if not metrics.is_file() or not config.is_file():
        raise SakdError(f"{run} is not a sakd run folder (no metrics.jsonl / config.yaml)")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    cfg = yaml.safe_load(config.read_text())
    load_recorded(cfg, str(config))
    model, distill = cfg["model"], cfg["distill"]
    mode = "ANN" if not model["spiking"] else ("SAKD-SNN" if distill["teacher"]["weights"] else "SNN")
    last = records[-1] if records else {}
    return {
        "run": str(run), "model": model["name"], "data": cfg["data"]["name"], "mode": mode,
        "timesteps": model["timesteps"] if model["spiking"] else None,
        "epochs": last.get("epoch", 0), "planned_epochs": cfg["optim"]["epochs"],
        **history_summary(records),
        "final_top5": last.get("test/top5"), "firing_rate": last.get("test/firing_rate"),
        **energy_columns(run),
    }


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
    rows = [summarise_run(r) for r in run_dirs]  # a folder that is not a run fails before any work
    if analyze and any(r["energy_uj"] is None for r in rows):
        from sakd.analysis.analyze import analyze_run

        for r in rows:
            if r["energy_uj"] is None:
                analyze_run(r["run"], images, device)
        rows = [summarise_run(r) for r in run_dirs]
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
        row = [Path(r["run"]).name, r["data"], r["model"], r["mode"], fmt(r["timesteps"], "d"),
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
