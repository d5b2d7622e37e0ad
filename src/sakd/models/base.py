"""What ANN and SNN twins share: activations, time folding, input encoding and tap points.

A twin is one architecture built twice, with ``nn.ReLU`` (ANN) or a multi-step LIF (SNN) at every
activation. Activations own no parameters or buffers, so both builds have identical state dicts
and weights copy strictly either way.

Inside a spiking model every tensor is *time-folded*, ``[T*B, C, H, W]``: convolutions, BatchNorm
and pooling see one big batch, and each :class:`SpikeActivation` unfolds to ``[T, B, ...]`` only
for the neuron. Inputs:

* a static image ``[B, C, H, W]`` is encoded directly (the same image at every timestep). The stem
  (first conv + BN) of such an input is identical at every timestep, so it runs once on ``[B, ...]``
  and is repeated over T just before the first neuron.
* event frames ``[T, B, C, H, W]`` give one frame per timestep.

The logits are averaged over T. An ANN given frames sees them as T images and averages its logits
the same way, so an ANN teacher and an SNN student read the same ``[T, B, C, H, W]`` batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from sakd.neurons import NeuronSpec, SpikeActivation


@dataclass
class TapPoint:
    """One place whose activation input (before spike/ReLU) or output (after) can be read;
    ``output``, if set, is the module whose output "after" reads instead (a block that ends in
    something other than an activation, such as SEW's spike-element-wise connection)."""

    name: str
    activation: nn.Module
    channels: int
    output: nn.Module | None = None


class ResidualAdd(nn.Module):
    """A residual block's sum ``branch + shortcut``, a module so that hooks see it. ``replayable``:
    a pure function of its arguments, so ``run.memory: lean`` makes the sum (a neuron's input) again
    in backward instead of keeping it."""

    replayable = True

    def forward(self, branch: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return branch + shortcut


class MatMul(nn.Module):
    """``a @ b`` as a module, so that hooks see it: ``sakd analyze`` counts a spiking model's
    products of activations (a spiking transformer's attention) as it counts its layers."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class Mul(nn.Module):
    """``a * b`` (element-wise, broadcast) as a module, so that hooks see it: ``sakd analyze``
    counts a spiking transformer's masks (the Spike-driven Transformer's ``K ⊙ V`` and
    ``Q ⊙ SN(.)``) as :class:`MatMul`'s products."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class RepeatOverTime(nn.Module):
    """Direct encoding: the stem's output of static images, the same at every timestep,
    ``[B, ...] -> [frames*B, ...]`` (keeps the memory format, channels-last too, unlike
    ``repeat``). ``replayable`` as :class:`ResidualAdd`."""

    replayable = True

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        return torch.cat([h] * frames)


def mean_over_time(logits: torch.Tensor) -> torch.Tensor:
    """``[T, B, K] -> [B, K]``: the mean over the timesteps (the one timestep itself when T = 1)."""
    return logits[0] if logits.shape[0] == 1 else logits.mean(0)


class TwinModel(nn.Module):
    """Base of every registered model. Subclasses build layers with :meth:`act` (blocks take it as
    their activation factory) and implement :meth:`forward_stem` (up to, not including, the first
    activation), :meth:`forward_body` (the rest, returning per-sample logits) and :meth:`tap_points`."""

    def __init__(self, *, spiking: bool, timesteps: int, neuron: NeuronSpec | None):
        super().__init__()
        if spiking and (not isinstance(timesteps, int) or timesteps < 1):
            raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
        self.spiking = bool(spiking)
        self._timesteps = int(timesteps) if spiking else 1
        self.neuron = neuron or NeuronSpec()
        self.encode = RepeatOverTime()

    # -- construction helpers -------------------------------------------------------------
    def act(self, **overrides) -> nn.Module:
        """A fresh activation: the configured spiking neuron for the SNN, ReLU (or the neuron's own
        ANN form: QCFS's quantised clip) for the ANN (``overrides``: settings of this one neuron,
        e.g. ``threshold=0.5``)."""
        neuron = replace(self.neuron, **overrides) if overrides else self.neuron
        return SpikeActivation(self._timesteps, neuron) if self.spiking else neuron.ann_activation()

    # -- time ---------------------------------------------------------------------------------
    @property
    def timesteps(self) -> int:
        return self._timesteps

    @timesteps.setter
    def timesteps(self, value: int) -> None:
        if not self.spiking:
            raise AttributeError("an ANN has no timesteps")
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"timesteps must be a positive integer, got {value!r}")
        self._timesteps = value
        for m in self.modules():
            if isinstance(m, SpikeActivation):
                m.timesteps = value

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]``: the mean over time of :meth:`forward_timesteps` (the SNN's readout)."""
        return mean_over_time(self.forward_timesteps(x))

    def forward_timesteps(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every timestep, ``[T, B, K]`` (``T = 1`` for an ANN on images)."""
        if x.dim() == 5:  # frames [T, B, C, H, W]
            frames = x.shape[0]
            if self.spiking and frames != self._timesteps:
                raise ValueError(
                    f"input has {frames} frames but the model runs {self._timesteps} timesteps; "
                    f"set model.timesteps = {frames} or re-frame the data"
                )
            h = self.forward_stem(x.flatten(0, 1))
        elif x.dim() == 4:  # static images, direct encoding
            frames = self._timesteps
            h = self.forward_stem(x)
            if frames > 1:  # a stem may hand the body several tensors (GraphTwin)
                h = tuple(self.encode(t, frames) for t in h) if isinstance(h, tuple) else self.encode(h, frames)
        else:
            raise ValueError(
                f"expected images [B, C, H, W] or frames [T, B, C, H, W], got shape {tuple(x.shape)}"
            )
        return self.forward_body(h).unflatten(0, (frames, -1))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def tap_points(self, level: str = "stage") -> list[TapPoint]:  # pragma: no cover - abstract
        """Feature positions: the end of each ``"stage"`` or each ``"block"``."""
        raise NotImplementedError

    def recompute_units(self) -> list[nn.Module]:
        """The modules ``run.memory=min`` keeps only the input of and runs again in backward (its
        residual or transformer blocks), each called as a whole by the forward; none: no ``min``."""
        return []


def init_weights(model: nn.Module) -> None:
    """He init for convolutions, unit/zero BatchNorm (as torchvision's ResNet)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
