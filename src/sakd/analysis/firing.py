"""Firing rates of a spiking model: the fraction of neuron-timesteps that emit a spike."""

from __future__ import annotations

import torch
from torch import nn

from sakd.neurons import LIF


class FiringRateMonitor:
    """Count spikes of every LIF layer while active (a context manager).

    ``rates()`` gives each layer's rate; ``mean_rate()`` the rate over all neuron-timesteps of the
    network (layers weighted by their size). Counting stays on the device until read.
    """

    def __init__(self, model: nn.Module):
        self.layers = {n: m for n, m in model.named_modules() if isinstance(m, LIF)}
        self._handles: list = []
        self.reset()

    def reset(self) -> None:
        self.spikes: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {n: 0 for n in self.layers}

    def _hook(self, name: str):
        def hook(module, inputs, output):
            s = output.detach().sum(dtype=torch.float64)
            self.spikes[name] = self.spikes[name] + s if name in self.spikes else s
            self.counts[name] += output.numel()

        return hook

    def __enter__(self) -> "FiringRateMonitor":
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def rates(self) -> dict[str, float]:
        return {n: float(self.spikes[n]) / self.counts[n] for n in self.layers if self.counts[n]}

    def mean_rate(self) -> float | None:
        total = sum(self.counts.values())
        if not total:
            return None
        return float(sum(self.spikes.values())) / total
