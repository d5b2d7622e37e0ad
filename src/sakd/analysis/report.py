"""``sakd report RUN_DIR...``: one self-contained HTML file per set of runs.

It holds, with nothing loaded from the network (plots are inline SVG, Figure 4 an inline PNG, the
style sheet is in the page, no scripts): a summary table (best and last top-1, top-5, firing rate,
SOPs, energy and the SNN/ANN energy ratio), the test top-1 of all runs on one plot, and per run its
training curves (the total loss and each loss term, train/test/validation top-1, learning rate, scheduled loss weights),
per-layer firing rates and the energy table of ``sakd analyze``, and its config. Figure 4 of the
paper (:mod:`sakd.analysis.figure4`) is added when a teacher and a baseline are given, or found
among the runs (one ANN, one SNN without KD, one SAKD student of one architecture).
"""

from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from datetime import datetime
from pathlib import Path

from sakd import runs
from sakd.analysis.energy_models.registry import COMPONENTS
from sakd.analysis.run_rows import run_row, usable_runs
from sakd.training.run_folder import MODES
from sakd.version import __version__
from sakd.errors import ConfigError
from sakd.outputs import write_text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1d1d1f; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f6; } td.name, th.name { text-align: left; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .8em; }
.plot svg { max-width: 100%; height: auto; } .note { color: #555; font-size: .85em; }
img.figure { max-width: 100%; }
"""


def _svg(fig) -> str:
    """A matplotlib figure as inline SVG markup (text drawn as paths: no fonts needed to view it)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "path"
    return plt


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / runs.METRICS).read_text().splitlines() if line.strip()]


def curves_svg(records: list[dict], title: str) -> str:
    """The training curves of one run: losses (total and each term), top-1, learning rate, the
    weights of the terms whose weight changes."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in records]
    keys = sorted({k for r in records for k in r})
    losses = [k for k in keys if k.startswith("train/") and k != "train/top1"] + [
        k for k in ("test/loss", "val/loss") if k in keys
    ]
    top1 = [k for k in ("train/top1", "val/top1", "test/top1") if k in keys]
    weights = [k for k in keys if k.startswith("weight/") and len({r.get(k) for r in records}) > 1]  # scheduled ones
    weights += ["beta"] if "beta" in keys else []  # runs recorded before every term had a schedule
    panels = [("loss terms", losses, True), ("top-1 (%)", top1, False)] + [("lr", ["lr"], False)] * ("lr" in keys)
    panels += [("loss weights", weights, False)] * bool(weights)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.9), squeeze=False)
    for ax, (name, ks, log) in zip(axes[0], panels):
        for k in ks:
            pts = [(e, r[k]) for e, r in zip(epochs, records) if r.get(k) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=k)
        if log and all(r.get(k, 1) is None or r.get(k, 1) > 0 for k in ks for r in records):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(ks) > 1:
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _svg(fig)


def overlay_svg(runs_records: dict[str, list[dict]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for name, records in runs_records.items():
        pts = [(r["epoch"], r["test/top1"]) for r in records if r.get("test/top1") is not None]
        if pts:
            ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=name)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("test top-1 (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)


def firing_svg(rates: dict[str, float]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * len(rates) + 1.5), 2.8))
    ax.bar(range(len(rates)), list(rates.values()), color="#4c72b0")
    ax.set_xticks(range(len(rates)))
    ax.set_xticklabels(list(rates), rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("firing rate", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return _svg(fig)


def _table(header: list[str], rows: list[list], names: int = 1, cls: str = "") -> str:
    """An HTML table; the first ``names`` columns are left-aligned names."""
    e = html.escape
    head = "".join(f'<th class="name">{e(h)}</th>' if i < names else f"<th>{e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="name">{e(str(c))}</td>' if i < names else f"<td>{e(str(c))}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def energy_html(analysis: dict) -> str:
    if not analysis.get("spiking", True):
        t = analysis["total"]
        return (f"<p>ANN: {t['ann_macs']:,.0f} MACs per image, {t['ann_energy_pj'] / 1e6:.3f} uJ at E_MAC = "
                f"{analysis['e_mac_pj']} pJ.</p>")
    rows = [
        [
            name,
            r["input"],
            f"{r['input_rate']:.4f}",
            f"{r['snn_acs']:,.0f}",
            f"{r['snn_macs']:,.0f}",
            f"{r['ann_macs']:,.0f}",
            _fmt(r["snn_energy_pj"] / r["ann_energy_pj"] if r["ann_energy_pj"] else None, ".3f"),
        ]
        for name, r in analysis["layers"].items()
    ]
    t = analysis["total"]
    rows.append(["total", "", "", f"{t['snn_acs']:,.0f}", f"{t['snn_macs']:,.0f}", f"{t['ann_macs']:,.0f}",
                 _fmt(t["energy_ratio"], ".3f")])
    return (f"<p>Per image, on the first {analysis['images']} test images (top-1 on them {analysis['top1']:.2f}%): "
            f"SNN {t['snn_energy_pj'] / 1e6:.3f} uJ, ANN twin {t['ann_energy_pj'] / 1e6:.3f} uJ, ratio "
            f"{t['energy_ratio']:.3f}. E_MAC = {analysis['e_mac_pj']} pJ, E_AC = {analysis['e_ac_pj']} pJ (45 nm, "
            "Horowitz 2014). ACs: weight uses driven by spikes (SOPs); MACs: layers whose input is not binary "
            "(the directly encoded image). BatchNorm, neuron updates, residual additions and pooling are not "
            "counted.</p>"
            + _table(["layer", "input", "input rate", "SNN ACs", "SNN MACs", "ANN MACs", "energy SNN/ANN"], rows,
                     cls="energy")
            + memory_html(analysis.get("energy_model")))


def memory_html(memory: dict | None) -> str:
    """The memory-aware figure beside the operations-only one: energy by component, SNN and ANN."""
    if not memory:
        return ""
    e, t = html.escape, memory["total"]
    rows = [[c, *(_fmt(None if c not in t[side]["pj"] else t[side]["pj"][c] / 1e6, ".3f") for side in ("snn", "ann"))]
            for c in COMPONENTS if c in t["snn"]["pj"] or c in t["ann"]["pj"]]
    rows.append(["total", f"{t['snn_energy_pj'] / 1e6:.3f}", f"{t['ann_energy_pj'] / 1e6:.3f}"])
    return (f"<p>Counting memory traffic too (energy model <code>{e(memory['model'])}</code>: "
            f"{e(memory['description'])}), per image: SNN {t['snn_energy_pj'] / 1e6:.3f} uJ, ANN twin "
            f"{t['ann_energy_pj'] / 1e6:.3f} uJ, ratio {_fmt(t['energy_ratio'], '.3f')}. Assumes: "
            f"{e(memory['assumes'])}. Source: {e(memory['source'])}.</p>"
            + _table(["component", "SNN uJ", "ANN uJ"], rows, cls="memory"))


def find_trio(summaries: list[dict]) -> dict | None:
    """Teacher, baseline and student among the runs: exactly one ANN, one SNN and one SAKD-SNN of
    one model on one data set."""
    by_mode = {}
    for s in summaries:
        by_mode.setdefault(s["mode"], []).append(s)
    picked = [by_mode.get(m, []) for m in ("ann", "snn", "sakd")]
    if any(len(p) != 1 for p in picked) or len({(p[0]["model"], p[0]["data"]) for p in picked}) != 1:
        return None
    return dict(zip(("teacher", "baseline", "student"), (p[0]["run"] for p in picked)))


def figure4_html(trio: dict, images: int, device: str) -> str:
    from sakd.analysis.figure4 import ROLES, figure4_data, plot_figure4

    data = figure4_data(trio["teacher"], trio["baseline"], trio["student"], images=images, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        png = plot_figure4(data, Path(tmp) / "figure4")[0]
        encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    sims = data.similarity()
    rows = [[ROLES[role], *[f"{r:+.3f}" for r in sim["features"].values()], f"{sim['cam']:+.3f}"]
            for role, sim in sims.items()]
    sources = "".join(
        f"<li>{html.escape(ROLES[r])}: <code>{html.escape(p)}</code></li>" for r, p in data.checkpoints.items()
    )
    return (f"<p>Rows: ANN, SNN without KD, SNN with SAKD, on the first {len(data.indices)} test images. Columns: the "
            "input, the channel-mean feature map after the activation at each stage (SNN: spikes averaged over "
            "the timesteps), GradCAM of the true class at the last stage (pytorch-grad-cam; for an SNN the "
            "gradient passes the surrogate and the layer's spikes and gradients are averaged over time).</p>"
            f"<ul>{sources}</ul>"
            f'<img class="figure" alt="Figure 4" src="data:image/png;base64,{encoded}">'
            "<p>Pearson correlation of each SNN's maps with the ANN teacher's (mean over the images):</p>"
            + _table(["model", *[f"features {t}" for t in data.taps], "GradCAM"], rows, cls="similarity"))


def build_report(run_dirs: list[str], out: str | Path = "report.html", teacher=None, baseline=None, student=None,
                 images: int | None = 1000, figure_images: int = 4, device: str = "auto") -> Path:
    """Write the report of ``run_dirs`` to ``out`` and return its path. Paths that are not run
    folders, and runs without a checkpoint (failed before their first), are skipped with a line."""
    from rich.console import Console

    run_dirs = usable_runs(run_dirs, Console(stderr=True), checkpoint=True)  # before any work
    summaries = [run_row(r) for r in run_dirs]
    if (teacher is None) != (baseline is None):
        raise ConfigError("Figure 4 needs both --teacher and --baseline (the student is --student or the SAKD run)")
    trio, figure_note = None, ""
    if teacher is not None:
        sakd_runs = [s["run"] for s in summaries if s["mode"] == "sakd"]
        if student is None and len(sakd_runs) != 1:
            raise ConfigError(f"give --student: the runs hold {len(sakd_runs)} SAKD students, Figure 4 shows one")
        trio = {"teacher": teacher, "baseline": baseline, "student": student or sakd_runs[0]}
    else:
        trio = find_trio(summaries)
        if trio is None:
            figure_note = ("Figure 4 is not included: give --teacher and --baseline, or report one ANN, one SNN and "
                           "one SAKD run of one model together.")
        else:
            try:
                import pytorch_grad_cam  # noqa: F401
            except ImportError:
                trio, figure_note = None, 'Figure 4 is not included: it needs grad-cam (pip install "sakd[vis]").'
    figure = figure4_html(trio, figure_images, device) if trio is not None else None  # bad input fails early
    from sakd.analysis.analyze import analyze_run

    analyses = {s["run"]: analyze_run(s["run"], images, device) for s in summaries}
    summaries = [run_row(r) for r in run_dirs]  # now with the energy columns
    records = {s["run"]: read_metrics(Path(s["run"])) for s in summaries}
    names = _short_names([s["run"] for s in summaries])

    e = html.escape
    parts = [f"<h1>sakd report</h1><p class=note>{len(summaries)} run(s); made {datetime.now():%Y-%m-%d %H:%M} by "
             f"sakd {__version__}. Top-1 in %, from metrics.jsonl; SOPs and energy per image from "
             "<code>analysis.json</code> (last checkpoint).</p>"]
    rows = [
        [
            names[s["run"]],
            s["data"],
            s["model"],
            MODES[s["mode"]],
            _fmt(s["timesteps"], "d"),
            f"{s['epochs']}/{s['planned_epochs']}",
            f"{_fmt(s['best_top1'])} (ep. {_fmt(s['best_epoch'], 'd')})",
            f"{_fmt(s['final_top1'])} (ep. {_fmt(s['final_epoch'], 'd')})",
            _fmt(s["final_top5"]),
            _fmt(s["firing_rate"], ".3f"),
            "-" if s["sops"] is None else f"{s['sops'] / 1e6:,.2f} M",
            _fmt(s["energy_uj"], ",.2f"),
            _fmt(s["energy_ratio"], ".3f"),
        ]
        for s in summaries
    ]
    parts.append('<h2 id="summary">Summary</h2>' + _table(
        ["run", "data", "model", "mode", "T", "epochs", "top-1 best", "top-1 last", "top-5 last", "firing rate",
         "SOPs/img", "energy/img (uJ)", "energy vs ANN"], rows, names=4, cls="summary"))
    parts.append(f'<div class="plot" id="overlay">{overlay_svg({names[r]: rec for r, rec in records.items()})}</div>')
    if figure is not None:
        parts.append('<h2 id="figure4">Figure 4: features and GradCAM</h2>' + figure)
    elif figure_note:
        parts.append(f'<p class="note" id="figure4-note">{e(figure_note)}</p>')
    for s in summaries:
        run, name = Path(s["run"]), names[s["run"]]
        analysis = analyses[s["run"]]
        section = [
            f'<h2 id="run-{e(name)}">{e(name)}: {e(s["model"])} {e(MODES[s["mode"]])} on {e(s["data"])}</h2>',
            f"<p class=note><code>{e(str(run))}</code></p>",
            f"<p>Best test top-1 {_fmt(s['best_top1'])}% (epoch {_fmt(s['best_epoch'], 'd')}), last "
            f"{_fmt(s['final_top1'])}% (epoch {_fmt(s['final_epoch'], 'd')})"
            + (
                f", validation selects epoch {s['selected_epoch']}: {s['selected_top1']:.2f}%"
                if "selected_top1" in s
                else ""
            )
            + ".</p>",
            f'<h3>Training curves</h3><div class="plot curves">{curves_svg(records[s["run"]], name)}</div>',
        ]
        if analysis.get("layer_firing_rates"):
            rates = analysis["layer_firing_rates"]
            section.append(
                f"<h3>Firing rates per layer</h3><p>Mean {analysis['firing_rate']:.4f} over all neurons "
                f"and timesteps, on {analysis['images']} test images.</p>"
                f'<div class="plot firing">{firing_svg(rates)}</div>'
                + _table(["layer", "firing rate"], [[k, f"{v:.4f}"] for k, v in rates.items()], cls="firing")
            )
        section.append("<h3>Energy</h3>" + energy_html(analysis))
        section.append(f"<h3>Config</h3><details><summary>{e(runs.CONFIG)}</summary>"
                       f"<pre class=config>{e((run / runs.CONFIG).read_text())}</pre></details>")
        parts.append(f'<section class="run">{"".join(section)}</section>')
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sakd report</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return write_text(out, page, "the report")


def _short_names(paths: list[str]) -> dict[str, str]:
    """Each run's folder name, with its parent's name prefixed where two runs share a name."""
    names = {p: Path(p).name for p in paths}
    if len(set(names.values())) < len(names):
        names = {p: f"{Path(p).parent.name}/{Path(p).name}" for p in paths}
    return names
