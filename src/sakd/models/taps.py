"""Read intermediate features of any registered model without editing its code.

``FeatureExtractor(model, level="stage", position="after")`` registers forward hooks on the
activations at each stage (or block) end once; every call returns ``(logits, features)``.
``position="before"`` reads the activation's input (pre-spike / pre-ReLU), ``"after"`` its output
(spikes / post-ReLU). Features of a spiking model come back shaped ``[T, B, C, H, W]``; an ANN's
``[B, C, H, W]`` (or ``[T, B, C, H, W]`` when it was given frames).
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.models.base import TapPoint, TwinModel

LEVELS = ("stage", "block")
POSITIONS = ("before", "after")


class FeatureExtractor(nn.Module):
    def __init__(self, model: TwinModel, level: str = "stage", position: str = "after"):
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"unknown tap level {level!r}; choose one of {LEVELS}")
        if position not in POSITIONS:
            raise ValueError(f"unknown tap position {position!r}; choose one of {POSITIONS}")
        self.model = model
        self.level, self.position = level, position
        self.points: list[TapPoint] = model.tap_points(level)
        self._store: list[torch.Tensor] | None = None
        self._handles = [
            (p.output or p.activation if position == "after" else p.activation).register_forward_hook(self._hook)
            for p in self.points
        ]

    @property
    def channels(self) -> list[int]:
        return [p.channels for p in self.points]

    def _hook(self, module, inputs, output):
        if self._store is not None:
            self._store.append(inputs[0] if self.position == "before" else output)

    def forward(self, x: torch.Tensor, timesteps: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(logits, features)``; with ``timesteps`` the logits of every timestep, ``[T, B, K]``."""
        self._store = []
        try:
            logits = self.model.forward_timesteps(x) if timesteps else self.model(x)
            feats = self._store
        finally:
            self._store = None
        if x.dim() == 5 or self.model.spiking:
            frames = x.shape[0] if x.dim() == 5 else self.model.timesteps
            feats = [f.unflatten(0, (frames, -1)) for f in feats]
        return logits, feats

    def remove(self) -> None:
        """Detach the hooks; the model runs as before."""
        for h in self._handles:
            h.remove()
        self._handles = []
