"""QCFS (Bu et al., ICLR 2022, "Optimal ANN-SNN conversion for high-accuracy and ultra-low-latency
spiking neural networks"): an ANN trained with the quantisation-clip-floor-shift activation runs as
an integrate-and-fire SNN with (nearly) its accuracy at a few timesteps.

* The ANN twin's activation (:class:`QCFSActivation`): ``θ · floor(clamp(x / θ, 0, 1) · L + 0.5) / L``
  with ``L`` quantisation steps and a threshold ``θ`` learned per layer (a scalar), the floor passed
  straight through in backward; the authors' code (putshua/ANN_SNN_QCFS, ``Models/layer.py``)
  clamps before the floor, as here, and starts ``θ`` at 8.
* The SNN twin's neuron (:class:`QCFS`, ``model.neuron.name=qcfs``): integrate-and-fire with soft
  reset, threshold ``θ`` and the membrane starting at ``θ/2``, each spike worth ``θ``: for a
  constant input and ``T = L`` timesteps its mean output is the activation's, exactly. It runs as
  ``θ · IF(x · (1/θ))`` with threshold 1 (scaled as SpikingJelly's converter scales: the same
  spikes), the half-threshold start added to the first timestep's input (the same recursion), on
  sakd's LIF kernels (λ = 1, soft reset), so the converted network trains on with surrogate
  gradients (conversion-initialised distillation), ``θ`` included. ``start``
  sets the initial membrane as a fraction of ``θ`` (0.5, QCFS's; 0 is the rate-coding
  converters' plain IF, SpikingJelly's default).

``θ`` is a scalar per layer, or one per channel (a converted ReLU network's ``--per-channel``
thresholds: a tensor ``[C]`` over the channel axis, dim 1 of ``[B, C, ...]``); a module takes the
shape of the ``θ`` it loads (:attr:`resizable`, in place, so an optimiser's reference stays valid).
``θ`` is a parameter of both twins under the same name (the ANN's activation is held as
``neuron`` by :class:`~sakd.neurons.base.ActivationSite`), so weights and thresholds copy either
way: a trained QCFS ANN *is* its converted SNN's weights.
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.neurons.base import NEURONS, SpikingNeuron
from sakd.neurons.lif import LIF


class _FloorThrough(torch.autograd.Function):
    """``floor`` forward, the identity backward (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def _theta(theta: float) -> nn.Parameter:
    if not float(theta) > 0:
        raise ConfigError(f"QCFS's initial threshold theta must be positive, got {theta}")
    return nn.Parameter(torch.tensor(float(theta)))


def over_channels(theta: torch.Tensor, x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``θ`` shaped to broadcast over ``x``: a scalar as it is, one per channel along ``channel_dim``."""
    if theta.dim() == 0:
        return theta
    if x.dim() <= channel_dim or x.shape[channel_dim] != theta.numel():
        raise ValueError(f"{theta.numel()} per-channel thresholds do not fit input shaped {tuple(x.shape)}")
    # in the input's dtype, as a scalar θ leaves it (bf16 under autocast)
    return theta.reshape(-1, *[1] * (x.dim() - channel_dim - 1)).to(x.dtype)


class Thresholded(nn.Module):
    """A module with a threshold ``θ`` that takes the shape of the ``θ`` it loads (a scalar or one
    per channel, ``[C]``), in place: the parameter object stays the one an optimiser holds. A
    one-element ``[1]`` (the authors' code's) loads into a scalar, as torch loads it."""

    resizable = ("theta",)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "theta")
        if stored is not None and stored.shape != self.theta.shape and (stored.dim() == 0 or stored.numel() > 1):
            self.theta.data = torch.empty(stored.shape, dtype=self.theta.dtype, device=self.theta.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class QCFSActivation(Thresholded):
    """The ANN side of a QCFS twin: ``θ · floor(clamp(x/θ, 0, 1) · L + 0.5) / L``."""

    def __init__(self, levels: int = 8, theta: float = 8.0):
        super().__init__()
        if not isinstance(levels, int) or levels < 1:
            raise ConfigError(f"QCFS's quantisation steps (levels) must be a whole number >= 1, got {levels!r}")
        self.levels = levels
        self.theta = _theta(theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = over_channels(self.theta, x, 1)
        clipped = torch.clamp(x / theta, 0.0, 1.0)
        return _FloorThrough.apply(clipped * self.levels + 0.5) / self.levels * theta

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


@NEURONS.register("qcfs")
class QCFS(Thresholded, SpikingNeuron):
    """Integrate-and-fire, soft reset, threshold θ learned per layer, membrane from θ/2: QCFS's converted SNN (Bu et al. 2022)"""  # noqa: E501

    binary = False  # a spike is worth θ

    def __init__(self, levels: int = 8, theta: float = 8.0, start: float = 0.5, surrogate="triangle",
                 detach_reset: bool = False, backend: str = "auto"):
        super().__init__()
        QCFSActivation(levels, theta)  # the same checks as the ANN side's
        if not 0.0 <= float(start) < 1.0:
            raise ConfigError(f"QCFS's initial membrane (start, a fraction of θ) must lie in [0, 1), got {start}")
        self.levels, self.start = levels, float(start)
        self.theta = _theta(theta)
        self.integrate = LIF(decay=1.0, threshold=1.0, surrogate=surrogate, detach_reset=detach_reset, reset="soft",
                             backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"QCFS expects input shaped [T, B, ...], got shape {tuple(x.shape)}")
        theta = over_channels(self.theta, x, 2)  # [T, B, C, ...]
        u = x * torch.reciprocal(theta)  # as SpikingJelly's converter scales (x · (1/θ)): the same spikes
        if self.start:  # the membrane starts at start·θ (θ/2: QCFS's shift)
            u = torch.cat([u[:1] + self.start, u[1:]])
        return self.integrate(u) * theta

    def step(self, x: torch.Tensor, state):
        theta = over_channels(self.theta, x, 1)  # [B, C, ...]
        u = x * torch.reciprocal(theta) + (self.start if state is None else 0.0)
        s, v = self.integrate.step(u, state)
        return s * theta, v

    def ann_twin(self) -> nn.Module:
        twin = QCFSActivation(self.levels)
        twin.load_state_dict({"theta": self.theta.detach()})  # θ, its shape too
        return twin

    def extra_repr(self) -> str:
        return f"levels={self.levels}, start={self.start}"
