"""Evaluation: top-1/top-5 accuracy, loss, and (for SNNs) firing rates."""

from __future__ import annotations

import contextlib

import torch
from torch.nn import functional as F

from sakd.neurons import FiringRateMonitor
from sakd.neurons.firing import LOW_RATE
from sakd.training.distributed import DistContext, all_reduce_sum
from sakd.training.metrics import topk_correct


@torch.no_grad()
def evaluate(model, loader, device: torch.device, amp_dtype: torch.dtype | None = None,
             ctx: DistContext = DistContext(), low_rate: float = LOW_RATE) -> dict:
    """Accuracy (in %) and mean cross-entropy over ``loader``; firing rates if the model spikes,
    and ``firing_warning`` where it barely fires (:meth:`FiringRateMonitor.silence`, mean rate
    below ``low_rate``). Under torchrun each process evaluates its shard and the counts are summed
    over processes."""
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
    result = {"top1": 100.0 * top1.item() / n, "top5": 100.0 * top5.item() / n, "loss": loss_sum.item() / n, "samples": n}
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
                    sums[t] += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(), c1.double(), c5.double()])
                n += y.shape[0]
    finally:
        model.timesteps = own
        model.train(was_training)
    if n == 0:
        raise ValueError("the evaluation data set is empty")
    return {t: {"top1": 100.0 * s[1].item() / n, "top5": 100.0 * s[2].item() / n, "loss": s[0].item() / n}
            for t, s in sums.items()}
