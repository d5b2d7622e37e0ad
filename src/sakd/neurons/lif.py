"""Multi-step leaky integrate-and-fire neuron (paper eq. 1-3) with BPTT through a surrogate.

For each timestep ``t = 1..T`` (with ``V_0 = 0``)::

    H_t = λ · V_{t-1} + X_t          # charge (eq. 1)
    S_t = Θ(H_t - V_th)              # fire, Θ(0) = 1 (eq. 2)
    V_t = H_t · (1 - S_t)            # hard reset (eq. 3)

Two implementations give the same spikes and gradients:

* ``"reference"``: a plain loop that autograd differentiates; the ground truth in the tests.
* ``"fused"``: one autograd function over the whole sequence. Its forward keeps only the charges
  ``H`` (spikes are recomputed from them), and its backward runs the BPTT recursion by hand, so a
  layer stores one tensor instead of the loop's five per timestep.
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.neurons.surrogate import Surrogate, get_surrogate, spike

BACKENDS = ("fused", "reference")


def lif_reference(
    x: torch.Tensor, decay: float, threshold: float, surrogate: Surrogate, detach_reset: bool
) -> torch.Tensor:
    """Loop over ``x.shape[0]`` timesteps; autograd gives BPTT."""
    v = torch.zeros_like(x[0])
    spikes = []
    for x_t in x:
        h = decay * v + x_t
        s = spike(h - threshold, surrogate)
        v = h * (1.0 - (s.detach() if detach_reset else s))
        spikes.append(s)
    return torch.stack(spikes)


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, decay, threshold, surrogate, detach_reset):
        charges = torch.empty_like(x)
        spikes = torch.empty_like(x)
        v = torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            h = torch.add(x[t], v, alpha=decay) if t else x[t]
            charges[t] = h
            s = spikes[t]
            torch.ge(h, threshold, out=s)  # writes 0./1. in x's dtype
            v = h * (1.0 - s)
        ctx.save_for_backward(charges)
        ctx.cfg = (decay, threshold, surrogate, detach_reset)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        (charges,) = ctx.saved_tensors
        decay, threshold, surrogate, detach_reset = ctx.cfg
        grad_x = torch.empty_like(charges)
        grad_v = None  # dL/dV_t flowing back from step t+1
        for t in range(charges.shape[0] - 1, -1, -1):
            h = charges[t]
            u = h - threshold
            s = (u >= 0).to(h.dtype)
            grad_s = grad_spikes[t]
            if grad_v is None:
                grad_h = grad_s * surrogate.grad(u)
            else:
                if not detach_reset:  # dV_t/dS_t = -H_t
                    grad_s = grad_s - grad_v * h
                grad_h = grad_v * (1.0 - s) + grad_s * surrogate.grad(u)
            grad_x[t] = grad_h
            grad_v = grad_h * decay
        return grad_x, None, None, None, None


class LIF(nn.Module):
    """Multi-step LIF layer: ``[T, B, ...]`` currents to ``[T, B, ...]`` spikes (0./1., input dtype).

    Stateless between calls: the membrane starts at zero on every forward, so no reset is needed.

    Args:
        decay: leak factor λ of eq. 1 (0.5 in the paper).
        threshold: firing threshold V_th (1.0 in the paper).
        surrogate: name in :data:`sakd.neurons.SURROGATES`, a dict ``{"name": ..., **params}`` or a
            :class:`~sakd.neurons.surrogate.Surrogate`.
        detach_reset: stop the gradient through the reset term ``H_t · S_t``.
        backend: ``"fused"`` (default) or ``"reference"``; both give the same numbers.
    """

    def __init__(
        self,
        decay: float = 0.5,
        threshold: float = 1.0,
        surrogate: str | Surrogate | dict = "triangle",
        detach_reset: bool = False,
        backend: str = "fused",
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ConfigError(f"unknown LIF backend {backend!r}; choose one of {BACKENDS}")
        if not 0.0 <= float(decay) <= 1.0:
            raise ConfigError(f"LIF decay must lie in [0, 1], got {decay}")
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.surrogate = get_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF expects input shaped [T, B, ...], got shape {tuple(x.shape)}")
        args = (self.decay, self.threshold, self.surrogate, self.detach_reset)
        if self.backend == "reference":
            return lif_reference(x, *args)
        return _FusedLIF.apply(x, *args)

    def extra_repr(self) -> str:
        return (
            f"decay={self.decay}, threshold={self.threshold}, surrogate={self.surrogate!r}, "
            f"detach_reset={self.detach_reset}, backend={self.backend!r}"
        )
