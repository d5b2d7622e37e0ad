"""SEW-ResNet twins (Fang et al. 2021a, "Deep residual learning in spiking neural networks"): the
spiking ResNets of the official SAKD code's ImageNet results.

A spike-element-wise (SEW) block fires a spike on each branch and joins the two spike tensors:
the residual branch's spikes ``A = SN(BN(conv(...)))`` and the shortcut's ``S`` (the block's
input, or ``SN(BN(conv1x1(x)))`` where the shortcut downsamples) meet in a connect function::

    ADD:  A + S          (integers 0, 1, 2: the default, and the official code's)
    AND:  A · S
    IAND: (1 - A) · S    (¬A ∧ S)

The ANN twin is the plain ResNet (ReLU after the addition), with the same parameter names and
shapes as torchvision's ResNet, so torchvision and timm ResNet weights load strictly into both
twins and the student can start from its teacher (A.2). Feature taps end each block at the
connection ("after": the joined spikes; in the ANN, the block's output) or before its last
neuron ("before": that neuron's input; in the ANN, the ReLU's input).
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.models.registry import MODELS
from sakd.models.resnet import Act, BasicBlock, Bottleneck, ResNet

CONNECT = ("ADD", "AND", "IAND")


def sew_connect(residual: torch.Tensor, shortcut: torch.Tensor, kind: str) -> torch.Tensor:
    """Join the residual branch's spikes ``A`` and the shortcut's ``S``: ADD, AND or IAND."""
    if kind == "ADD":
        return residual + shortcut
    if kind == "AND":
        return residual * shortcut
    return (1.0 - residual) * shortcut  # IAND


class _SEW:
    """What a SEW block adds to its plain ResNet block: the shortcut's neuron, the connection, and
    an ``out`` module (identity) where the "after" feature tap reads the joined spikes."""

    def _sew_init(self, act: Act, spiking: bool, connect: str) -> None:
        self.spiking, self.connect = spiking, connect
        self.downsample_act = act() if self.downsample is not None else None
        self.out = nn.Identity()

    def _join(self, residual_spikes: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample_act(self.downsample(x))
        return self.out(sew_connect(residual_spikes, shortcut, self.connect))


class SEWBasicBlock(_SEW, BasicBlock):
    def __init__(self, act: Act, cin: int, planes: int, stride: int = 1, *, spiking: bool, connect: str = "ADD"):
        super().__init__(act, cin, planes, stride)
        self._sew_init(act, spiking, connect)

    def forward(self, x):
        if not self.spiking:
            return self.out(super().forward(x))
        return self._join(self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))), x)


class SEWBottleneck(_SEW, Bottleneck):
    def __init__(self, act: Act, cin: int, planes: int, stride: int = 1, *, spiking: bool, connect: str = "ADD"):
        super().__init__(act, cin, planes, stride)
        self._sew_init(act, spiking, connect)

    def forward(self, x):
        if not self.spiking:
            return self.out(super().forward(x))
        out = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        return self._join(self.act3(self.bn3(self.conv3(out))), x)


def _sew(block, depths, connect: str, **kwargs) -> ResNet:
    kind = str(connect).upper()
    if kind not in CONNECT:
        raise ConfigError(f"model.options.connect must be one of {', '.join(CONNECT)}, got {connect!r}")
    return ResNet(block, depths, (64, 128, 256, 512), block_options={"spiking": kwargs["spiking"], "connect": kind},
                  **kwargs)


@MODELS.register()
def sew_resnet18(*, connect: str = "ADD", **kwargs) -> ResNet:
    """SEW-ResNet-18 (spike-element-wise residuals, model.options.connect ADD|AND|IAND); ANN twin: ResNet-18"""
    return _sew(SEWBasicBlock, (2, 2, 2, 2), connect, **kwargs)


@MODELS.register()
def sew_resnet34(*, connect: str = "ADD", **kwargs) -> ResNet:
    """SEW-ResNet-34 (spike-element-wise residuals, model.options.connect ADD|AND|IAND); ANN twin: ResNet-34"""
    return _sew(SEWBasicBlock, (3, 4, 6, 3), connect, **kwargs)


@MODELS.register()
def sew_resnet50(*, connect: str = "ADD", **kwargs) -> ResNet:
    """SEW-ResNet-50 (spike-element-wise residuals, model.options.connect ADD|AND|IAND); ANN twin: ResNet-50"""
    return _sew(SEWBottleneck, (3, 4, 6, 3), connect, **kwargs)


@MODELS.register()
def sew_resnet101(*, connect: str = "ADD", **kwargs) -> ResNet:
    """SEW-ResNet-101 (spike-element-wise residuals, model.options.connect ADD|AND|IAND); ANN twin: ResNet-101"""
    return _sew(SEWBottleneck, (3, 4, 23, 3), connect, **kwargs)


@MODELS.register()
def sew_resnet152(*, connect: str = "ADD", **kwargs) -> ResNet:
    """SEW-ResNet-152 (spike-element-wise residuals, model.options.connect ADD|AND|IAND); ANN twin: ResNet-152"""
    return _sew(SEWBottleneck, (3, 8, 36, 3), connect, **kwargs)
