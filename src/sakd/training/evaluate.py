"""Evaluation: top-1/top-5 accuracy, loss, and (for SNNs) firing rates, of a model on a loader
(:func:`evaluate`, what training runs each epoch) or of a saved checkpoint on its data set's test
split (:func:`evaluate_checkpoint`, ``sakd eval``)."""

from __future__ import annotations

import contextlib

import torch
from rich.console import Console
from rich.table import Table
from torch.nn import functional as F
from torch.utils.data import DataLoader

from sakd.data import open_data
from sakd.data.holdout import test_split
from sakd.errors import ConfigError
from sakd.models import checkpoint as ckpt_io
from sakd.models.base import TwinModel
from sakd.neurons import FiringRateMonitor
from sakd.neurons.firing import LOW_RATE
from sakd.training.distributed import DistContext, all_reduce_sum
from sakd.training.metrics import topk_correct
from sakd.training.run_folder import Checkpoint, history_summary
from sakd.training.runtime import place, resolve_amp, resolve_device, resolve_workers


@torch.no_grad()
def evaluate(model, loader, device: torch.device, amp_dtype: torch.dtype | None = None,
             ctx: DistContext | None = None, low_rate: float = LOW_RATE) -> dict:
    """Accuracy (in %) and mean cross-entropy over ``loader``; firing rates if the model spikes,
    and ``firing_warning`` where it barely fires (:meth:`FiringRateMonitor.silence`, mean rate
    below ``low_rate``). Under torchrun each process evaluates its shard and the counts are summed
    over processes."""
    ctx = ctx or DistContext()
    was_training = model.training
    model.eval()
    monitor = FiringRateMonitor(model)
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.long, device=device)
    top5 = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    with monitor, autocast:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            c1, c5 = topk_correct(logits, y)
            top1 += c1
            top5 += c5
            n += y.shape[0]
    model.train(was_training)
    totals = all_reduce_sum(torch.stack([loss_sum, top1.double(), top5.double(),
                                         torch.tensor(n, dtype=torch.float64, device=device)]), ctx)
    loss_sum, top1, top5, n = totals[0], totals[1], totals[2], int(totals[3].item())
    if ctx.enabled:
        monitor.combine(lambda t: all_reduce_sum(t, ctx))
    if n == 0:
        raise ValueError("the evaluation data set is empty")
    result = {
        "top1": 100.0 * top1.item() / n,
        "top5": 100.0 * top5.item() / n,
        "loss": loss_sum.item() / n,
        "samples": n,
    }
    rate = monitor.mean_rate()
    if rate is not None:
        result["firing_rate"] = rate
        result["layer_firing_rates"] = monitor.rates()
        warning = monitor.silence(low_rate)
        if warning:
            result["firing_warning"] = warning
    return result


@torch.no_grad()
def evaluate_timesteps(model, loader, device: torch.device, steps: list[int],
                       amp_dtype: torch.dtype | None = None) -> dict[int, dict]:
    """Top-1/top-5 and cross-entropy of an SNN read out after each of ``steps`` timesteps: the
    mean of its first ``t`` timesteps' logits, from one run of ``max(steps)`` timesteps (or the
    input's frames). A spiking network is causal (timestep ``t`` reads the inputs up to ``t``), so
    this is what the network deployed at ``T = t`` computes (tested against such runs); a ``t``
    beyond the model's own T runs it longer on static images (direct encoding repeats them). On
    event frames the readout after ``t`` sees the first ``t`` frames of each recording, not the
    recording re-binned into ``t`` frames."""
    steps = sorted(set(steps))
    was_training, own = model.training, model.timesteps
    model.eval()
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext())
    sums = {t: torch.zeros(3, dtype=torch.float64, device=device) for t in steps}
    n = 0
    try:
        model.timesteps = max(own, steps[-1])
        with autocast:
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if x.dim() == 5 and x.shape[0] < steps[-1]:
                    raise ValueError(f"the data gives {x.shape[0]} frames per sample: no readout after "
                                     f"{steps[-1]} timesteps")
                if x.dim() == 5:
                    model.timesteps = x.shape[0]
                per_step = model.forward_timesteps(x).float()  # [T, B, K]
                prefix = per_step.cumsum(0)
                for t in steps:
                    logits = prefix[t - 1] / t
                    c1, c5 = topk_correct(logits, y)
                    sums[t] += torch.stack(
                        [F.cross_entropy(logits, y, reduction="sum").double(), c1.double(), c5.double()]
                    )
                n += y.shape[0]
    finally:
        model.timesteps = own
        model.train(was_training)
    if n == 0:
        raise ValueError("the evaluation data set is empty")
    return {t: {"top1": 100.0 * s[1].item() / n, "top5": 100.0 * s[2].item() / n, "loss": s[0].item() / n}
            for t, s in sums.items()}


def checkpoint_and_test_data(path, overrides: list[str] | None, command: str):
    """A checkpoint, its config changed by ``data.*`` overrides, and its data set (no augmentation)."""
    overrides = list(overrides or [])
    bad = [o for o in overrides if not o.startswith("data.")]
    if bad:
        raise ConfigError(f"sakd {command} only takes data.* overrides, got {bad}")
    checkpoint = Checkpoint.load(path, overrides)
    state, cfg = checkpoint.state, checkpoint.config
    data = open_data(cfg.data, augment=False)
    spec = state["spec"]
    if data.num_classes != spec.num_classes:
        raise ConfigError(
            f"the checkpoint predicts {spec.num_classes} classes but {cfg.data.name} has {data.num_classes}"
        )
    return state, cfg, data


def evaluate_checkpoint(path, overrides: list[str] | None = None, device: str = "auto",
                        timesteps: list[int] | str | None = None) -> dict:
    """Top-1/top-5, loss and firing rates of a checkpoint, on the data of its own config
    (changed by ``data.*`` overrides); with ``timesteps`` (a list, or ``"all"``: 1 to the
    model's T) also an SNN's accuracy read out after each of those timesteps (``by_timesteps``)."""
    state, cfg, data = checkpoint_and_test_data(path, overrides, "eval")
    spec = state["spec"]
    if timesteps is not None:
        if not spec.spiking:
            raise ConfigError(f"--timesteps: {state['path']} is an ANN; it has no timesteps")
        timesteps = list(range(1, spec.timesteps + 1)) if timesteps == "all" else list(timesteps)
        if data.frames and max(timesteps) > data.frames:
            raise ConfigError(f"--timesteps {max(timesteps)}: {cfg.data.name} gives {data.frames} frames per sample")
    dev = resolve_device(device, setting="--device")
    model, _ = ckpt_io.model_from_checkpoint(state)
    test = test_split(data.test, cfg.data.test_subset)  # what the run evaluated (or an override says)
    loader = DataLoader(test, batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
                        num_workers=resolve_workers(cfg.data.num_workers), collate_fn=data.collate_fn)
    if timesteps is not None and not isinstance(model, TwinModel):
        raise ConfigError(f"--timesteps needs a sakd twin model (TwinModel); {spec.name} is {type(model).__name__}")
    model, amp = place(model, dev, cfg.run.channels_last), resolve_amp(cfg.run.amp, dev)
    result = evaluate(model, loader, dev, amp, low_rate=cfg.run.low_firing_rate)
    if timesteps is not None:
        by = evaluate_timesteps(model, loader, dev, timesteps, amp)
        result["by_timesteps"] = {str(t): r for t, r in by.items()}
        result["frames"] = data.frames or None  # event data: a readout after t frames sees the first t
    return {"checkpoint": state["path"], "model": spec.name, "spiking": spec.spiking,
            "timesteps": spec.timesteps if spec.spiking else None,
            "data": cfg.data.name, "split": "test", "split_size": len(data.test),
            "test_subset": cfg.data.test_subset if len(test) < len(data.test) else None,
            "epoch": state["epoch"], **result, "run": history_summary(state.get("history", []))}


def print_report(result: dict, console: Console | None = None) -> None:
    console = console or Console()
    kind = f"SNN, T={result['timesteps']}" if result["spiking"] else "ANN"
    images = (f"{result['samples']} of its {result['split_size']} images (data.test_subset={result['test_subset']}, "
              "stratified, as the run evaluated; data.test_subset=null for all)"
              if result.get("test_subset") else f"{result['samples']} images")
    console.print(f"{result['checkpoint']}: {result['model']} ({kind}), epoch {result['epoch']}, "
                  f"{result['data']} test split, {images}", highlight=False)
    console.print(f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  loss {result['loss']:.4f}")
    run = result["run"]
    if run["final_top1"] is not None:
        line = (f"its run: best test top-1 {run['best_top1']:.2f}% (epoch {run['best_epoch']}), "
                f"final {run['final_top1']:.2f}% (epoch {run['final_epoch']})")
        if "selected_top1" in run:
            line += f", validation selects epoch {run['selected_epoch']}: {run['selected_top1']:.2f}%"
        console.print(line)
    if "by_timesteps" in result:
        what = (
            "the first T frames of each recording (not the recording re-binned into T frames)"
            if result.get("frames")
            else "deployed at fewer (or more) timesteps"
        )
        table = Table("read out after T =", "top-1", "top-5", "loss", title=what)
        for t, r in result["by_timesteps"].items():
            table.add_row(t, f"{r['top1']:.2f}%", f"{r['top5']:.2f}%", f"{r['loss']:.4f}")
        console.print(table)
    if "firing_rate" in result:
        console.print(f"mean firing rate {result['firing_rate']:.4f}")
        table = Table("layer", "firing rate")
        for name, rate in result["layer_firing_rates"].items():
            table.add_row(name, f"{rate:.4f}")
        console.print(table)
    if "firing_warning" in result:
        console.print(f"[yellow]warning[/]: {result['firing_warning']}", highlight=False, soft_wrap=True)
