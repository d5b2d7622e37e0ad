"""Weight-sharing layers: each runs with the leading slice of its weights (BigNAS-style).

A convolution with ``C_in`` input channels and ``out_channels`` outputs uses
``weight[:out_channels, :C_in]``; BatchNorm uses the first ``C`` entries of its affine parameters
and running statistics (updating those entries in place); a linear layer the first ``C_in``
columns. At full width they are the ordinary layers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DynamicConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        weight = self.weight[: out_channels or self.out_channels, : x.shape[1]]
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            use_batch_stats, momentum, self.eps)


class DynamicLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)
