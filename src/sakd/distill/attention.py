"""Attention transfer: Zagoruyko and Komodakis (2017), "Paying more attention to attention:
improving the performance of convolutional neural networks via attention transfer" (ICLR).

The spatial attention map of a feature ``F [B, C, H, W]`` is ``Q = mean_c |F_c|^p`` flattened and
normalised to unit L2 norm per sample; the loss is the squared distance between the student's and
the teacher's maps. Choices: p = 2 (the paper's), the squared difference averaged over batch and
positions and summed over the taps (the form of the widely used reimplementations, e.g.
mdistiller: typical weight 1000), every tap of ``distill.features`` unless ``taps`` picks some
(the paper uses the ends of the residual groups: ``distill.features.level=stage``); the SNN's
feature is averaged over time before its map is taken. No parameters, so channels may differ;
the spatial sizes must agree.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, pick_taps, time_mean
from sakd.errors import ConfigError


def attention_map(f: torch.Tensor, p: float) -> torch.Tensor:
    """``normalize(mean_c |f|^p)`` per sample: ``[B, C, H, W] -> [B, H*W]``."""
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


@LOSSES.register("at")
class AttentionTransfer(LossTerm):
    """Attention transfer (Zagoruyko & Komodakis 2017): squared distance of normalised spatial attention maps"""

    needs_teacher = True
    needs_features = True
    feature_timesteps = False  # the student's features through time_mean only

    def __init__(self, student_channels: list[int], teacher_channels: list[int], p: float = 2.0,
                 taps: list[int] | None = None):
        super().__init__()
        if p <= 0:
            raise ValueError(f"p must be > 0, got {p}")
        self.p = float(p)
        self.taps = pick_taps("at", taps, len(student_channels), list(range(len(student_channels))))

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        total = 0.0
        for i in self.taps:
            fs, ft = time_mean(inputs.student_features[i]), time_mean(inputs.teacher_features[i])
            if fs.shape[2:] != ft.shape[2:]:
                raise ConfigError(f"loss term 'at': tap {i} is {tuple(fs.shape[2:])} for the student and "
                                  f"{tuple(ft.shape[2:])} for the teacher; attention maps need one spatial size")
            total = total + (attention_map(fs, self.p) - attention_map(ft, self.p)).pow(2).mean()
        return total
