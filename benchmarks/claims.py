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

Each claim is judged seed by seed on the last epoch's test top-1 (no selection on the test set):
a difference counts where every seed agrees in sign and the mean difference exceeds its standard
error, else the claim is "not distinguishable" (always so with one seed, as ``--quick``); a cell
that must have trained and lies near chance makes its claim "did not train". Teachers' ``best.pt``
is selected on a validation hold-out (``--val-fraction``, default 0.1 of the training images, held
out of every run alike); the "best" column, chosen on the test set, is labelled so.

Every student trains with the paper's CIFAR settings (τ=20, α=0, γ=1, β=100, features after the
spike at each stage end, conv transform, L2) unless its claim varies one of them; the same
optimiser, epochs and seeds for all; teachers are the seed-0 ANN of the same architecture.
Each cell is mean ± std over the seeds of the last and the best test top-1.

    python benchmarks/claims.py                 # the full study (2-CPU VM: about an hour)
    python benchmarks/claims.py --quick         # 1 seed, tiny subsets, 1 epoch: minutes (no verdicts)
    python benchmarks/claims.py --judge benchmarks/results/claims-fashion_mnist.json   # judge a recorded study again
    python benchmarks/claims.py --data cifar100 --root ~/data --model resnet18 --deep resnet101 \\
        --train-subset 0 --small-subset 5000 --test-subset 0 --epochs 200 --batch 128 --lr 0.1  # paper scale, GPU

Writes ``benchmarks/results/claims-<data>.json`` (or ``--out``), a Markdown table beside it and a
plot of the gap closure; a finished cell is not trained again (resumable).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import Study, mean_std, pm  # noqa: E402
from suite import machine  # noqa: E402

from sakd.data import DATASETS, build_dataset  # noqa: E402
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
           "data.num_workers=0", *_image_size(args), f"data.val_fraction={args.val_fraction}",
           f"data.train_subset={size or 'null'}", f"data.test_subset={args.test_subset or 'null'}",
           *models[model], f"model.spiking={str(spiking).lower()}", "model.timesteps=4",
           "optim.name=sgd", f"optim.lr={args.lr}", "optim.momentum=0.9", "optim.weight_decay=5e-4",
           f"optim.epochs={args.epochs}", "optim.scheduler=cosine", "run.progress=false",
           f"run.output_dir={args.runs}"]
    return out + list(args.set)


def _takes_size(data: str) -> bool:
    return "image_size" in inspect.signature(DATASETS.get(data)).parameters


def _image_size(args) -> list[str]:
    """``--image-size`` for data sets that take it (Fashion-MNIST, MNIST ...; not CIFAR)."""
    return [f"data.options={{image_size: {args.image_size}}}"] if _takes_size(args.data) else []


def stats(cells: list[dict]) -> dict:
    """Over the seeds: the last epoch's test top-1, the test top-1 of the epoch the validation
    hold-out selects, the best test top-1 (chosen on the test set: optimistic) and the firing rate
    (a diverged seed counts as None)."""
    return {key: mean_std([c.get(field) for c in cells])
            for key, field in (("last", "final_top1"), ("selected", "selected_top1"), ("best", "best_top1"),
                               ("firing_rate", "firing_rate"))}


def paired(a: dict, b: dict) -> dict:
    """``a`` against ``b`` seed by seed on the last top-1 (a diverged seed scores 0): the mean
    difference, its standard error, and the sign it supports: +1 / -1 where every seed agrees in
    sign and the mean difference exceeds its standard error, else 0 (not distinguishable; so
    always with one seed)."""
    d = [(x or 0.0) - (y or 0.0) for x, y in zip(a["last"]["values"], b["last"]["values"], strict=True)]
    mean = sum(d) / len(d)
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
    sign = 1 if all(v > 0 for v in d) and mean > se else -1 if all(v < 0 for v in d) and -mean > se else 0
    return {"diff": mean, "se": se, "sign": sign}


def verdicts(rows: dict, chance: float) -> dict[str, dict]:
    """Each claim on the last top-1, seed by seed (:func:`paired`): reproduced, partly, not, or not
    distinguishable where no comparison it rests on has a margin; a cell that must have trained
    and is near chance (below 1.5x chance) makes the claim "did not train", never a verdict."""
    m = {k: (v["last"]["mean"] or 0.0) for k, v in rows.items()}  # a diverged cell scores as no accuracy
    untrained = {k for k, v in m.items() if v < 1.5 * chance}
    deep = max(("deep_sakd", "deep_sakd_mean"), key=lambda k: m[k])
    p = {
        name: paired(rows[a], rows[b])
        for name, a, b in (
            ("sakd_vs_snn", "sakd", "snn"),
            ("deep_snn_vs_snn", "deep_snn", "snn"),
            ("deep_kd_vs_deep_snn", deep, "deep_snn"),
            ("sakd_vs_logits", "sakd", "logits_only"),
            ("sakd_vs_features", "sakd", "features_only"),
            ("conv_vs_none", "sakd", "transform_none"),
            ("beta_1000_vs_100", "beta_1000", "sakd"),
            ("init_large", "init_teacher", "sakd"),
            ("init_small", "small_init_teacher", "small_sakd"),
        )
    }
    sign = {k: v["sign"] for k, v in p.items()}

    def judge(needs: list[str], expected: list[tuple[str, int]], partly_ok: bool = True) -> str:
        """reproduced: every comparison has its margin the expected way; not: one has it the other
        way; partly: some the expected way and none against; else not distinguishable."""
        if any(k in untrained for k in needs):
            return "did not train (" + ", ".join(k for k in needs if k in untrained) + ")"
        got = [sign[c] * want for c, want in expected]
        if all(g > 0 for g in got):
            return "reproduced"
        if any(g < 0 for g in got):
            return "not"
        return "partly" if partly_ok and any(g > 0 for g in got) else "not distinguishable"

    out = {}
    gap = m["ann"] - m["snn"]
    closure = (m["sakd"] - m["snn"]) / gap if gap > 0 else float("nan")
    a = judge(["ann", "snn", "sakd"], [("sakd_vs_snn", 1)])
    if a == "reproduced" and not closure >= 0.5:
        a = "partly"  # SAKD helps, by less than half the gap
    out["a"] = {"closure": closure, "sakd_minus_snn": p["sakd_vs_snn"], "verdict": a}
    deep_gap = m["deep_ann"] - m["deep_snn"]
    out["b"] = {"deep_snn_minus_snn": p["deep_snn_vs_snn"], "deep_kd": deep,
                "deep_closure": (m[deep] - m["deep_snn"]) / deep_gap if deep_gap > 0 else float("nan"),
                "deep_kd_minus_deep_snn": p["deep_kd_vs_deep_snn"],
                "verdict": judge(["snn", "deep_ann", deep], [("deep_snn_vs_snn", -1), ("deep_kd_vs_deep_snn", 1)])}
    out["c"] = {
        "sakd_minus_logits_only": p["sakd_vs_logits"],
        "sakd_minus_features_only": p["sakd_vs_features"],
        "verdict": judge(["sakd", "logits_only", "features_only"], [("sakd_vs_logits", 1), ("sakd_vs_features", 1)]),
    }
    out["d"] = {"conv_minus_none": p["conv_vs_none"],
                "verdict": judge(["sakd", "transform_none"], [("conv_vs_none", 1)])}
    curve = [m["logits_only"], m["beta_1"], m["beta_10"], m["sakd"]]  # β = 0, 1, 10, 100
    diverged = rows["beta_1000"]["last"]["mean"] is None
    out["e"] = {"beta": [0, 1, 10, 100, 1000], "last_top1": curve + [None if diverged else m["beta_1000"]],
                "beta_100_minus_0": p["sakd_vs_logits"], "beta_1000_minus_100": p["beta_1000_vs_100"],
                "verdict": judge(["sakd", "logits_only"], [("sakd_vs_logits", 1), ("beta_1000_vs_100", -1)])}
    out["f"] = {"init_gain_large": p["init_large"], "init_gain_small": p["init_small"],
                "verdict": judge(["sakd", "init_teacher", "small_sakd", "small_init_teacher"],
                                 [("init_large", 1), ("init_small", -1)])}
    return out


CLAIMS = {
    "a": "SAKD closes most of the ANN-SNN gap",
    "b": "a deep SNN that trains badly alone converges under SAKD (block, after-spike)",
    "c": "logits + features beat either alone",
    "d": "conv transform beats none",
    "e": "β ablation: better up to 100, worse beyond",
    "f": "teacher init helps on large data, hurts on small",
}


def _short(value) -> str:
    if isinstance(value, dict) and "se" in value:  # a paired difference
        return f"{value['diff']:+.2f} ± {value['se']:.2f} (se)"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join("diverged" if v is None else _short(v) for v in value) + "]"
    return str(value)


def markdown(rows: dict, claims: dict, settings: dict) -> str:
    lines = [
        f"Data: {settings['data']} (train subset {settings['train_subset'] or 'all'}, "
        f"small {settings['small_subset']}, "
        f"test {settings['test_subset'] or 'all'}, {settings['image_size']}x{settings['image_size']}), "
        f"{settings['epochs']} epochs, {settings['seeds']} seeds, T=4, "
        f"validation hold-out {settings.get('val_fraction') or 'none'}.",
        "",
        "| cell | last top-1 | val-selected top-1 | best top-1 (chosen on test) | firing rate |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, row in rows.items():
        rate = f"{row['firing_rate']['mean']:.3f}" if row["firing_rate"]["mean"] else ""  # ANNs have none
        selected = pm(row["selected"]) if "selected" in row and row["selected"]["mean"] is not None else "-"
        lines.append(f"| {key} | {pm(row['last'])} | {selected} | {pm(row['best'])} | {rate} |")
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
    for g, (_name, keys) in enumerate(groups):
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
    parser.add_argument(
        "--root", default="/usr/share/datasets/fashion-mnist", help="data.root (default: Debian's package)"
    )
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
    parser.add_argument("--val-fraction", type=float, default=0.1, help="the training images held out to select "
                        "each teacher's best.pt (and report each cell's val-selected top-1); default %(default)s")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/claims-<data>.json)")
    parser.add_argument("--judge", metavar="JSON", help="no training: judge the cells of a recorded study again "
                        "(its rows, claims and Markdown rewritten)")
    args = parser.parse_args(argv)
    if args.judge:
        return judge_recorded(Path(args.judge))
    sizes = (200, 100, 200) if args.quick else (4000, 400, 2000)
    for key, size in zip(("train_subset", "small_subset", "test_subset"), sizes):
        if getattr(args, key) is None:
            setattr(args, key, size)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    settings = {
        k: getattr(args, k)
        for k in (
            "data",
            "root",
            "image_size",
            "train_subset",
            "small_subset",
            "test_subset",
            "model",
            "deep",
            "epochs",
            "batch",
            "lr",
            "seeds",
            "set",
            "val_fraction",
        )
    }
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"claims-{args.data}.json"
    study = Study(out, settings)
    study.save(machine=machine(torch.device("cpu")))

    teachers = {}
    for model, data in (("thin", "large"), ("deep", "large"), ("thin", "small")):
        for seed in range(args.seeds):  # the ANN rows; seed 0 teaches
            key = f"ann_{model}_{data}/seed{seed}"
            cell = study.run(
                key,
                load_config(
                    None, base(args, model, data, False) + [f"run.name={key.replace('/', '-')}", f"run.seed={seed}"]
                ),
            )
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

    report(study, out)
    return study.result


def report(study: Study, out: Path, chance: float | None = None) -> None:
    """Rows, verdicts, Markdown and plot of a study whose cells are all in (``chance``: the
    chance top-1, else counted from the data set's classes)."""
    settings, cells = study.result["settings"], study.cells
    seeds = settings["seeds"]
    rows = {"ann": stats([cells[f"ann_thin_large/seed{s}"] for s in range(seeds)]),
            "deep_ann": stats([cells[f"ann_deep_large/seed{s}"] for s in range(seeds)])}
    rows.update({key: stats([cells[f"{key}/seed{s}"] for s in range(seeds)]) for key in students()})
    chance = chance or 100.0 / build_dataset(
        settings["data"], root=settings["root"], augment=False,
        **({"image_size": settings["image_size"]} if _takes_size(settings["data"]) else {})).num_classes
    claims = verdicts(rows, chance)
    md = markdown(rows, claims, settings)
    plot(rows, claims, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(md + "\n")
    study.save(rows=rows, claims=claims, markdown=md, chance=chance)
    print(md)
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")


def judge_recorded(path: Path) -> dict:
    """:func:`report` on a recorded study's cells, trained or not under today's settings."""
    recorded = json.loads(path.read_text())
    study = Study(path, recorded["settings"])
    report(study, path, recorded.get("chance"))  # recorded with the study: no data set needed
    return study.result


if __name__ == "__main__":
    main()
