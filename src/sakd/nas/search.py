"""Search over a trained supernet's subnets.

Each evaluated subnet is materialised as a standalone model (weights sliced from the supernet),
its BatchNorm statistics are re-estimated on ``calibration_batches`` training batches, and it is
evaluated on the test split. The calibration batches are drawn once, without augmentation, and
every subnet is calibrated on the very same images, so subnets differ only by their weights. Every
result goes to a JSONL file as soon as it exists, so a search
that stops resumes without evaluating anything twice. The space's reference architecture (the
teacher's own, the paper's red line) is always evaluated first.

Strategies: ``random`` (uniform, without repeats) and ``tpe`` (optuna's Tree-structured Parzen
Estimator over the per-stage choices, the Bayesian search of the paper).
"""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader

from sakd import runs
from sakd.data import open_data
from sakd.errors import ConfigError
from sakd.nas.space import Arch
from sakd.training.evaluate import evaluate
from sakd.training.run_folder import Checkpoint
from sakd.outputs import append_text
from sakd.training.runtime import resolve_device, resolve_workers

STRATEGIES = ("tpe", "random")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: list[torch.Tensor], device) -> None:
    """Replace every BatchNorm's running statistics by their average over ``batches``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for x in batches:
        model(x.to(device))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    model.eval()


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ConfigError(f"{path} line {n} is not JSON; is it a sakd nas results file?") from None
    return rows


def _key(arch: Arch) -> tuple:
    return arch.channels, arch.depths


class SubnetEvaluator:
    """Evaluate subnets of a supernet checkpoint on its own data set."""

    def __init__(self, checkpoint: str, calibration_batches: int, device: str = "auto", seed: int = 0):
        held = Checkpoint.load(checkpoint)
        if held.spec.name != "resnet_supernet":
            raise ConfigError(f"{held.path} holds {held.spec.name}, not a supernet (sakd nas train)")
        self.cfg = held.config
        self.device = resolve_device(device, setting="--device")
        self.supernet = held.model()
        self.supernet.to(self.device)
        self.space = self.supernet.space
        d = self.cfg.data
        data = open_data(d, augment=False)
        common = dict(
            batch_size=d.eval_batch_size or d.batch_size,
            num_workers=resolve_workers(d.num_workers),
            collate_fn=data.collate_fn,
        )
        order = DataLoader(data.train, shuffle=True, generator=torch.Generator().manual_seed(seed), **common)
        self.calibration = [x for x, _ in itertools.islice(order, calibration_batches)]
        self.test = DataLoader(data.test, **common)

    def __call__(self, arch: Arch) -> dict:
        start = time.perf_counter()
        model = self.supernet.materialize(arch)
        recalibrate_batchnorm(model, self.calibration, self.device)
        result = evaluate(model, self.test, self.device)
        return {
            **arch.to_dict(), "top1": result["top1"], "top5": result["top5"],
            "firing_rate": result.get("firing_rate"),
            "params": sum(p.numel() for p in model.parameters()),
            "reference": self.space.reference is not None and arch == self.space.reference,
            "seconds": time.perf_counter() - start,
        }


def search(checkpoint: str, results: str | Path | None = None, *, strategy: str | None = None,
           subnets: int | None = None, calibration_batches: int | None = None, seed: int | None = None,
           device: str = "auto", console: Console | None = None) -> dict:
    """Evaluate subnets until ``subnets`` distinct ones are in ``results``; return a summary."""
    console = console or Console(stderr=True)
    state_cfg = Checkpoint.load(checkpoint).config.nas
    strategy = strategy or state_cfg.strategy
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown search strategy {strategy!r}; choose one of {STRATEGIES}")
    seed = state_cfg.seed if seed is None else seed
    evaluator = SubnetEvaluator(checkpoint, calibration_batches or state_cfg.calibration_batches, device, seed)
    space = evaluator.space
    target = min(subnets or state_cfg.subnets, space.size)
    path = Path(results) if results else runs.checkpoint_path(checkpoint).parent / runs.SEARCH
    rows = read_results(path)
    done = {_key(Arch.from_dict(r)): r for r in rows}
    if rows:
        console.print(f"resuming {path}: {len(done)} subnets already evaluated")

    def record(arch: Arch) -> dict:
        row = evaluator(arch)
        append_text(path, json.dumps(row) + "\n", "the search results")
        done[_key(arch)] = row
        return row

    proposals, tell_reference = _proposals(strategy, space, seed, done)
    with Progress(TextColumn("search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("", total=target, completed=min(len(done), target), info="")
        if space.reference is not None and _key(space.reference) not in done:
            reference = record(space.reference)
            tell_reference(reference)
        while len(done) < target:
            arch, tell = next(proposals)
            row = done.get(_key(arch)) or record(arch)
            tell(row["top1"])
            progress.update(task, completed=len(done), info=f"best {max(r['top1'] for r in done.values()):.2f}%")
    return summarise(list(done.values()), path)


def _proposals(strategy: str, space, seed: int, done: dict):
    """A generator of ``(arch, tell)`` (the next subnet to look at and how to report its accuracy),
    and ``tell_result(row)``, which hands the sampler a result it did not propose (the reference)."""
    if strategy == "random":
        def random_archs():
            rng = random.Random(seed)
            while True:
                arch = space.sample(rng)
                if _key(arch) not in done:
                    yield arch, lambda value: None

        return random_archs(), lambda row: None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    dists = {}
    for i, (chs, deps) in enumerate(zip(space.channels, space.depths)):
        dists[f"channels{i + 1}"] = optuna.distributions.CategoricalDistribution(chs)
        dists[f"depth{i + 1}"] = optuna.distributions.CategoricalDistribution(deps)

    def tell_result(row: dict) -> None:
        params = {f"channels{i + 1}": c for i, c in enumerate(row["channels"])}
        params.update({f"depth{i + 1}": d for i, d in enumerate(row["depths"])})
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=row["top1"]))

    for row in done.values():  # what earlier runs found informs the sampler
        tell_result(row)

    def tpe_archs():
        while True:
            trial = study.ask(dists)
            n = space.num_stages
            arch = Arch(tuple(trial.params[f"channels{i + 1}"] for i in range(n)),
                        tuple(trial.params[f"depth{i + 1}"] for i in range(n)))
            yield arch, lambda value, trial=trial: study.tell(trial, value)

    return tpe_archs(), tell_result


def summarise(rows: list[dict], path: Path) -> dict:
    ranked = sorted(rows, key=lambda r: r["top1"], reverse=True)
    reference = next((i for i, r in enumerate(ranked) if r.get("reference")), None)
    return {
        "results": str(path), "evaluated": len(rows), "best": ranked[0] if ranked else None,
        "reference": ranked[reference] if reference is not None else None,
        "reference_rank": None if reference is None else reference + 1,
        "top1_range": [ranked[-1]["top1"], ranked[0]["top1"]] if ranked else None,
    }
