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

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from any_network import _tag, _vs, base  # noqa: E402
from claims import paired, stats  # noqa: E402
from study import Study, mean_std, pm  # noqa: E402
from suite import machine  # noqa: E402

from sakd.training import load_config  # noqa: E402

SAKD = ["distill.alpha=1", "distill.beta=10", "distill.gamma=1", "distill.tau=4"]
MODES = {"ann": [], "snn_full": [], "snn_sltt": ["run.bptt=sltt"], "sakd_full": SAKD, "sakd_sltt": [*SAKD, "run.bptt=sltt"]}


def markdown(rows: dict, settings: dict) -> str:
    lines = [f"Data: {settings['data']} ({settings['train_subset'] or 'all'} training images, "
             f"{settings['test_subset'] or 'all'} test, {settings['image_size'] or 'native'} px), T=4, "
             f"{settings['epochs']} epochs, {settings['seeds']} seeds; last-epoch test top-1 (%), mean ± std; "
             "training time per run (s). SAKD: α=1, β=10, γ=1, τ=4.", "",
             "| network | ANN | SNN full | SNN SLTT | SLTT - full (± s.e.) | SAKD full | SAKD SLTT | SLTT - full (± s.e.) "
             "| time full / SLTT (SNN) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, r in rows.items():
        t = r["time_s"]
        lines.append(f"| {model} | {pm(r['ann']['last'])} | {pm(r['snn_full']['last'])} | {pm(r['snn_sltt']['last'])} | "
                     f"{_vs(r['snn_sltt_vs_full'])} | {pm(r['sakd_full']['last'])} | {pm(r['sakd_sltt']['last'])} | "
                     f"{_vs(r['sakd_sltt_vs_full'])} | {t['snn_full']['mean']:.1f} / {t['snn_sltt']['mean']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet_tiny"], help="model.name of each network")
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist", help="data.root (default: Debian's package)")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--train-subset", type=int, default=None, help="training images (default 4000, --quick 128)")
    parser.add_argument("--test-subset", type=int, default=None, help="test images (default 2000, --quick 128)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--set", nargs="*", default=[], help="further key=value overrides for every run")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 128 training and 128 test images")
    parser.add_argument("--runs", default="runs/sltt", help="where the training runs go")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/sltt-<data>.json)")
    args = parser.parse_args(argv)
    for key, full, quick in (("train_subset", 4000, 128), ("test_subset", 2000, 128)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    settings = {k: getattr(args, k) for k in ("data", "root", "image_size", "train_subset", "test_subset",
                                              "epochs", "batch", "lr", "seeds", "val_fraction", "set")}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"sltt-{args.data}.json"
    study = Study(out, settings)
    study.save(machine=machine(torch.device("cpu")))
    rows = {}
    for model in args.models:
        tag = _tag(model)
        cells = {mode: [] for mode in MODES}
        teacher = None
        for seed in range(args.seeds):
            for mode, extra in MODES.items():
                key = f"{tag}/{mode}/seed{seed}"
                distill = [f"distill.teacher.weights={teacher}"] if mode.startswith("sakd") else []
                cell = study.run(key, load_config(None, base(args, model, mode != "ann") + extra + distill
                                                  + [f"run.name={key.replace('/', '-')}", f"run.seed={seed}"]))
                cells[mode].append(cell)
                if mode == "ann" and seed == 0:
                    teacher = f"{cell['run_dir']}/best.pt"
        rows[model] = {mode: stats(c) for mode, c in cells.items()}
        rows[model]["time_s"] = {mode: mean_std([c.get("wall_time_s") for c in cs]) for mode, cs in cells.items()}
        for kind in ("snn", "sakd"):
            rows[model][f"{kind}_sltt_vs_full"] = paired(rows[model][f"{kind}_sltt"], rows[model][f"{kind}_full"])
    md = markdown(rows, settings)
    out.with_suffix(".md").write_text(md + "\n")
    study.save(rows=rows, markdown=md)
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return study.result


if __name__ == "__main__":
    main()
