"""Convert, distil, or both? Five ways from an ANN to an SNN on one network, one data set and one
epoch budget, at T = 1, 2, 4 and 8, over seeds:

* ``qcfs``: a QCFS ANN (L = 4 quantisation steps; Bu et al. 2022) converted (``sakd convert
  --method qcfs``): no SNN training;
* ``max``: a ReLU ANN converted by each activation's largest output on 256 training images
  (``--method max``, SpikingJelly's reading): no SNN training;
* ``snn``: the SNN (LIF) trained alone, surrogate gradients;
* ``sakd``: the SNN distilled from the ReLU ANN (the quickstart's SAKD settings);
* ``qcfs_sakd``: the converted QCFS SNN as the student's start (``model.init``), distilled from its
  QCFS ANN, as many epochs.

Each seed trains its own ANNs; every trained SNN gets the ANNs' epochs. The cells are the last
epoch's test top-1 (a conversion's is its only one); at each T the leader is compared with the
runner-up seed by seed, and so are the pairs a user asks about (distil or convert; both or either;
each against the SNN alone): "beyond the spread" where every seed agrees in sign and the mean
difference exceeds its standard error, else "within the spread".

    python benchmarks/conversion.py --data digits          # the quickstart's setting (2-CPU VM: ~15 min)
    python benchmarks/conversion.py --data fashion_mnist   # the claims study's sizes (Debian's package)
    python benchmarks/conversion.py --quick                 # 1 seed, T = 1 and 2, 1 epoch, 200 images: a smoke test

Writes ``benchmarks/results/conversion-<data>.json`` (or ``--out``), a Markdown table and a plot
beside it; a finished cell is not trained again (resumable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import paired, stats  # noqa: E402
from study import Study, pm  # noqa: E402
from suite import machine  # noqa: E402

from sakd.training import load_config  # noqa: E402
from sakd.training.conversion import convert  # noqa: E402
from sakd.training.evaluate import evaluate_checkpoint  # noqa: E402

METHODS = {"qcfs": "QCFS conversion", "max": "max-norm conversion", "snn": "SNN alone",
           "sakd": "SAKD", "qcfs_sakd": "QCFS conversion -> SAKD"}
QCFS = "model.neuron={name: qcfs, options: {levels: 4, theta: 2.0}}"
SAKD = ["distill.alpha=1", "distill.beta=10", "distill.gamma=1", "distill.tau=4"]  # the quickstart's
DATA = {
    "digits": ["data.name=digits", "data.options={image_size: 16}", "model.name=resnet_tiny", "data.batch_size=32"],
    "fashion_mnist": ["data.name=fashion_mnist", "data.root=/usr/share/datasets/fashion-mnist",
                      "data.options={image_size: 14}", "model.name=resnet_custom",
                      "model.options={depths: [2, 2, 2], widths: [16, 32, 64], stem_width: 16}", "data.batch_size=64",
                      "data.train_subset=4000", "data.test_subset=2000"],
}


def base(args) -> list[str]:
    quick = ["data.train_subset=200", "data.test_subset=100"] if args.quick else []
    return [*DATA[args.data], *quick, "data.num_workers=0", "optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9",
            "optim.nesterov=true", "optim.weight_decay=5e-4", f"optim.epochs={args.epochs}", "optim.scheduler=cosine",
            "run.progress=false", f"run.output_dir={args.runs}"]


def conversion_cell(study: Study, key: str, ann_run: str, method: str, timesteps: int, folder: Path) -> dict:
    """Convert ``ann_run`` at ``timesteps`` and evaluate it on the test split (once)."""
    if key not in study.cells:
        study.log(key)
        out = folder / f"{key.replace('/', '-')}.pt"
        convert(ann_run, method, timesteps, out)
        result = evaluate_checkpoint(out)
        study.cells[key] = {"run_dir": str(out), "final_top1": result["top1"], "best_top1": result["top1"],
                            "firing_rate": result.get("firing_rate")}
        study.save()
    return study.cells[key]


def leaders(rows: dict, steps: list[int]) -> dict:
    """At each T: the method with the best mean last top-1, its margin over the runner-up seed by
    seed (:func:`claims.paired`) and whether the margin is beyond the spread."""
    out = {}
    for t in steps:
        ranked = sorted(METHODS, key=lambda m: -(rows[m][str(t)]["last"]["mean"] or 0.0))
        first, second = ranked[:2]
        margin = paired(rows[first][str(t)], rows[second][str(t)])
        out[str(t)] = {"leader": first, "runner_up": second, "diff": margin["diff"], "se": margin["se"],
                       "beyond_spread": margin["sign"] == 1}
    return out


# the questions a user asks, each a paired comparison at every T: distil or convert, both or either,
# and what each adds to the SNN trained alone
PAIRS = (("sakd", "qcfs"), ("qcfs_sakd", "qcfs"), ("qcfs_sakd", "sakd"), ("qcfs", "snn"), ("sakd", "snn"))


def pairs(rows: dict, steps: list[int]) -> dict:
    """Each of :data:`PAIRS` at each T, seed by seed (:func:`claims.paired`)."""
    return {str(t): {f"{a} - {b}": paired(rows[a][str(t)], rows[b][str(t)]) for a, b in PAIRS} for t in steps}


def leader_text(lead: dict) -> str:
    first, second = METHODS[lead["leader"]], METHODS[lead["runner_up"]]
    if abs(lead["diff"]) < 1e-9:
        return f"{first} and {second} tie"
    spread = "beyond" if lead["beyond_spread"] else "within"
    return f"{first} over {second}: {lead['diff']:+.2f} ± {lead['se']:.2f} ({spread} the spread)"


def markdown(rows: dict, lead: dict, compared: dict, steps: list[int], settings: dict) -> str:
    head = "| method | " + " | ".join(f"T={t}" for t in steps) + " |"
    lines = [head, "|---|" + "---:|" * len(steps)]
    for m, label in METHODS.items():
        lines.append(f"| {label} | " + " | ".join(pm(rows[m][str(t)]["last"]) for t in steps) + " |")
    lines.append("| leader: its margin over the runner-up (± standard error) | " + " | ".join(
        leader_text(lead[str(t)]) for t in steps) + " |")
    for a, b in PAIRS:
        cells = []
        for t in steps:
            c = compared[str(t)][f"{a} - {b}"]
            cells.append(f"{c['diff']:+.2f} ± {c['se']:.2f}" + (" (beyond)" if c["sign"] else ""))
        lines.append(f"| {METHODS[a]} minus {METHODS[b]} | " + " | ".join(cells) + " |")
    note = (f"\nLast-epoch test top-1 (%), mean ± std over {settings['seeds']} seed(s); {settings['data']}, "
            f"{settings['epochs']} epochs for every ANN and every trained SNN. The ANN rows: ReLU "
            f"{pm(rows['ann']['last'])}, QCFS {pm(rows['ann_qcfs']['last'])}.")
    return "\n".join(lines) + "\n" + note + "\n"


def plot(rows: dict, steps: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, label in METHODS.items():
        means = [rows[m][str(t)]["last"]["mean"] or 0.0 for t in steps]
        stds = [rows[m][str(t)]["last"]["std"] for t in steps]
        ax.errorbar(steps, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.axhline(rows["ann"]["last"]["mean"] or 0.0, color="grey", ls="--", label="ReLU ANN")
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("test top-1 (%), last epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATA), default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="the timesteps T")
    parser.add_argument("--quick", action="store_true", help="1 seed, T = 1 and 2, 1 epoch, 200 training images")
    parser.add_argument("--runs", default="runs/conversion", help="where the training runs go")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/conversion-<data>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.steps = 1, 1, [1, 2]
    settings = {k: getattr(args, k) for k in ("data", "epochs", "seeds", "steps", "quick")}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"conversion-{args.data}.json"
    study = Study(out, settings)
    study.save(machine=machine(torch.device("cpu")), command=" ".join(["python benchmarks/conversion.py",
                                                                        *(argv if argv is not None else sys.argv[1:])]))
    folder = Path(args.runs) / "converted"
    folder.mkdir(parents=True, exist_ok=True)
    common = base(args)
    for seed in range(args.seeds):
        s = [f"run.seed={seed}"]
        relu = study.run(f"ann/seed{seed}", load_config(None, [*common, *s, "model.spiking=false",
                                                                f"run.name=ann-seed{seed}"]))["run_dir"]
        qcfs = study.run(f"ann_qcfs/seed{seed}", load_config(None, [*common, *s, "model.spiking=false", QCFS,
                                                                     f"run.name=ann_qcfs-seed{seed}"]))["run_dir"]
        for t in args.steps:
            conversion_cell(study, f"qcfs/T{t}/seed{seed}", qcfs, "qcfs", t, folder)
            conversion_cell(study, f"max/T{t}/seed{seed}", relu, "max", t, folder)
            snn = [*common, *s, "model.spiking=true", f"model.timesteps={t}"]
            study.run(f"snn/T{t}/seed{seed}", load_config(None, [*snn, f"run.name=snn-T{t}-seed{seed}"]))
            study.run(f"sakd/T{t}/seed{seed}", load_config(None, [
                *snn, *SAKD, f"distill.teacher.weights={relu}/last.pt", f"run.name=sakd-T{t}-seed{seed}"]))
            start = study.cells[f"qcfs/T{t}/seed{seed}"]["run_dir"]
            study.run(f"qcfs_sakd/T{t}/seed{seed}", load_config(None, [
                *snn, *SAKD, QCFS, f"model.init={start}", f"distill.teacher.weights={qcfs}/last.pt",
                f"run.name=qcfs_sakd-T{t}-seed{seed}"]))
    seeds = range(args.seeds)
    rows = {m: {str(t): stats([study.cells[f"{m}/T{t}/seed{s}"] for s in seeds]) for t in args.steps}
            for m in METHODS}
    rows["ann"] = stats([study.cells[f"ann/seed{s}"] for s in seeds])
    rows["ann_qcfs"] = stats([study.cells[f"ann_qcfs/seed{s}"] for s in seeds])
    lead, compared = leaders(rows, args.steps), pairs(rows, args.steps)
    md = markdown(rows, lead, compared, args.steps, settings)
    out.with_suffix(".md").write_text(md)
    plot(rows, args.steps, out.with_suffix(".png"))
    study.save(rows=rows, leaders=lead, pairs=compared, markdown=md)
    print(md)
    return study.result


if __name__ == "__main__":
    main()
