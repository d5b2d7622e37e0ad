"""ResNet twins: torchvision's ResNet-18..152 layout, the CIFAR ResNet-19, and a tiny test model.

Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``downsample.0``,
``fc``), so ImageNet-stem ANNs load torchvision state dicts strictly. Every activation is its own
module (``act1``, ``act2``, ...) so each can be tapped and each LIF layer counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.models.base import ResidualAdd, TapPoint, TwinModel, init_weights
from sakd.models.registry import MODELS
from sakd.neurons import NeuronSpec

Act = Callable[[], nn.Module]  # an activation factory: ReLU for the ANN twin, a spiking neuron for the SNN


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, act: Act, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(cin, planes, stride)
        self.add = ResidualAdd()
        self.act2 = act()
        self.out_channels = planes

    @property
    def out_act(self) -> nn.Module:
        return self.act2

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.act2(self.add(out, identity))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, act: Act, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act()
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act()
        self.conv3 = conv1x1(planes, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = _shortcut(cin, cout, stride)
        self.add = ResidualAdd()
        self.act3 = act()
        self.out_channels = cout

    @property
    def out_act(self) -> nn.Module:
        return self.act3

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.act3(self.add(out, identity))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class ResNet(TwinModel):
    """Generic ResNet.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        depths: blocks per stage.
        widths: ``planes`` per stage (output channels are ``planes * block.expansion``).
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) or ``"cifar"`` (3x3/1 conv).
        stem_width: channels of the stem conv.
        head_hidden: if set, the head is ``fc1 -> activation -> fc2`` with this many hidden units
            (ResNet-19); otherwise one ``fc``.
        block_options: further keyword arguments of every block (SEW blocks: ``spiking``, ``connect``).
        output_relu: RepAct (Guo et al., NeurIPS 2024, EnOF): the spiking network's last block
            outputs through a ReLU instead of its neuron, so the feature the classifier reads is
            full precision (its pooling and head then multiply-accumulate, as the ANN's do); the
            ANN twin, already ReLU, and every weight are unchanged. Plain ResNet blocks only.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: Sequence[int],
        widths: Sequence[int],
        *,
        num_classes: int,
        spiking: bool,
        timesteps: int = 4,
        in_channels: int = 3,
        stem: str = "cifar",
        stem_width: int = 64,
        head_hidden: int | None = None,
        neuron: NeuronSpec | None = None,
        block_options: dict | None = None,
        output_relu: bool = False,
    ):
        super().__init__(spiking=spiking, timesteps=timesteps, neuron=neuron)
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"unknown stem {stem!r}; choose 'cifar' or 'imagenet'")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_channels, stem_width)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.act1 = self.act()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()

        cin = stem_width
        self.stages: list[str] = []
        for i, (depth, planes) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(self.act, cin, planes, stride, **(block_options or {})))
                cin = planes * block.expansion
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stages.append(name)

        if output_relu:
            last = getattr(self, self.stages[-1])[-1]
            if type(last) not in (BasicBlock, Bottleneck):
                raise ConfigError(
                    f"model.options.output_relu: the last block is a {type(last).__name__}, whose output is "
                    "not its activation's; RepAct is built for plain ResNet blocks"
                )
            if spiking:
                setattr(last, next(n for n, m in last.named_children() if m is last.out_act), nn.ReLU())

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        if head_hidden:
            self.fc1 = nn.Linear(cin, head_hidden)
            self.act_fc = self.act()
            self.fc2 = nn.Linear(head_hidden, num_classes)
        else:
            self.fc = nn.Linear(cin, num_classes)
        self.head_hidden = head_hidden
        self.num_features = cin
        init_weights(self)

    def forward_stem(self, x):
        return self.bn1(self.conv1(x))

    def forward_body(self, x):
        x = self.maxpool(self.act1(x))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.forward_head(torch.flatten(self.avgpool(x), 1))

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """The classifier: the last stage's feature averaged over space ``[N, C]`` -> logits."""
        if self.head_hidden:
            return self.fc2(self.act_fc(self.fc1(pooled)))
        return self.fc(pooled)

    def recompute_units(self) -> list[nn.Module]:
        return [block for name in self.stages for block in getattr(self, name)]

    def tap_points(self, level: str = "stage") -> list[TapPoint]:
        points = []
        for name in self.stages:
            stage = getattr(self, name)
            blocks = list(enumerate(stage))
            if level == "stage":
                blocks = blocks[-1:]
            elif level != "block":
                raise ValueError(f"unknown tap level {level!r}; choose 'stage' or 'block'")
            for j, blk in blocks:
                label = name if level == "stage" else f"{name}.{j}"
                points.append(TapPoint(label, blk.out_act, blk.out_channels, getattr(blk, "out", None)))
        return points


@MODELS.register()
def resnet18(**kwargs) -> ResNet:
    """torchvision resnet18 layout"""
    return ResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), **kwargs)


@MODELS.register()
def resnet34(**kwargs) -> ResNet:
    """torchvision resnet34 layout"""
    return ResNet(BasicBlock, (3, 4, 6, 3), (64, 128, 256, 512), **kwargs)


@MODELS.register()
def resnet50(**kwargs) -> ResNet:
    """torchvision resnet50 layout"""
    return ResNet(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), **kwargs)


@MODELS.register()
def resnet101(**kwargs) -> ResNet:
    """torchvision resnet101 layout"""
    return ResNet(Bottleneck, (3, 4, 23, 3), (64, 128, 256, 512), **kwargs)


@MODELS.register()
def resnet152(**kwargs) -> ResNet:
    """torchvision resnet152 layout"""
    return ResNet(Bottleneck, (3, 8, 36, 3), (64, 128, 256, 512), **kwargs)


@MODELS.register()
def resnet19(**kwargs) -> ResNet:
    """CIFAR ResNet-19: 128-ch stem, stages [3,3,2] x 128/256/512, FC 512-256-classes"""
    return ResNet(BasicBlock, (3, 3, 2), (128, 256, 512), stem_width=128, head_hidden=256, **kwargs)


@MODELS.register()
def resnet_tiny(**kwargs) -> ResNet:
    """3-stage, 1-block-per-stage ResNet (16/32/64) for tests and the quickstart"""
    return ResNet(BasicBlock, (1, 1, 1), (16, 32, 64), stem_width=16, **kwargs)


@MODELS.register()
def resnet_custom(*, depths=(2, 2, 2, 2), widths=(64, 128, 256, 512), block: str = "basic", stem_width: int = 64,
                  head_hidden: int | None = None, **kwargs) -> ResNet:
    """ResNet of any depths/widths (model.options), e.g. a NAS subnet"""
    blocks = {"basic": BasicBlock, "bottleneck": Bottleneck}
    if block not in blocks:
        raise ValueError(f"unknown block {block!r}; choose 'basic' or 'bottleneck'")
    if len(depths) != len(widths):
        raise ValueError(f"depths {list(depths)} and widths {list(widths)} must have one entry per stage")
    return ResNet(blocks[block], tuple(depths), tuple(widths), stem_width=stem_width, head_hidden=head_hidden, **kwargs)
