"""A network as a user writes it, with no sakd in it: the ``python:`` source's example and the
network of the ``cifar10/python_own_cnn_*`` recipes. Functional and in-place ReLUs, a residual
``+=`` and a global pool: the twin finds every activation (``docs/any-network.md``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return F.relu(out, inplace=True)


class OwnCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        layers, cin = [], in_channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(cin, width, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True), Residual(width)]
            cin = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def own_cnn(num_classes: int = 10, in_channels: int = 3, widths: list[int] = (64, 128, 256)) -> OwnCNN:
    """Three stages of a strided convolution and a residual block (``widths``: their channels)."""
    return OwnCNN(num_classes, in_channels, tuple(widths))
