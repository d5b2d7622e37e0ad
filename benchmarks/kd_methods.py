"""The distillation methods side by side: same student, teacher, data, schedule and seeds.

Every method trains the quickstart's SNN student (a tiny ResNet at T=4) from the same ANN teacher
(trained once, seed 0) on the same data with the same optimiser and epochs; only the loss terms
differ. Per method, over the seeds: mean ± std of the last and the best test top-1, the student's
test firing rate, and the time of a training step relative to plain SNN training (interleaved
round-robin timing of one fixed batch, median over repeats, in the same run).

    python benchmarks/kd_methods.py                       # digits, 3 seeds (2-CPU VM: ~25 min)
    python benchmarks/kd_methods.py --quick               # 1 seed, 2 epochs, 3 methods (a smoke test)
    python benchmarks/kd_methods.py --data cifar10 --root ~/data --model resnet19 --epochs 200

Weights are each method's published defaults where they exist (the paper's, or mdistiller's for
FitNet and AT), always with cross-entropy at weight 1; they are listed in the JSON. Results go to
``benchmarks/results/kd_methods-<data>.json`` (or ``--out``); a cell (method, seed) already in
that file with the same settings is not trained again, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import Study, mean_std, pm  # noqa: E402
from suite import interleaved, machine  # noqa: E402

from sakd.distill import LOSSES  # noqa: E402
from sakd.models import FeatureExtractor  # noqa: E402
from sakd.training import Trainer, load_config  # noqa: E402


def methods(bkd_weight: float) -> dict[str, dict]:
    """Each method: its overrides of the SNN student's config, and where its weights come from."""
    term = lambda name, weight, **opts: {"name": name, "weight": weight, **opts}  # noqa: E731
    terms = lambda *ts: [f"distill.terms={json.dumps(list(ts))}"]  # noqa: E731
    return {
        "snn": {"label": "SNN, no KD (CE only)", "overrides": []},
        "sakd": {"label": "SAKD (eq. 5: CE + β·feature KD + γ·logits KD), quickstart weights β=10, γ=1, τ=4",
                 "overrides": ["distill.beta=10", "distill.gamma=1", "distill.tau=4"]},
        "logit_kd": {"label": "logits KD (Hinton et al. 2015 = SAKD eq. 7), γ=1, τ=4",
                     "overrides": ["distill.gamma=1", "distill.tau=4"]},
        "feature_kd": {"label": "feature KD alone (SAKD eq. 8-9), β=10", "overrides": ["distill.beta=10"]},
        "fitnet": {"label": "FitNet hints (Romero et al. 2015), weight 100, middle tap",
                   "overrides": terms(term("fitnet", 100))},
        "at": {"label": "attention transfer (Zagoruyko & Komodakis 2017), weight 1000, p=2",
               "overrides": terms(term("at", 1000))},
        "dkd": {"label": "DKD (Zhao et al. 2022), α=1, β=8, τ=4, warm-up 1 epoch",
                "overrides": terms(term("dkd", 1, alpha=1, beta=8, tau=4, warmup=1))},
        "bkd": {"label": f"BKD (BKDSNN, Xu et al. 2024) + logits KD: mask 0.15, weight {bkd_weight:.3g} "
                         "(= 7e-5·C·H·W of the last tap), γ=1, τ=4",
                "overrides": ["distill.gamma=1", "distill.tau=4"] + terms(term("bkd", bkd_weight))},
        "timestep_kd": {"label": "per-timestep logits KD (Yu et al. 2025), weight 1, τ=4, uniform",
                        "overrides": terms(term("timestep_kd", 1, tau=4))},
        "temporal_sd": {"label": "temporal self-distillation (Yu et al. 2025), weight 1, τ=1, no teacher",
                        "overrides": terms(term("temporal_sd", 1, tau=1))},
    }


def base_overrides(args) -> list[str]:
    out = [f"run.output_dir={args.runs}", "run.progress=false", f"optim.epochs={args.epochs}"]
    if args.data:  # the quickstart's data options (digits upscaled to 16x16) do not carry over
        out += [f"data.name={args.data}", "data.options={}"]
    if args.root:
        out.append(f"data.root={args.root}")
    if args.model:
        out.append(f"model.name={args.model}")
    return out + list(args.set)


def student_config(args, method: dict, teacher: str, *extra: str):
    """The SNN student's config for a method, given the teacher where its terms read one."""
    overrides = base_overrides(args) + method["overrides"] + list(extra)
    d = load_config("quickstart/snn", overrides).distill
    reads = [LOSSES.get(t.name) for t in d.terms]
    if d.beta or d.gamma or any(t.needs_teacher or t.needs_features for t in reads):
        overrides.append(f"distill.teacher.weights={teacher}")
    return load_config("quickstart/snn", overrides)


def last_tap_size(args, scratch: str) -> int:
    """C·H·W of the student's last stage tap (BKD's authors sum its squared error over it)."""
    cfg = load_config("quickstart/snn", base_overrides(args) + [f"run.output_dir={scratch}"])
    trainer = Trainer(cfg)
    x, _ = next(iter(trainer.train_loader))
    taps = FeatureExtractor(trainer.model, cfg.distill.features.level, cfg.distill.features.position)
    with torch.no_grad():
        _, feats = taps(x[:1].to(trainer.device))
    taps.remove()
    return feats[-1][0, 0].numel()


def step_times(args, teacher: str, table: dict, repeats: int, scratch: str) -> dict[str, float]:
    """Seconds of one training step per method, interleaved on one fixed batch."""
    steps = {}
    for key, method in table.items():
        trainer = Trainer(student_config(args, method, teacher, f"run.name={key}", "run.seed=0",
                                         f"run.output_dir={scratch}"))
        x, y = next(iter(trainer.train_loader))
        x, y = x.to(trainer.device), y.to(trainer.device)
        features = trainer.objective.reads_features(0)

        def step(trainer=trainer, x=x, y=y, features=features):
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.step_loss(x, y, 0, features)[0].backward()
            trainer.optimizer.step()
        steps[key] = step
    return interleaved(steps, torch.device("cpu"), warmup=2, repeats=repeats)


def markdown(result: dict) -> str:
    teacher = result["teacher"]
    lines = ["| method | last top-1 | best top-1 | firing rate | step time vs SNN |", "|---|---:|---:|---:|---:|",
             f"| ANN teacher (seed 0) | {teacher['final_top1']:.2f} | {teacher['best_top1']:.2f} | | |"]
    for key, row in result["methods"].items():
        if "last_top1" not in row:
            continue
        last, best, rate = row["last_top1"], row["best_top1"], row["firing_rate"]
        shown = f"{rate['mean']:.3f}" if rate["mean"] is not None else ""
        lines.append(f"| {row['label']} | {pm(last)} | {pm(best)} | {shown} | {row['step_time_ratio']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="training epochs of every student (default: the quickstart's)")
    parser.add_argument("--data", default=None, help="a registered data set (default: the quickstart's digits)")
    parser.add_argument("--root", default=None, help="data.root of that data set")
    parser.add_argument("--model", default=None, help="a registered model (default: the quickstart's resnet_tiny)")
    parser.add_argument("--methods", nargs="+", default=None, help="a subset of the methods (default: all)")
    parser.add_argument("--set", nargs="*", default=[], help="further key=value overrides for every run")
    parser.add_argument("--repeats", type=int, default=40, help="timed rounds of the step-time comparison")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, SNN / SAKD / DKD: a smoke test")
    parser.add_argument("--runs", default="runs/kd_methods", help="where the training runs go")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/kd_methods-<data>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.repeats = 1, 2, 3
        args.methods = args.methods or ["snn", "sakd", "dkd"]
    data_name = args.data or "digits"
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"kd_methods-{data_name}.json"
    settings = {"data": data_name, "root": args.root, "model": args.model or "resnet_tiny", "epochs": args.epochs,
                "set": args.set}
    study = Study(out, settings)

    scratch = tempfile.TemporaryDirectory()  # run folders of the models built only to measure
    table = methods(7e-5 * last_tap_size(args, scratch.name))
    unknown = set(args.methods or []) - set(table)
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(table)}")
    table = {k: v for k, v in table.items() if not args.methods or k in args.methods or k == "snn"}  # snn: the baseline
    study.save(machine=machine(torch.device("cpu")))

    teacher = study.run("teacher", load_config("quickstart/teacher", base_overrides(args) + ["run.name=teacher", "run.seed=0"]))
    weights = f"{teacher['run_dir']}/best.pt"
    for seed in range(args.seeds):
        for key, method in table.items():
            study.run(f"{key}/seed{seed}", student_config(args, method, weights, f"run.name={key}-seed{seed}",
                                                          f"run.seed={seed}"))

    study.log(f"step times ({args.repeats} interleaved rounds)")
    seconds = step_times(args, weights, table, args.repeats, scratch.name)
    scratch.cleanup()
    result = study.result
    result["teacher"], result["methods"] = teacher, {}
    for key, method in table.items():
        runs = [study.cells[f"{key}/seed{s}"] for s in range(args.seeds)]
        result["methods"][key] = {
            "label": method["label"], "overrides": method["overrides"],
            "last_top1": mean_std([r.get("final_top1") for r in runs]), "best_top1": mean_std([r.get("best_top1") for r in runs]),
            "firing_rate": mean_std([r.get("firing_rate") for r in runs]),
            "step_s": seconds[key], "step_time_ratio": seconds[key] / seconds["snn"] if "snn" in seconds else None,
        }
    study.save(markdown=markdown(result))
    print(result["markdown"])
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
