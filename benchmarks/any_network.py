"""ANN / SNN / SAKD beyond sakd's ResNets: a torchvision twin and a small Spikformer (and any
``--models``) on real images at CPU scale, seed by seed.

For each network: the ANN (the network itself, seeds 0..n-1; seed 0's validation-selected
``best.pt`` teaches), the SNN twin trained alone, and the SNN twin trained with SAKD twice: with
the paper's CIFAR settings (``sakd``: τ=20, α=0, β=100, γ=1, features after the spike at every
stage end the twin finds, conv transform, L2) and with the quickstart's, which keep the
cross-entropy (``sakd_ce``: α=1, β=10, γ=1, τ=4, the same features). The same optimiser, epochs,
data and seeds for all; the last epoch's test top-1 is what is compared (mean ± std over seeds,
and each SAKD - SNN seed by seed with its standard error; a difference counts where every seed
agrees and the mean exceeds its standard error).

    python benchmarks/any_network.py                          # Fashion-MNIST (Debian's package), both networks
    python benchmarks/any_network.py --quick                  # 1 seed, 1 epoch, tiny subsets: minutes
    python benchmarks/any_network.py --models torchvision:resnet18 timm:resnet18 --data cifar10 --root ~/data \\
        --image-size 0 --train-subset 0 --test-subset 0 --epochs 200 --batch 128 --lr 0.1   # at scale, on a GPU

Writes ``benchmarks/results/any_network-<data>.json`` (resumable: a finished cell is not trained
again) and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import PAPER_CIFAR, _takes_size, paired, stats  # noqa: E402
from study import Study, pm  # noqa: E402
from suite import machine  # noqa: E402

from sakd.training import load_config  # noqa: E402


def base(args, model: str, spiking: bool) -> list[str]:
    """One run's overrides; ``model`` is a model.name, with its model.options after an ``@``."""
    name, _, options = model.partition("@")
    size = [f"data.options={{image_size: {args.image_size}}}"] if args.image_size and _takes_size(args.data) else []
    size += [f"model.options={options}"] if options else []
    return [f"data.name={args.data}", f"data.root={args.root}", f"data.batch_size={args.batch}", "data.num_workers=0",
            *size, f"data.val_fraction={args.val_fraction}", f"data.train_subset={args.train_subset or 'null'}",
            f"data.test_subset={args.test_subset or 'null'}", f"model.name={name}",
            f"model.spiking={str(spiking).lower()}", "model.timesteps=4", "optim.name=sgd", f"optim.lr={args.lr}",
            "optim.momentum=0.9", "optim.weight_decay=5e-4", f"optim.epochs={args.epochs}", "optim.scheduler=cosine",
            "run.progress=false", f"run.output_dir={args.runs}", *args.set]


def _tag(model: str) -> str:
    """A name for a network's cells and runs: ``spikformer_depth2_dim64_heads4``."""
    name, _, options = model.partition("@")
    return "_".join([name.replace(":", "_"), *(f"{k}{v}" for k, v in (yaml.safe_load(options) or {}).items())])


MODES = {  # mode -> the student's distillation (besides its teacher)
    "ann": [], "snn": [], "sakd": PAPER_CIFAR,
    "sakd_ce": ["distill.alpha=1", "distill.beta=10", "distill.gamma=1", "distill.tau=4"],
}


def _vs(gain: dict) -> str:
    verdict = {1: "gain", -1: "loss", 0: "not distinguishable"}[gain["sign"]]
    return f"{gain['diff']:+.2f} ± {gain['se']:.2f} ({verdict})"


def markdown(rows: dict, settings: dict) -> str:
    lines = [
        f"Data: {settings['data']} ({settings['train_subset'] or 'all'} training images, "
        f"{settings['test_subset'] or 'all'} test, {settings['image_size'] or 'native'} px), T=4, "
        f"{settings['epochs']} epochs, {settings['seeds']} seeds; last-epoch test top-1 (%), mean ± std. "
        "SAKD: the paper's CIFAR settings (α=0, β=100, τ=20); SAKD+CE: α=1, β=10, τ=4.",
        "",
        "| network | ANN | SNN | SAKD | SAKD - SNN (± s.e.) | SAKD+CE | SAKD+CE - SNN (± s.e.) | SNN firing rate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, r in rows.items():
        lines.append(f"| {model} | {pm(r['ann']['last'])} | {pm(r['snn']['last'])} | {pm(r['sakd']['last'])} | "
                     f"{_vs(r['sakd_vs_snn'])} | {pm(r['sakd_ce']['last'])} | {_vs(r['sakd_ce_vs_snn'])} | "
                     f"{r['snn']['firing_rate']['mean']:.3f} |")
    return "\n".join(lines)


def study_arguments(doc: str, models: list[str], runs: str, name: str) -> argparse.ArgumentParser:
    """The arguments of a seed-by-seed study of networks (this one's and ``sltt_accuracy.py``'s)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=models,
                        help=f"model.name of each network, its model.options after an @ (default: {' '.join(models)})")
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument(
        "--root", default="/usr/share/datasets/fashion-mnist", help="data.root (default: Debian's package)"
    )
    parser.add_argument("--image-size", type=int, default=28, help="images resized to this where the data set takes "
                        "it (0: as they are)")
    parser.add_argument(
        "--train-subset", type=int, default=None, help="training images (default 4000, --quick 128; 0: all)"
    )
    parser.add_argument("--test-subset", type=int, default=None, help="test images (default 2000, --quick 128; 0: all)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="training images held out to select the teacher"
    )
    parser.add_argument("--set", nargs="*", default=[], help="further key=value overrides for every run")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 128 training and 128 test images")
    parser.add_argument("--runs", default=runs, help="where the training runs go")
    parser.add_argument("--out", default=None, help=f"JSON path (default benchmarks/results/{name}-<data>.json)")
    parser.set_defaults(study_name=name)
    return parser


def open_study(args) -> tuple[Study, dict]:
    """The study file of ``args`` (resumable) and its settings, ``--quick``'s sizes filled in."""
    for key, full, quick in (("train_subset", 4000, 128), ("test_subset", 2000, 128)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    settings = {k: getattr(args, k) for k in ("data", "root", "image_size", "train_subset", "test_subset",
                                              "epochs", "batch", "lr", "seeds", "val_fraction", "set")}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"{args.study_name}-{args.data}.json"
    study = Study(out, settings)
    study.save(machine=machine(torch.device("cpu")))
    return study, settings


def train_cells(study: Study, args, model: str, modes: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Every mode's cells of ``model``, seed by seed: ``modes`` maps a mode to its overrides; ``ann``
    trains the network, the rest its SNN twin, those named ``sakd*`` taught by seed 0's ANN."""
    tag = _tag(model)
    cells = {mode: [] for mode in modes}
    teacher = None
    for seed in range(args.seeds):
        for mode, extra in modes.items():
            key = f"{tag}/{mode}/seed{seed}"
            distill = [f"distill.teacher.weights={teacher}"] if mode.startswith("sakd") else []
            cell = study.run(key, load_config(None, base(args, model, mode != "ann") + extra + distill
                                              + [f"run.name={key.replace('/', '-')}", f"run.seed={seed}"]))
            cells[mode].append(cell)
            if mode == "ann" and seed == 0:
                teacher = f"{cell['run_dir']}/best.pt"
    return cells


def finish(study: Study, rows: dict, md: str) -> dict:
    """The table beside the JSON, both written, the table printed."""
    study.out.with_suffix(".md").write_text(md + "\n")
    study.save(rows=rows, markdown=md)
    print(md)
    print(f"wrote {study.out} and {study.out.with_suffix('.md')}")
    return study.result


def main(argv: list[str] | None = None) -> dict:
    args = study_arguments(__doc__, ["torchvision:resnet18", "spikformer@{depth: 2, dim: 64, heads: 4}"],
                           "runs/any_network", "any_network").parse_args(argv)
    study, settings = open_study(args)
    rows = {}
    for model in args.models:
        rows[model] = {mode: stats(c) for mode, c in train_cells(study, args, model, MODES).items()}
        for mode in ("sakd", "sakd_ce"):
            rows[model][f"{mode}_vs_snn"] = paired(rows[model][mode], rows[model]["snn"])
    return finish(study, rows, markdown(rows, settings))


if __name__ == "__main__":
    main()
