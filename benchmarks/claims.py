"""The paper's claims measured on real images at CPU scale: Fashion-MNIST, thin ResNets, T=4.

(a) SAKD closes most of the ANN-SNN gap (paper: 85% for ResNet-18 on CIFAR-100);
(b) a deep spiking ResNet that trains badly alone converges under SAKD with block-level,
    after-spike features (Table 10: ResNet-101/152); with the taps' distances summed (the paper's
    eq. 9) and averaged (``reduce: mean``);
(c) logits + features beat either alone (Table 7);
(d) the conv feature transform beats none (Table 5);
(e) the shape of the β ablation: better up to β = 100, unstable beyond (Table 8);
(f) initialising the student from the teacher helps on large data and hurts on small (A.2); the
    small setting takes about as many optimiser steps as the large one (a batch smaller by the
    ratio of the data sizes, at least 8).

Every student trains with the paper's CIFAR settings (τ=20, α=0, γ=1, β=100, features after the
spike at each stage end, conv transform, L2) unless its claim varies one of them; the same
optimiser, epochs and seeds for all; teachers are the seed-0 ANN of the same architecture.
Each cell is mean ± std over the seeds of the last and the best test top-1.

    python benchmarks/claims.py                 # the full study (2-CPU VM: about an hour)
    python benchmarks/claims.py --quick         # 1 seed, tiny subsets, 1 epoch: minutes
    python benchmarks/claims.py --data cifar100 --root ~/data --model resnet18 --deep resnet101 \\
        --train-subset 0 --small-subset 5000 --test-subset 0 --epochs 200 --batch 128 --lr 0.1   # the paper's scale, on a GPU

Writes ``benchmarks/results/claims-<data>.json`` (or ``--out``), a Markdown table beside it and a
plot of the gap closure; a finished cell is not trained again (resumable).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import Study, mean_std, pm  # noqa: E402
from suite import machine  # noqa: E402

from sakd.data import DATASETS  # noqa: E402
from sakd.training import load_config  # noqa: E402

PAPER_CIFAR = ["distill.alpha=0", "distill.beta=100", "distill.gamma=1", "distill.tau=20",
               "distill.features.level=stage", "distill.features.position=after",
               "distill.features.transform=conv", "distill.features.distance=l2"]
THIN = ["model.name=resnet_custom", "model.options={depths: [2, 2, 2], widths: [16, 32, 64], stem_width: 16}"]
DEEP = ["model.name=resnet_custom", "model.options={depths: [9, 9, 9], widths: [16, 32, 64], stem_width: 16}"]


def students() -> dict[str, dict]:
    """Every student cell: its model, data size, teacher and overrides of the paper's settings."""
    def cell(model="thin", data="large", kd=True, extra=()):
        return {"model": model, "data": data, "kd": kd, "overrides": (PAPER_CIFAR if kd else []) + list(extra)}

    return {
        "snn": cell(kd=False),
        "sakd": cell(),
        "logits_only": cell(extra=["distill.beta=0"]),
        "features_only": cell(extra=["distill.gamma=0", "distill.alpha=1"]),
        "transform_none": cell(extra=["distill.features.transform=none"]),
        "beta_1": cell(extra=["distill.beta=1"]),
        "beta_10": cell(extra=["distill.beta=10"]),
        "beta_1000": cell(extra=["distill.beta=1000"]),
        "init_teacher": cell(extra=["model.init=teacher"]),
        "small_sakd": cell(data="small"),
        "small_init_teacher": cell(data="small", extra=["model.init=teacher"]),
        "deep_snn": cell(model="deep", kd=False),
        "deep_sakd": cell(model="deep", extra=["distill.features.level=block"]),
        # the same with the taps' distances averaged: β weighs 27 block taps like 3 stage taps
        "deep_sakd_mean": cell(model="deep", extra=["distill.features.level=block", "distill.features.reduce=mean"]),
    }


def base(args, model: str, data: str, spiking: bool) -> list[str]:
    models = {"thin": [f"model.name={args.model}"] if args.model else THIN,
              "deep": [f"model.name={args.deep}"] if args.deep else DEEP}
    size = args.train_subset if data == "large" else args.small_subset
    # the small setting takes about as many optimiser steps as the large one in as many epochs:
    # a batch smaller by the ratio of the data sizes (at least 8)
    batch = args.batch if data == "large" else max(8, round(args.batch * size / (args.train_subset or 60000)))
    out = [f"data.name={args.data}", f"data.root={args.root}", f"data.batch_size={batch}",
           "data.num_workers=0", *_image_size(args),
           f"data.train_subset={size or 'null'}", f"data.test_subset={args.test_subset or 'null'}",
           *models[model], f"model.spiking={str(spiking).lower()}", "model.timesteps=4",
           "optim.name=sgd", f"optim.lr={args.lr}", "optim.momentum=0.9", "optim.weight_decay=5e-4",
           f"optim.epochs={args.epochs}", "optim.scheduler=cosine", "run.progress=false",
           f"run.output_dir={args.runs}"]
    return out + list(args.set)


def _image_size(args) -> list[str]:
    """``--image-size`` for data sets that take it (Fashion-MNIST, MNIST ...; not CIFAR)."""
    takes = "image_size" in inspect.signature(DATASETS.get(args.data)).parameters
    return [f"data.options={{image_size: {args.image_size}}}"] if takes else []


def stats(cells: list[dict]) -> dict:
    """Last and best top-1 and firing rate over the seeds (a diverged seed counts as None)."""
    return {key: mean_std([c.get(field) for c in cells])
            for key, field in (("last", "final_top1"), ("best", "best_top1"), ("firing_rate", "firing_rate"))}


def verdicts(rows: dict) -> dict[str, dict]:
    """Each claim, measured on the mean of the last top-1: the figures and reproduced / partly / not."""
    m = {k: v["last"]["mean"] for k, v in rows.items()}  # None: every seed diverged
    diverged = {k for k, v in m.items() if v is None}
    m = {k: (0.0 if v is None else v) for k, v in m.items()}  # a diverged cell scores as no accuracy
    out = {}
    gap = m["ann"] - m["snn"]
    closure = (m["sakd"] - m["snn"]) / gap if gap > 0 else float("nan")
    out["a"] = {"closure": closure, "verdict": "reproduced" if closure >= 0.5 else ("partly" if closure > 0 else "not")}
    deep_gap = m["deep_ann"] - m["deep_snn"]
    out["b"] = {"deep_snn_vs_thin_snn": m["deep_snn"] - m["snn"]}
    best_deep = max(m["deep_sakd"], m["deep_sakd_mean"])
    out["b"]["deep_closure"] = (best_deep - m["deep_snn"]) / deep_gap if deep_gap > 0 else float("nan")
    out["b"]["deep_sakd_vs_deep_snn"] = best_deep - m["deep_snn"]
    fails_alone = m["deep_snn"] < m["snn"] - 2.0
    helped = best_deep > m["deep_snn"] + 2.0
    out["b"]["verdict"] = "reproduced" if fails_alone and helped else ("partly" if helped else "not")
    beats = [m["sakd"] > m["logits_only"], m["sakd"] > m["features_only"]]
    out["c"] = {"verdict": "reproduced" if all(beats) else ("partly" if any(beats) else "not")}
    out["d"] = {"conv_minus_none": m["sakd"] - m["transform_none"],
                "verdict": "reproduced" if m["sakd"] > m["transform_none"] else "not"}
    curve = [m["logits_only"], m["beta_1"], m["beta_10"], m["sakd"]]  # β = 0, 1, 10, 100
    rising = curve[-1] > curve[0]
    falls = m["beta_1000"] < m["sakd"]
    out["e"] = {"beta": [0, 1, 10, 100, 1000],
                "last_top1": curve + [None if "beta_1000" in diverged else m["beta_1000"]],
                "verdict": "reproduced" if rising and falls else ("partly" if rising or falls else "not")}
    large, small = m["init_teacher"] - m["sakd"], m["small_init_teacher"] - m["small_sakd"]
    out["f"] = {"init_gain_large": large, "init_gain_small": small,
                "verdict": "reproduced" if large > 0 > small else ("partly" if large > 0 or small < 0 else "not")}
    return out


CLAIMS = {"a": "SAKD closes most of the ANN-SNN gap", "b": "a deep SNN that trains badly alone converges under SAKD (block, after-spike)",
          "c": "logits + features beat either alone", "d": "conv transform beats none",
          "e": "β ablation: better up to 100, worse beyond", "f": "teacher init helps on large data, hurts on small"}


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join("diverged" if v is None else _short(v) for v in value) + "]"
    return str(value)


def markdown(rows: dict, claims: dict, settings: dict) -> str:
    lines = [f"Data: {settings['data']} (train subset {settings['train_subset'] or 'all'}, small {settings['small_subset']}, "
             f"test {settings['test_subset'] or 'all'}, {settings['image_size']}x{settings['image_size']}), "
             f"{settings['epochs']} epochs, {settings['seeds']} seeds, T=4.", "",
             "| cell | last top-1 | best top-1 | firing rate |", "|---|---:|---:|---:|"]
    for key, row in rows.items():
        rate = f"{row['firing_rate']['mean']:.3f}" if row["firing_rate"]["mean"] else ""  # ANNs have none
        lines.append(f"| {key} | {pm(row['last'])} | {pm(row['best'])} | {rate} |")
    lines += ["", "| claim | measured | verdict |", "|---|---|---|"]
    for key, c in claims.items():
        figures = ", ".join(f"{k} {_short(v)}" for k, v in c.items() if k != "verdict")
        lines.append(f"| ({key}) {CLAIMS[key]} | {figures} | {c['verdict']} |")
    return "\n".join(lines)


def plot(rows: dict, claims: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    deep = max(("deep_sakd", "deep_sakd_mean"), key=lambda k: rows[k]["last"]["mean"] or 0.0)
    groups = (("thin ResNet", ("ann", "snn", "sakd")), ("deep thin ResNet", ("deep_ann", "deep_snn", deep)))
    colours = ("#4c72b0", "#dd8452", "#55a868")
    for g, (name, keys) in enumerate(groups):
        for i, (key, colour) in enumerate(zip(keys, colours)):
            row = rows[key]["last"]
            ax.bar(g * 4 + i, row["mean"] or 0.0, yerr=row["std"], color=colour, capsize=3,
                   label=("ANN (teacher)", "SNN", "SAKD-SNN")[i] if g == 0 else None)
    ax.set_xticks([1, 5], [f"thin: {claims['a']['closure']:.0%} of the gap closed",
                           f"deep: {claims['b']['deep_closure']:.0%} of the gap closed"])
    low = min(rows[k]["last"]["mean"] or 0.0 for _, keys in groups for k in keys)
    ax.set_ylim(max(0.0, low - 10), 100)
    ax.set_ylabel("last test top-1 (%)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist", help="data.root (default: Debian's package)")
    parser.add_argument("--image-size", type=int, default=14, help="images resized to this, for data sets that "
                        "take it (default 14: half of Fashion-MNIST's 28)")
    parser.add_argument("--train-subset", type=int, default=None, help="training images of the large setting "
                        "(default 4000, --quick 200; 0: all)")
    parser.add_argument("--small-subset", type=int, default=None, help="training images of the small setting, claim f "
                        "(default 400, --quick 100)")
    parser.add_argument("--test-subset", type=int, default=None, help="test images (default 2000, --quick 200; 0: all)")
    parser.add_argument("--model", default=None, help="the thin model (default: resnet_custom [2,2,2] x [16,32,64])")
    parser.add_argument("--deep", default=None, help="the deep model (default: resnet_custom [9,9,9] x [16,32,64])")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="further key=value overrides for every run")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 200/100 training and 200 test images")
    parser.add_argument("--runs", default="runs/claims", help="where the training runs go")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/claims-<data>.json)")
    args = parser.parse_args(argv)
    sizes = (200, 100, 200) if args.quick else (4000, 400, 2000)
    for key, size in zip(("train_subset", "small_subset", "test_subset"), sizes):
        if getattr(args, key) is None:
            setattr(args, key, size)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    settings = {k: getattr(args, k) for k in ("data", "root", "image_size", "train_subset", "small_subset", "test_subset",
                                              "model", "deep", "epochs", "batch", "lr", "seeds", "set")}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"claims-{args.data}.json"
    study = Study(out, settings)
    study.save(machine=machine(torch.device("cpu")))

    teachers = {}
    for model, data in (("thin", "large"), ("deep", "large"), ("thin", "small")):
        for seed in range(args.seeds):  # the ANN rows; seed 0 teaches
            key = f"ann_{model}_{data}/seed{seed}"
            cell = study.run(key, load_config(None, base(args, model, data, False) + [f"run.name={key.replace('/', '-')}",
                                                                                   f"run.seed={seed}"]))
            if seed == 0:
                teachers[model, data] = f"{cell['run_dir']}/best.pt"
            if data == "small":
                break  # the small setting's ANN only teaches
    table = students()
    for seed in range(args.seeds):
        for key, s in table.items():
            teacher = [f"distill.teacher.weights={teachers[s['model'], s['data']]}"] if s["kd"] else []
            name = f"{key}/seed{seed}"
            study.run(name, load_config(None, base(args, s["model"], s["data"], True) + s["overrides"] + teacher
                                        + [f"run.name={name.replace('/', '-')}", f"run.seed={seed}"]))

    cells = study.cells
    rows = {"ann": stats([cells[f"ann_thin_large/seed{s}"] for s in range(args.seeds)]),
            "deep_ann": stats([cells[f"ann_deep_large/seed{s}"] for s in range(args.seeds)])}
    rows.update({key: stats([cells[f"{key}/seed{s}"] for s in range(args.seeds)]) for key in table})
    claims = verdicts(rows)
    md = markdown(rows, claims, settings)
    plot(rows, claims, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(md + "\n")
    study.save(rows=rows, claims=claims, markdown=md)
    print(md)
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return study.result


if __name__ == "__main__":
    main()
