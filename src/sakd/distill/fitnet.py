"""FitNet hints: Romero et al. (2015), "FitNets: Hints for thin deep nets" (ICLR).

A regressor maps the student's guided layer to the teacher's hint layer and the squared error
between them is minimised. Romero et al. train the hint first (stage 1) and then the whole
student with KD (stage 2); like the common single-stage reimplementations (mdistiller,
torchdistill), this term adds the hint loss to the other terms from the first step on.

Choices where the paper leaves room: the hint is the middle tap of ``distill.features`` (Romero
et al. guide a middle layer; ``taps`` picks any other, several are summed); the regressor is a
3x3 convolution and BatchNorm (a convolutional regressor, as the paper's convolutional variant,
without a final ReLU so that pre-spike features may be negative); the distance is the mean
squared error over every element; the SNN's feature is averaged over time first (as SAKD's
eq. 8). Typical weight: 100 with this mean-reduced error.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, pick_taps, time_mean


@LOSSES.register("fitnet")
class FitNet(LossTerm):
    """FitNet hints (Romero et al. 2015): MSE(regressor(F_s), F_t) at the middle tap (taps: any)"""

    needs_teacher = True
    needs_features = True
    feature_timesteps = False  # the student's features through time_mean only

    def __init__(self, student_channels: list[int], teacher_channels: list[int], taps: list[int] | None = None):
        super().__init__()
        self.taps = pick_taps("fitnet", taps, len(student_channels), [len(student_channels) // 2])
        self.regressors = nn.ModuleList(
            nn.Sequential(nn.Conv2d(student_channels[i], teacher_channels[i], 3, padding=1, bias=False),
                          nn.BatchNorm2d(teacher_channels[i]))
            for i in self.taps
        )

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        total = 0.0
        for i, regressor in zip(self.taps, self.regressors):
            fs, ft = time_mean(inputs.student_features[i]), time_mean(inputs.teacher_features[i])
            total = total + F.mse_loss(regressor(fs), ft)
        return total
