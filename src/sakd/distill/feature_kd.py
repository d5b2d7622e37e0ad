"""Feature KD: SAKD's eq. 8-9 (and the options of Tables 5, 6 and 10).

For each tap of ``distill.features`` the student's feature, averaged over time (eq. 8), goes
through a feature transform (:mod:`sakd.distill.transforms`: ``conv`` = BN(Conv1x1), ``none``,
``norm``) and is compared with the teacher's by a distance (:mod:`sakd.distill.distances`:
``l2`` (eq. 9), ``l1``, ``l2_normalized``); the taps' weighted distances are summed (eq. 9 and the
official code) or averaged. It is the ``beta`` term of the shorthand; β may follow a schedule.
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.distill.distances import DISTANCES
from sakd.distill.terms import LOSSES, LossTerm, TermInputs, time_mean
from sakd.distill.transforms import make_transform
from sakd.errors import ConfigError


@LOSSES.register("feature_kd")
class FeatureKD(LossTerm):
    """Feature KD (SAKD eq. 8-9): distance(transform(mean_t F_s), F_t), summed (or averaged) over the taps"""

    needs_teacher = True
    needs_features = True
    feature_timesteps = False  # the student's features through time_mean only

    def __init__(self, student_channels: list[int], teacher_channels: list[int], transform: str = "conv",
                 distance: str = "l2", weights: list[float] | None = None, reduce: str = "sum"):
        super().__init__()
        if not student_channels:  # the objective checked that student and teacher have as many taps
            raise ConfigError("feature distillation (beta > 0) needs the channels of each tap")
        self.distance = DISTANCES.get(distance)
        self.transforms = nn.ModuleList(
            make_transform(transform, cs, ct) for cs, ct in zip(student_channels, teacher_channels, strict=True)
        )
        weights = list(weights) if weights else [1.0] * len(self.transforms)
        if len(weights) != len(self.transforms):
            raise ConfigError(
                f"distill.features.weights has {len(weights)} entries but there are {len(self.transforms)} feature taps"
            )
        self.weights = weights
        if reduce not in ("sum", "mean"):
            raise ConfigError(f"distill.features.reduce must be 'sum' or 'mean', got {reduce!r}")
        self.reduce = reduce

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        total = 0.0
        pairs = zip(self.transforms, self.weights, inputs.student_features, inputs.teacher_features, strict=True)
        for transform, weight, fs, ft in pairs:
            # [T, B, C, H, W] is averaged over time (eq. 8): the SNN's always, an ANN teacher's
            # when it was given event frames
            fs, ft = time_mean(fs), time_mean(ft)
            if fs.shape[0] != ft.shape[0] or fs.shape[2:] != ft.shape[2:]:
                raise ConfigError(
                    f"student feature {tuple(fs.shape)} and teacher feature {tuple(ft.shape)} "
                    "differ in batch or spatial size; teacher and student taps must align"
                )
            fs, ft = transform(fs, ft)
            total = total + weight * self.distance(fs, ft)
        return total / len(self.transforms) if self.reduce == "mean" else total
