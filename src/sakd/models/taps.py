"""Read intermediate features of any registered model without editing its code.

``FeatureExtractor(model, level="stage", position="after")`` registers forward hooks on the
activations at each stage (or block) end once; every call returns ``(logits, features)``.
``position="before"`` reads the activation's input (pre-spike / pre-ReLU), ``"after"`` its output
(spikes / post-ReLU). Features of a spiking model come back shaped ``[T, B, C, H, W]``; an ANN's
``[B, C, H, W]`` (or ``[T, B, C, H, W]`` when it was given frames).

``time_mean=True`` (for a spiking model whose features are read only through their mean over time,
as SAKD's eq. 8 reads them) gives each feature as that mean, ``[B, C, H, W]``, taken as the layer
runs, so no ``[T, B, ...]`` tap outlives its layer; and its gradient waits at the size of one
timestep until backward reaches the layer, where it joins the layer's own gradient (torch's mean
would make the whole ``[T, B, ...]`` gradient at the loss and hold it through the backward of every
layer after the tap). The values are those of ``f.mean(0)`` bit for bit, and so are the gradients
where the tapped tensor feeds one layer besides the tap; where it feeds two (a ResNet block's output
spikes), they differ by the rounding of the sum's order (``tests/test_distill.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.models.base import TapPoint, TwinModel

LEVELS = ("stage", "block")
POSITIONS = ("before", "after")


class _Waiting:
    """A tap mean's gradient, ``[B, ...]``, from the loss's backward until the tapped tensor's own."""

    def __init__(self, steps: int):
        self.steps, self.grad = steps, None

    def join(self, grad: torch.Tensor) -> torch.Tensor:
        """The tapped tensor's gradient ``[T·B, ...]`` plus the mean's ``grad / T`` at each timestep."""
        if self.grad is None:
            return grad
        mine, self.grad = self.grad / self.steps, None
        return (grad.unflatten(0, (self.steps, -1)) + mine).flatten(0, 1)


class _TimeMean(torch.autograd.Function):
    """The mean over T of a time-folded ``[T·B, ...]`` tensor; its backward hands the gradient to
    :class:`_Waiting` (joined by a hook on the tensor, which autograd calls when backward reaches
    the tensor) instead of making ``[T·B, ...]`` now."""

    @staticmethod
    def forward(ctx, f, steps, waiting):
        ctx.waiting, ctx.shape = waiting, f.shape
        return f.unflatten(0, (steps, -1)).mean(0)

    @staticmethod
    def backward(ctx, grad):
        waiting = ctx.waiting
        waiting.grad = grad if waiting.grad is None else waiting.grad + grad
        # the tensor's gradient along this edge: zeros that take no memory (a 0-d tensor expanded),
        # so that the tensor has a gradient for the hook to join even where the tap is its only reader
        return grad.new_zeros(()).expand(ctx.shape), None, None


def tap_mean(f: torch.Tensor, steps: int) -> torch.Tensor:
    """``f.unflatten(0, (steps, -1)).mean(0)``, its gradient joining ``f``'s where ``f`` has one."""
    if not (torch.is_grad_enabled() and f.requires_grad):
        return f.unflatten(0, (steps, -1)).mean(0)
    waiting = _Waiting(steps)
    f.register_hook(waiting.join)
    return _TimeMean.apply(f, steps, waiting)


class FeatureExtractor(nn.Module):
    def __init__(self, model: TwinModel, level: str = "stage", position: str = "after", time_mean: bool = False):
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"unknown tap level {level!r}; choose one of {LEVELS}")
        if position not in POSITIONS:
            raise ValueError(f"unknown tap position {position!r}; choose one of {POSITIONS}")
        self.model = model
        self.level, self.position = level, position
        self.time_mean = bool(time_mean) and model.spiking
        self.points: list[TapPoint] = model.tap_points(level)
        self._store: list[torch.Tensor] | None = None
        self._frames = 1
        self._handles = [
            (p.output or p.activation if position == "after" else p.activation).register_forward_hook(self._hook)
            for p in self.points
        ]

    @property
    def channels(self) -> list[int]:
        return [p.channels for p in self.points]

    def _hook(self, module, inputs, output):
        if self._store is not None:
            f = inputs[0] if self.position == "before" else output
            self._store.append(tap_mean(f, self._frames) if self.time_mean else f)

    def forward(self, x: torch.Tensor, timesteps: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(logits, features)``; with ``timesteps`` the logits of every timestep, ``[T, B, K]``."""
        frames = x.shape[0] if x.dim() == 5 else (self.model.timesteps if self.model.spiking else 1)
        self._store, self._frames = [], frames
        try:
            logits = self.model.forward_timesteps(x) if timesteps else self.model(x)
            feats = self._store
        finally:
            self._store = None
        if (x.dim() == 5 or self.model.spiking) and not self.time_mean:
            feats = [f.unflatten(0, (frames, -1)) for f in feats]
        return logits, feats

    def remove(self) -> None:
        """Detach the hooks; the model runs as before."""
        for h in self._handles:
            h.remove()
        self._handles = []
