"""Surrogate gradients for the Heaviside spike function (paper eq. 4 and common alternatives).

The forward pass of a spike is always the exact step ``Θ(x) = 1 if x >= 0 else 0`` with
``x = U - V_th``; a surrogate only replaces its derivative in the backward pass.
"""

from __future__ import annotations

import math
import torch

from sakd.errors import ConfigError
from sakd.registry import Registry


class Surrogate:
    """Derivative ``dΘ/dx`` used in place of the Dirac delta. Subclasses implement :meth:`grad`;
    register one with ``@SURROGATES.register("name")``."""

    def grad(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


SURROGATES: Registry[type[Surrogate]] = Registry("surrogate", keys=("model.neuron.surrogate",),
                                                          listed=("surrogates",))


@SURROGATES.register("triangle")
class Triangle(Surrogate):
    """Paper eq. 4: ``max(0, 1 - |x| / width) / width`` (``width=1`` gives ``max(0, 1 - |x|)``)."""

    def __init__(self, width: float = 1.0):
        self.width = float(width)

    def grad(self, x):
        return (1.0 - x.abs() / self.width).clamp_min(0.0) / self.width


@SURROGATES.register("sigmoid")
class Sigmoid(Surrogate):
    """Derivative of ``sigmoid(alpha * x)``: ``alpha * σ(αx)(1 - σ(αx))`` (SpikingJelly's default, α=4)."""

    def __init__(self, alpha: float = 4.0):
        self.alpha = float(alpha)

    def grad(self, x):
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)


@SURROGATES.register("atan")
class ATan(Surrogate):
    """Derivative of ``atan(π/2 · αx)/π + 1/2``: ``α / (2 (1 + (π/2 · αx)²))`` (α=2)."""

    def __init__(self, alpha: float = 2.0):
        self.alpha = float(alpha)

    def grad(self, x):
        return self.alpha / 2.0 / (1.0 + (math.pi / 2.0 * self.alpha * x) ** 2)


@SURROGATES.register("rectangle")
class Rectangle(Surrogate):
    """Box of unit area: ``1/width`` where ``|x| < width/2``, else 0 (STBP)."""

    def __init__(self, width: float = 1.0):
        self.width = float(width)

    def grad(self, x):
        return (x.abs() < self.width / 2.0).to(x.dtype) / self.width


def get_surrogate(spec: str | Surrogate | dict) -> Surrogate:
    """Build a surrogate from a name (``"triangle"``), an instance, or ``{"name": ..., **params}``."""
    if isinstance(spec, Surrogate):
        return spec
    params: dict = {}
    if isinstance(spec, dict):
        params = dict(spec)
        spec = params.pop("name", None)
    if not isinstance(spec, str):
        raise SURROGATES.unknown(spec)
    try:
        return SURROGATES.get(spec.lower())(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for surrogate {spec!r}: {exc}") from None


class SpikeFunction(torch.autograd.Function):
    """``Θ(x)`` forward, ``surrogate.grad(x)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None


def spike(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """Heaviside spike of ``x = U - V_th`` with a surrogate gradient (where a gradient is asked
    for: otherwise plain tensor operations, which exporters trace like any other)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return SpikeFunction.apply(x, surrogate)
    return (x >= 0).to(x.dtype)
