"""Temporal self-distillation: the SNN's own mean-over-time prediction teaches each timestep;
no ANN needed.

The self-distillation part of Yu, Zhao, Liu, Yang, Wang, Li, Wang (2025), "Efficient logit-based
knowledge distillation of deep spiking neural networks for full-range timestep deployment"
(ICML): the ensemble of the timesteps, ``z̄ = mean_t z_t``, is a better classifier than any one
timestep and serves as the teacher of each. The loss is ``(1/T) Σ_t τ² · KL(p_τ(z̄) ‖ p_τ(z_t))``.
Choice: ``z̄`` is a target, so it carries no gradient (stop-gradient), as a teacher's logits do.
``ensemble: correct`` is the authors' code (Intelli-Chip-Lab/snn_temporal_decoupling_distillation,
``make_teacher``) rather than the paper's equation: the mean of only the timesteps whose class is
the label, and zero logits (a uniform target) for a sample no timestep gets right; it reads the
labels' classes (not with mixup). The paper's settings: weight 0.5, τ = 3, beside ``timestep_ce``
and ``timestep_kd`` (weight 0.2, τ = 3). Related: TSSD (Zuo et al. 2024) builds its temporal
teacher from extra timesteps instead.
"""

from __future__ import annotations

import torch

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, soft_kl
from sakd.errors import ConfigError


@LOSSES.register("temporal_sd")
class TemporalSelfDistillation(LossTerm):
    """Temporal self-distillation (Yu et al. 2025): the mean-over-time logits teach each timestep, no teacher"""

    across_time = True

    def __init__(self, tau: float = 1.0, ensemble: str = "mean"):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if ensemble not in ("mean", "correct"):
            raise ValueError(
                f"ensemble must be 'mean' (the paper's) or 'correct' (the authors' code), got {ensemble!r}"
            )
        self.tau, self.ensemble = float(tau), ensemble
        self.hard_labels = ensemble == "correct"  # reads each label's class (refused with mixup)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        z = inputs.timestep_logits()  # [T, B, K]
        return soft_kl(z, self.teacher(z, inputs.target).unsqueeze(0).expand_as(z), self.tau)

    def teacher(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The ensemble ``[B, K]`` every timestep learns from (no gradient)."""
        z = z.detach()
        if self.ensemble == "mean":
            return z.mean(0)
        if target.dim() != 1:
            raise ConfigError("temporal_sd with ensemble: correct reads each label's class; data.mixup / data.cutmix "
                              "mix them (use ensemble: mean)")
        right = (z.argmax(-1) == target).to(z.dtype).unsqueeze(-1)  # [T, B, 1]
        return (z * right).sum(0) / right.sum(0).clamp_min(1)
