"""Feature distances of SAKD's feature KD (paper eq. 9, Table 6): ``distill.features.distance``."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.registry import Registry

DISTANCES: Registry = Registry("feature distance", keys=("distill.features.distance",), listed=("losses",),
                               training_only=True)


@DISTANCES.register()
def l2(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element (paper eq. 9)"""
    return F.mse_loss(fs, ft)


@DISTANCES.register()
def l1(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every element (Table 6)"""
    return F.l1_loss(fs, ft)


@DISTANCES.register()
def l2_normalized(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between per-sample unit-normalised feature maps, batch mean (in [0, 4])"""
    fs = F.normalize(fs.flatten(1), dim=1)
    ft = F.normalize(ft.flatten(1), dim=1)
    return (fs - ft).pow(2).sum(1).mean()
