"""Temporal self-distillation: the SNN's own mean-over-time prediction teaches each timestep;
no ANN needed.

The self-distillation part of Yu, Zhao, Liu, Yang, Wang, Li, Wang (2025), "Efficient logit-based
knowledge distillation of deep spiking neural networks for full-range timestep deployment"
(ICML): the ensemble of the timesteps, ``z̄ = mean_t z_t``, is a better classifier than any one
timestep and serves as the teacher of each. The loss is ``(1/T) Σ_t τ² · KL(p_τ(z̄) ‖ p_τ(z_t))``.
Choice: ``z̄`` is a target, so it carries no gradient (stop-gradient), as a teacher's logits do.
Related: TSSD (Zuo et al. 2024) builds its temporal teacher from extra timesteps instead.
"""

from __future__ import annotations

import torch

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, soft_kl


@LOSSES.register("temporal_sd")
class TemporalSelfDistillation(LossTerm):
    """Temporal self-distillation (Yu et al. 2025): the mean-over-time logits teach each timestep, no teacher"""

    across_time = True

    def __init__(self, tau: float = 1.0):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        z = inputs.timestep_logits()  # [T, B, K]
        return soft_kl(z, z.mean(0, keepdim=True).detach().expand_as(z), self.tau)
