"""Firing rates of a spiking model: the fraction of neuron-timesteps that emit a spike."""

from __future__ import annotations

import torch
from torch import nn

from sakd.neurons.base import SpikingNeuron

LOW_RATE = 0.01  # a mean firing rate below this is warned of (run.low_firing_rate)


def spiking_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The spiking layers of ``model`` by name (any :class:`SpikingNeuron`; a neuron inside a neuron
    is its part, not a layer of its own)."""
    layers: dict[str, nn.Module] = {}
    for name, module in model.named_modules():  # parents come first
        if isinstance(module, SpikingNeuron) and not any(name.startswith(f"{p}.") for p in layers):
            layers[name] = module
    return layers


class FiringRateMonitor:
    """Count spikes of every spiking layer (any :class:`SpikingNeuron`) while active (a context manager).

    ``rates()`` gives each layer's rate; ``mean_rate()`` the rate over all neuron-timesteps of the
    network (layers weighted by their size). Counting stays on the device until read.
    """

    def __init__(self, model: nn.Module):
        self.layers: dict[str, nn.Module] = spiking_layers(model)
        self._handles: list = []
        self.reset()

    def reset(self) -> None:
        self.spikes: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {n: 0 for n in self.layers}
        self.order: list[str] = []  # the layers in the order they first ran

    def _hook(self, name: str):
        def hook(module, inputs, output):
            out = output.detach()
            if not module.binary:  # graded spikes (QCFS's are worth θ): the rate counts the nonzero outputs
                out = out != 0
            # per-sample float32 sums (exact for spike counts below 2^24) then a float64 total: one fast pass
            # (float32 also for bf16/fp16 spikes, whose own sums would round)
            s = (out.sum(dim=tuple(range(1, out.dim())), dtype=torch.float32) if out.dim() > 1 else out).sum(
                dtype=torch.float64)
            if name not in self.spikes:
                self.order.append(name)
            self.spikes[name] = self.spikes[name] + s if name in self.spikes else s
            self.counts[name] += output.numel()

        return hook

    def __enter__(self) -> FiringRateMonitor:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def combine(self, reduce_sum) -> None:
        """Sum the counts over the processes of a distributed run: ``reduce_sum`` sums a tensor
        over them in place (the engine's all-reduce)."""
        if not self.layers:
            return
        device = next(iter(self.spikes.values())).device if self.spikes else "cpu"
        names = list(self.layers)
        spikes = torch.stack([self.spikes.get(n, torch.zeros((), dtype=torch.float64, device=device)) for n in names])
        counts = torch.tensor([self.counts[n] for n in names], dtype=torch.float64, device=device)
        reduce_sum(spikes)
        reduce_sum(counts)
        self.spikes = dict(zip(names, spikes))
        self.counts = {n: int(c) for n, c in zip(names, counts.tolist())}

    def rates(self) -> dict[str, float]:
        return {n: float(self.spikes[n]) / self.counts[n] for n in self.layers if self.counts[n]}

    def silence(self, low: float = LOW_RATE) -> str | None:
        """One line saying that the network barely fires, or None: the layers that gave no spike,
        whether the last spiking layer to run (the classifier's input in most networks) is one, and
        a mean rate below ``low`` (0 checks silent layers only)."""
        rates, mean = self.rates(), self.mean_rate()
        if mean is None:
            return None
        silent = [n for n, r in rates.items() if r == 0]
        last = self.order[-1] if self.order else None
        parts = []
        if mean < low:
            parts.append(f"the SNN barely fires: mean firing rate {mean:.4f} < {low:g} (run.low_firing_rate)")
        if silent:
            parts.append(f"{len(silent)} of {len(rates)} spiking layers gave no spike: {', '.join(silent)}")
        if last in silent:
            parts.append(f"the last to run, {last}, which feeds the classifier in most networks, gave none")
        return "; ".join(parts) or None

    def mean_rate(self) -> float | None:
        total = sum(self.counts.values())
        if not total:
            return None
        return float(sum(self.spikes.values())) / total
