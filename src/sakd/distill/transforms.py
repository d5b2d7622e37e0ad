"""Feature transforms that bring SNN and ANN features into one space (paper eq. 8, Table 5).

Each transform takes the student's features averaged over time, ``[B, C_s, H, W]``, and the
teacher's, ``[B, C_t, H, W]``, and returns the pair to compare.

* ``conv``: ``BN(Conv1x1(F_s))`` on the student (trainable, maps C_s to C_t), teacher unchanged.
* ``none``: both unchanged (C_s must equal C_t).
* ``norm``: both normalised per channel without learnable parameters (normalized feature
  distillation); C_s must equal C_t.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sakd.errors import ConfigError
from sakd.registry import Registry

# builders (student channels, teacher channels) -> module(fs, ft) -> (fs', ft')
TRANSFORMS: Registry = Registry("feature transform", keys=("distill.features.transform",), listed=("losses",),
                                training_only=True)


class ConvTransform(nn.Module):
    def __init__(self, cs: int, ct: int):
        super().__init__()
        self.conv = nn.Conv2d(cs, ct, 1, bias=False)
        self.bn = nn.BatchNorm2d(ct)

    def forward(self, fs, ft):
        # a student narrower than this transform (a NAS subnet) uses its leading input channels
        weight = self.conv.weight if fs.shape[1] == self.conv.in_channels else self.conv.weight[:, : fs.shape[1]]
        return self.bn(F.conv2d(fs, weight)), ft


class IdentityTransform(nn.Module):
    def forward(self, fs, ft):
        return fs, ft


class NormTransform(nn.Module):
    """Standardise each channel over batch and space (BatchNorm statistics, no affine, no state)."""

    def forward(self, fs, ft):
        return _standardise(fs), _standardise(ft)


def _standardise(f: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(f, None, None, training=True, eps=1e-5)


def make_transform(kind: str, cs: int, ct: int) -> nn.Module:
    return TRANSFORMS.get(kind)(cs, ct)


def _equal_channels(kind: str, cs: int, ct: int) -> None:
    if cs != ct:
        raise ConfigError(
            f"feature transform {kind!r} needs equal channels, but the student has {cs} and the "
            f"teacher {ct} at one tap; use distill.features.transform=conv"
        )


@TRANSFORMS.register()
def conv(cs: int, ct: int) -> nn.Module:
    """BN(Conv1x1(F_s)) on the student, teacher unchanged (paper eq. 8; maps C_s to C_t)"""
    return ConvTransform(cs, ct)


@TRANSFORMS.register()
def none(cs: int, ct: int) -> nn.Module:
    """Both unchanged (C_s = C_t)"""
    _equal_channels("none", cs, ct)
    return IdentityTransform()


@TRANSFORMS.register()
def norm(cs: int, ct: int) -> nn.Module:
    """Both standardised per channel, no parameters (normalized feature distillation)"""
    _equal_channels("norm", cs, ct)
    return NormTransform()
