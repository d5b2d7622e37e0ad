"""Distillation terms: logits KD (eq. 7) and feature distances (eq. 9, Table 6)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.errors import ConfigError


def logits_kd(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """``τ² · KL(p_τ^teacher ‖ p_τ^student)``, summed over classes and averaged over the batch."""
    log_ps = F.log_softmax(student / tau, dim=1)
    log_pt = F.log_softmax(teacher / tau, dim=1)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * tau * tau


def normalized_l2(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between per-sample unit-normalised feature maps, batch mean (in [0, 4])."""
    fs = F.normalize(fs.flatten(1), dim=1)
    ft = F.normalize(ft.flatten(1), dim=1)
    return (fs - ft).pow(2).sum(1).mean()


DISTANCES = {
    "l2": F.mse_loss,  # mean squared error, eq. 9
    "l1": F.l1_loss,
    "l2_normalized": normalized_l2,
}


def feature_distance(kind: str):
    if kind not in DISTANCES:
        raise ConfigError(f"unknown feature distance {kind!r}; choose one of {tuple(DISTANCES)}")
    return DISTANCES[kind]
