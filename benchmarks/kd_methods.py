"""The distillation methods side by side: same student, teacher, data, schedule and seeds.

Every method trains the quickstart's SNN student (a tiny ResNet at T=4) from the same ANN teacher
(trained once, seed 0) on the same data with the same optimiser and epochs; only the loss terms
differ. Per method, over the seeds: mean ± std of the last and the best test top-1, the student's
test firing rate, and the time of a training step relative to plain SNN training (interleaved
round-robin timing of one fixed batch, median over repeats, in the same run).

    python benchmarks/kd_methods.py                       # digits, 3 seeds (2-CPU VM: ~25 min)
    python benchmarks/kd_methods.py --quick               # 1 seed, 2 epochs, 3 methods (a smoke test)
    python benchmarks/kd_methods.py --data cifar10 --root ~/data --model resnet19 --epochs 200
    python benchmarks/kd_methods.py --tuned --trials 8    # every method tuned alike, then 3 seeds

Weights are each method's published defaults where they exist (the paper's, or mdistiller's for
FitNet and AT), always with cross-entropy at weight 1 unless the method replaces it by its
per-timestep form; they are listed in the JSON. With ``--tuned`` every run holds out
``--val-fraction`` of the training set, every method with a search space (``sakd tune``'s
packaged ones) gets the same ``--trials`` budget of optuna TPE on that validation split, and its
best setting then trains ``--seeds`` seeds, reported on the test set at the epoch validation
selects (and best / last) beside its published defaults; the table marks differences to the SNN
baseline and to SAKD larger than twice their standard error. Results go to
``benchmarks/results/kd_methods-<data>[-tuned].json`` (or ``--out``), with a Markdown table (and,
tuned, a plot); a cell (method, seed) already in that file with the same settings is not trained
again, and a study continues where it stopped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
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
        "sakd": {
            "label": "SAKD (eq. 5: CE + β·feature KD + γ·logits KD), quickstart weights β=10, γ=1, τ=4",
            "overrides": ["distill.beta=10", "distill.gamma=1", "distill.tau=4"],
        },
        "logit_kd": {
            "label": "logits KD (Hinton et al. 2015 = SAKD eq. 7), γ=1, τ=4",
            "overrides": ["distill.gamma=1", "distill.tau=4"],
        },
        "feature_kd": {"label": "feature KD alone (SAKD eq. 8-9), β=10", "overrides": ["distill.beta=10"]},
        "fitnet": {
            "label": "FitNet hints (Romero et al. 2015), weight 100, middle tap",
            "overrides": terms(term("fitnet", 100)),
        },
        "at": {
            "label": "attention transfer (Zagoruyko & Komodakis 2017), weight 1000, p=2",
            "overrides": terms(term("at", 1000)),
        },
        "dkd": {
            "label": "DKD (Zhao et al. 2022), α=1, β=8, τ=4, warm-up 1 epoch",
            "overrides": terms(term("dkd", 1, alpha=1, beta=8, tau=4, warmup=1)),
        },
        "bkd": {
            "label": f"BKD (BKDSNN, Xu et al. 2024) + logits KD: mask 0.15, weight {bkd_weight:.3g} "
            "(= 7e-5·C·H·W of the last tap), γ=1, τ=4",
            "overrides": ["distill.gamma=1", "distill.tau=4"] + terms(term("bkd", bkd_weight)),
        },
        "timestep_kd": {
            "label": "per-timestep logits KD (Yu et al. 2025), weight 1, τ=4, uniform",
            "overrides": terms(term("timestep_kd", 1, tau=4)),
        },
        "temporal_sd": {
            "label": "temporal self-distillation (Yu et al. 2025), weight 1, τ=1, no teacher",
            "overrides": terms(term("temporal_sd", 1, tau=1)),
        },
        "timestep_kd_full": {
            "label": "Yu et al. 2025 whole: TWCE + 0.2 TWKL + 0.5 TWSD (correct-step ensemble), τ=3",
            "overrides": ["distill.alpha=0"]
            + terms(
                term("timestep_ce", 1),
                term("timestep_kd", 0.2, tau=3),
                term("temporal_sd", 0.5, tau=3, ensemble="correct"),
            ),
        },
        "hta_kl": {
            "label": "HTA-KL (arXiv 2504.20445, AKL weighting), weight 1, τ=4, μ=0.5",
            "overrides": terms(term("hta_kl", 1, tau=4, mu=0.5)),
        },
        "strong2weak": {
            "label": "Strong2Weak (arXiv 2510.07924), weight 1, τ=2, no teacher",
            "overrides": terms(term("strong2weak", 1, tau=2)),
        },
        "weak2strong": {
            "label": "Weak2Strong (arXiv 2510.07924), weight 1, τ=2, no teacher",
            "overrides": terms(term("weak2strong", 1, tau=2)),
        },
        "seal_kd": {
            "label": "SeAl-KD (arXiv 2605.14252): TWCE + 0.6 ELA + 0.15 STA, τ=3",
            "overrides": ["distill.alpha=0"]
            + terms(term("timestep_ce", 1), term("seal_kd", 1, ela=0.6, sta=0.15, tau=3)),
        },
        "ckdsnn": {
            "label": "CKDSNN (arXiv 2511.06902): SAMD + NLD, weights 1, τ=2",
            "overrides": terms(term("ckdsnn", 1, samd=1, nld=1, tau=2)),
        },
        "enof": {
            "label": "EnOF (Guo et al. 2024) output-feature KD, weight 1, τ=4 (no RepAct)",
            "overrides": terms(term("enof", 1, tau=4)),
        },
        "meom": {
            "label": "MEOM (ICLR 2026): TWCE + 0.5 TMPD + 0.3 TPD, τ=3",
            "overrides": ["distill.alpha=0"] + terms(term("timestep_ce", 1), term("meom", 1, tmpd=0.5, tpd=0.3, tau=3)),
        },
    }


TUNING_SEED = 1000  # the seed of every trial under --tuned; the reported runs have seeds 0 .. --seeds - 1

# the search space of each method under --tuned (sakd tune's packaged spaces); "combination":
# SAKD's feature term with the best of a logit or self-distillation term, which no paper reports
SPACES = {"sakd": "sakd", "logit_kd": "logit_kd", "feature_kd": "feature_kd", "fitnet": "fitnet", "at": "at",
          "dkd": "dkd", "bkd": "bkd", "timestep_kd": "timestep_kd", "temporal_sd": "temporal_sd",
          "timestep_kd_full": "timestep_kd_full", "hta_kl": "hta_kl", "strong2weak": "strong2weak",
          "weak2strong": "weak2strong", "seal_kd": "seal_kd", "ckdsnn": "ckdsnn", "enof": "enof", "meom": "meom",
          "combination": "sakd_plus_logit_terms"}


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
    x, _ = next(iter(trainer.parts.train_loader))
    taps = FeatureExtractor(trainer.parts.model, cfg.distill.features.level, cfg.distill.features.position)
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
        x, y = next(iter(trainer.parts.train_loader))
        x, y = x.to(trainer.device), y.to(trainer.device)
        features = trainer.parts.objective.reads_features(0)

        def step(trainer=trainer, x=x, y=y, features=features):
            trainer.parts.optimizer.zero_grad(set_to_none=True)
            trainer.step_loss(x, y, 0, features)[0].backward()
            trainer.parts.optimizer.step()
        steps[key] = step
    return interleaved(steps, torch.device("cpu"), warmup=2, repeats=repeats)


def space_reads_teacher(space) -> bool:
    """Whether a trial of ``space`` may need the teacher (a term that reads it, SAKD's β or γ)."""
    terms = [LOSSES.get(name) for name in space.terms]
    return (any(t.needs_teacher or t.needs_features for t in terms)
            or any(d.name in ("distill.beta", "distill.gamma") for d in space.params))


def tune_method(args, key: str, teacher: str, log) -> dict:
    """The method's study (``sakd tune`` on its space, the same trial budget for every method)."""
    from sakd.tuning.space import SearchSpace
    from sakd.tuning.study import TuneSettings, tune

    space = SearchSpace.load(SPACES[key])
    # trials train at a seed none of the reported runs has: the best trial's luck is not reported
    overrides = base_overrides(args) + [f"run.seed={TUNING_SEED}"] + (
        [f"distill.teacher.weights={teacher}"] if space_reads_teacher(space) else [])
    settings = json.dumps({"overrides": overrides, "space": space.spec, "trials": args.trials}, sort_keys=True)
    folder = Path(args.runs) / "tune" / f"{key}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"  # one per setting
    log(f"tuning {key}: {args.trials} trials on the validation split ({folder})")
    summary = tune(TuneSettings("quickstart/snn", space, args.trials, folder, overrides, seed=0))
    return {"space": SPACES[key], "trials": summary["finished"], "seed": TUNING_SEED, "folder": str(folder),
            "best": summary.get("best")}


def difference(a: dict, b: dict) -> dict:
    """``a - b`` of two :func:`mean_std` results, its standard error and whether it exceeds twice that."""
    if a["mean"] is None or b["mean"] is None:
        return {"delta": None, "se": None, "beyond_2se": False}
    n_a, n_b = len([v for v in a["values"] if v is not None]), len([v for v in b["values"] if v is not None])
    se = math.sqrt(a["std"] ** 2 / n_a + b["std"] ** 2 / n_b)
    delta = a["mean"] - b["mean"]
    return {"delta": delta, "se": se, "beyond_2se": abs(delta) > 2 * se and se > 0}


def summarise(runs: list[dict], selected: bool = True) -> dict:
    """Mean ± std over the seeds' runs of the last, best (and, with a validation split, the
    val-selected) test top-1 and the firing rate."""
    keys = {"selected_top1": "selected_top1"} if selected else {}
    keys.update(last_top1="final_top1", best_top1="best_top1", firing_rate="firing_rate")
    return {name: mean_std([r.get(key) for r in runs]) for name, key in keys.items()}


def tuned_markdown(result: dict) -> str:
    def cell(stat, diffs):
        marks = "".join(m for m, d in zip(("†", "‡"), diffs) if d and d["beyond_2se"])
        return f"{pm(stat)}{marks}"

    lines = [
        f"| method | published defaults: test top-1 at the val-selected epoch | tuned ({result['settings']['trials']} "
        "trials): the same | tuned: best val top-1 (the selection score) | tuned setting |",
        "|---|---:|---:|---:|---|",
    ]
    for row in result["methods"].values():
        default = (
            cell(row["default"]["selected_top1"], row["default"]["vs"]) if "default" in row else "(none published)"
        )
        if "tuned" in row:
            tuned = cell(row["tuned"]["selected_top1"], row["tuned"]["vs"])
            best = row["tuned"]["study"]["best"]
            params = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items()
            )
            lines.append(f"| {row['label']} | {default} | {tuned} | {best['score']:.2f} | {params} |")
        else:
            lines.append(f"| {row['label']} | {default} | | | |")
    lines.append("")
    lines.append("† differs from the SNN baseline (CE only) by more than twice the standard error of the difference "
                 "(Welch's, from the seeds); ‡ likewise from SAKD in the same column (defaults against SAKD's "
                 "defaults, tuned against SAKD tuned alike). With 3 seeds a side 2 SE is short of a 95% test "
                 "(Welch's t at 2-4 degrees of freedom is 2.8-4.3): read a mark as a difference beyond the spread, "
                 "not as significance. Every method had the same number of trials, whatever its space's "
                 "dimensions (1 for fitnet, at, feature_kd; up to 6 for the combination); trials ran at seed "
                 f"{TUNING_SEED}, the reported runs at seeds 0-{result['settings'].get('seeds', 3) - 1}.")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result["methods"])
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(keys)), 4))
    for shift, which, label in ((-0.2, "default", "published defaults"), (0.2, "tuned", "tuned")):
        xs = [i + shift for i, k in enumerate(keys) if which in result["methods"][k]]
        stats = [result["methods"][k][which]["selected_top1"] for k in keys if which in result["methods"][k]]
        ax.bar(xs, [s["mean"] or 0 for s in stats], 0.4, yerr=[s["std"] for s in stats], label=label, capsize=2)
    ax.set_xticks(range(len(keys)), keys, rotation=60, ha="right")
    ax.set_ylabel("test top-1 (%) at the val-selected epoch")
    means = [s["mean"] for k in keys for w in ("default", "tuned") if w in result["methods"][k]
             for s in [result["methods"][k][w]["selected_top1"]] if s["mean"] is not None]
    if means:  # every run diverged: no scale to set
        ax.set_ylim(max(0, min(means) - 5), min(100, max(means) + 3))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(result: dict) -> str:
    teacher = result["teacher"]
    lines = ["| method | last top-1 | best top-1 | firing rate | step time vs SNN |", "|---|---:|---:|---:|---:|",
             f"| ANN teacher (seed 0) | {teacher['final_top1']:.2f} | {teacher['best_top1']:.2f} | | |"]
    for row in result["methods"].values():
        if "last_top1" not in row:
            continue
        last, best, rate = row["last_top1"], row["best_top1"], row["firing_rate"]
        shown = f"{rate['mean']:.3f}" if rate["mean"] is not None else ""
        lines.append(f"| {row['label']} | {pm(last)} | {pm(best)} | {shown} | {row['step_time_ratio']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--epochs", type=int, default=15, help="training epochs of every student (default: the quickstart's)"
    )
    parser.add_argument("--data", default=None, help="a registered data set (default: the quickstart's digits)")
    parser.add_argument("--root", default=None, help="data.root of that data set")
    parser.add_argument("--model", default=None, help="a registered model (default: the quickstart's resnet_tiny)")
    parser.add_argument("--methods", nargs="+", default=None, help="a subset of the methods (default: all)")
    parser.add_argument("--set", nargs="*", default=[], help="further key=value overrides for every run")
    parser.add_argument("--repeats", type=int, default=40, help="timed rounds of the step-time comparison")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, SNN / SAKD / DKD: a smoke test")
    parser.add_argument("--runs", default="runs/kd_methods", help="where the training runs go")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/kd_methods-<data>.json)")
    parser.add_argument("--tuned", action="store_true", help="tune every method alike on a validation split first")
    parser.add_argument(
        "--trials", type=int, default=8, help="--tuned: finished trials per method (default: %(default)s)"
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="--tuned: the validation hold-out (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.repeats = 1, 2, 3
        args.methods = args.methods or ["snn", "sakd", "dkd"]
    if args.tuned:  # every run, defaults too, trains on the same split and selects its epoch on validation
        args.set = [*args.set, f"data.val_fraction={args.val_fraction}"]
    data_name = args.data or "digits"
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / (
        f"kd_methods-{data_name}{'-tuned' if args.tuned else ''}.json")
    settings = {"data": data_name, "root": args.root, "model": args.model or "resnet_tiny", "epochs": args.epochs,
                "set": args.set, **({"trials": args.trials, "seeds": args.seeds} if args.tuned else {})}
    study = Study(out, settings)

    scratch = tempfile.TemporaryDirectory()  # run folders of the models built only to measure
    table = methods(7e-5 * last_tap_size(args, scratch.name))
    if args.tuned:
        table["combination"] = {
            "label": "best sum: SAKD's feature term + a logit or self-distillation term (tuned only)",
            "overrides": None,
        }
    unknown = set(args.methods or []) - set(table)
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(table)}")
    table = {k: v for k, v in table.items() if not args.methods or k in args.methods or k == "snn"}  # snn: the baseline
    study.save(machine=machine(torch.device("cpu")))

    teacher = study.run(
        "teacher", load_config("quickstart/teacher", base_overrides(args) + ["run.name=teacher", "run.seed=0"])
    )
    weights = f"{teacher['run_dir']}/best.pt"
    if args.tuned:
        scratch.cleanup()
        return tuned(args, study, table, weights, out)
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
            **summarise(runs, selected=False),
            "step_s": seconds[key], "step_time_ratio": seconds[key] / seconds["snn"] if "snn" in seconds else None,
        }
    study.save(markdown=markdown(result))
    print(result["markdown"])
    print(f"wrote {out}")
    return result


def tuned(args, study: Study, table: dict, weights: str, out: Path) -> dict:
    """Every method at its published defaults and at its tuned best, ``--seeds`` seeds each."""
    rows = {}
    for key, method in table.items():
        row = rows[key] = {"label": method["label"]}
        if method["overrides"] is not None:
            runs = [study.run(f"{key}/default/seed{s}", student_config(args, method, weights, f"run.name={key}-seed{s}",
                                                                       f"run.seed={s}")) for s in range(args.seeds)]
            row["default"] = {"overrides": method["overrides"], **summarise(runs)}
        if key in SPACES:
            found = tune_method(args, key, weights, study.log)
            study.save()
            best = found["best"]
            if best is None:
                continue
            # the best trial's config (best.yaml) at each seed, in the study's run folder
            runs = [study.run(f"{key}/tuned/seed{s}", load_config(best["config"], [
                f"run.output_dir={args.runs}", f"run.name={key}-tuned-seed{s}", f"run.seed={s}"]))
                for s in range(args.seeds)]
            row["tuned"] = {"study": found, **summarise(runs)}
    # each row against the SNN baseline, and against SAKD in the same setting (defaults against
    # SAKD's defaults, tuned against SAKD tuned alike)
    for row in rows.values():
        for which in ("default", "tuned"):
            if which in row:
                refs = [rows.get("snn", {}).get("default"), rows.get("sakd", {}).get(which)]
                row[which]["vs"] = [difference(row[which]["selected_top1"], ref["selected_top1"]) if ref else None
                                    for ref in refs]
    result = study.result
    result["teacher"], result["methods"] = study.cells["teacher"], rows
    picture = out.with_suffix(".png")
    plot(result, picture)
    study.save(markdown=tuned_markdown(result), plot=picture.name)
    out.with_suffix(".md").write_text(result["markdown"] + "\n")
    print(result["markdown"])
    print(f"wrote {out}, {out.with_suffix('.md')}, {picture}")
    return result


if __name__ == "__main__":
    main()
