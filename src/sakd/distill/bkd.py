"""Blurred KD of BKDSNN: Xu, You, Guo, Wang, He (2024), "BKDSNN: Enhancing the performance of
learning-based spiking neural networks training with blurred knowledge distillation" (ECCV).

The student's feature right before the classifier is randomly blurred (a random mask drops whole
channels of each sample), a small block restores it (3x3 conv, ReLU, 3x3 conv) and the restored
feature regresses the ANN's. The paper combines it with logits KD (add ``logit_kd`` beside it).

As in the authors' code: a 1x1 convolution first aligns the channels where they differ; each
(sample, channel) is dropped with probability ``mask_ratio`` (0.15); the teacher's feature is
rescaled to the student's maximum (``rescale_teacher``). Choices: the SNN's feature is averaged
over time first (as SAKD's eq. 8); the rescaling factor carries no gradient (it normalises the
target); the error is the mean over every element, where the authors' code sums it over C·H·W
and divides by the batch with weight 7e-5: the same loss is weight = 7e-5 · C·H·W here (about 2.3
for ResNet-19's last stage, 512·8·8). The default tap is the last of ``distill.features``.
The mask draws from :func:`~sakd.randomness.step_generator` (seeded by the step's place in the
run, so a resumed run draws the same masks).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, pick_taps, time_mean
from sakd.randomness import step_generator


@LOSSES.register("bkd")
class BlurredKD(LossTerm):
    """Blurred KD (BKDSNN, Xu et al. 2024): mask student channels at random, restore, regress the teacher's feature"""

    needs_teacher = True
    needs_features = True
    feature_timesteps = False  # the student's features through time_mean only

    def __init__(self, student_channels: list[int], teacher_channels: list[int], mask_ratio: float = 0.15,
                 rescale_teacher: bool = True, taps: list[int] | None = None):
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
        self.mask_ratio, self.rescale_teacher = float(mask_ratio), bool(rescale_teacher)
        self.taps = pick_taps("bkd", taps, len(student_channels), [-1])
        self.align = nn.ModuleList(
            nn.Conv2d(student_channels[i], teacher_channels[i], 1) if student_channels[i] != teacher_channels[i]
            else nn.Identity() for i in self.taps)
        self.restore = nn.ModuleList(
            nn.Sequential(nn.Conv2d(teacher_channels[i], teacher_channels[i], 3, padding=1), nn.ReLU(),
                          nn.Conv2d(teacher_channels[i], teacher_channels[i], 3, padding=1)) for i in self.taps)

    def blur(self, f: torch.Tensor) -> torch.Tensor:
        """Drop each (sample, channel) of ``f`` with probability ``mask_ratio``."""
        draw = torch.rand(f.shape[0], f.shape[1], 1, 1, device=f.device, generator=step_generator(f.device))
        keep = draw >= self.mask_ratio
        return f * keep.to(f.dtype)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        total = 0.0
        for i, align, restore in zip(self.taps, self.align, self.restore):
            fs = align(time_mean(inputs.student_features[i]))
            ft = time_mean(inputs.teacher_features[i])
            if self.rescale_teacher:
                ft = ft / ft.max().clamp_min(1e-12) * fs.detach().max()
            total = total + F.mse_loss(restore(self.blur(fs)), ft)
        return total
