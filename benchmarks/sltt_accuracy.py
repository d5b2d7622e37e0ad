"""What SLTT's gradient approximation costs in accuracy (``run.bptt=sltt`` against full BPTT),
for the SNN alone and with SAKD, on real images at CPU scale, seed by seed.

For each network: its ANN (seed 0's validation-selected ``best.pt`` teaches), then the SNN trained
alone and with SAKD (α=1, β=10, γ=1, τ=4, features after the spike at every stage end: the
quickstart's settings, which keep the cross-entropy), each with full BPTT and with SLTT. The same
optimiser, epochs, data and seeds for all; the last epoch's test top-1 is compared (mean ± std,
and SLTT - full seed by seed with its standard error; a difference counts where every seed
agrees and the mean exceeds its standard error). Training time per run is recorded beside it.

    python benchmarks/sltt_accuracy.py               # Fashion-MNIST (Debian's package), sakd's resnet_tiny
    python benchmarks/sltt_accuracy.py --quick       # 1 seed, 1 epoch, tiny subsets

Writes ``benchmarks/results/sltt-<data>.json`` (resumable) and a Markdown table beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from any_network import _vs, finish, open_study, study_arguments, train_cells  # noqa: E402
from claims import paired, stats  # noqa: E402
from study import mean_std, pm  # noqa: E402

SAKD = ["distill.alpha=1", "distill.beta=10", "distill.gamma=1", "distill.tau=4"]
MODES = {
    "ann": [],
    "snn_full": [],
    "snn_sltt": ["run.bptt=sltt"],
    "sakd_full": SAKD,
    "sakd_sltt": [*SAKD, "run.bptt=sltt"],
}


def markdown(rows: dict, settings: dict) -> str:
    lines = [
        f"Data: {settings['data']} ({settings['train_subset'] or 'all'} training images, "
        f"{settings['test_subset'] or 'all'} test, {settings['image_size'] or 'native'} px), T=4, "
        f"{settings['epochs']} epochs, {settings['seeds']} seeds; last-epoch test top-1 (%), mean ± std; "
        "training time per run (s). SAKD: α=1, β=10, γ=1, τ=4.",
        "",
        "| network | ANN | SNN full | SNN SLTT | SLTT - full (± s.e.) | SAKD full | SAKD SLTT | SLTT - full (± s.e.) "
        "| time full / SLTT (SNN) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, r in rows.items():
        t = r["time_s"]
        lines.append(
            f"| {model} | {pm(r['ann']['last'])} | {pm(r['snn_full']['last'])} | {pm(r['snn_sltt']['last'])} | "
            f"{_vs(r['snn_sltt_vs_full'])} | {pm(r['sakd_full']['last'])} | {pm(r['sakd_sltt']['last'])} | "
            f"{_vs(r['sakd_sltt_vs_full'])} | {t['snn_full']['mean']:.1f} / {t['snn_sltt']['mean']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = study_arguments(__doc__, ["resnet_tiny"], "runs/sltt", "sltt").parse_args(argv)
    study, settings = open_study(args)
    rows = {}
    for model in args.models:
        cells = train_cells(study, args, model, MODES)
        rows[model] = {mode: stats(c) for mode, c in cells.items()}
        rows[model]["time_s"] = {mode: mean_std([c.get("wall_time_s") for c in cs]) for mode, cs in cells.items()}
        for kind in ("snn", "sakd"):
            rows[model][f"{kind}_sltt_vs_full"] = paired(rows[model][f"{kind}_sltt"], rows[model][f"{kind}_full"])
    return finish(study, rows, markdown(rows, settings))


if __name__ == "__main__":
    main()
