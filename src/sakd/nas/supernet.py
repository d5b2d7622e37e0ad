"""The one-shot supernet: a spiking (or ANN) ResNet that runs as any subnet of a search space.

Parameter names follow ``resnet_custom`` (``conv1``, ``layer1.0.conv1``, ``downsample.0``,
``fc``), so a subnet materialises as a standalone registered model by slicing each tensor to the
subnet's shapes. The subnet in use is :attr:`SuperResNet.subnet` (set it with :meth:`use`).

Each stage ends in its own activation (``stage_ends``), fed by the last active block, so feature
taps at stage ends work for every subnet and the SAKD objective applies unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.models import create_model
from sakd.models.base import TapPoint, TwinModel, init_weights
from sakd.models.registry import MODELS
from sakd.neurons import NeuronSpec
from sakd.nas.dynamic import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear
from sakd.nas.space import PAPER_SPACE, Arch, SearchSpace


class DynamicBlock(nn.Module):
    """BasicBlock whose width is chosen per call; it always has shortcut weights when it may need
    them (first block of a stage) and uses them only where the subnet does (stride 2 or a change of
    width), as the standalone ResNet does."""

    def __init__(self, act, cin: int, cout: int, stride: int, shortcut: bool):
        super().__init__()
        self.stride = stride
        self.conv1 = DynamicConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = DynamicBatchNorm2d(cout)
        self.act1 = act()
        self.conv2 = DynamicConv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = DynamicBatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(DynamicConv2d(cin, cout, 1, stride=stride, bias=False), DynamicBatchNorm2d(cout))
            if shortcut else None
        )
        self.act2 = act()

    def preact(self, x: torch.Tensor, width: int) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x, width)))
        out = self.bn2(self.conv2(out, width))
        if self.stride != 1 or x.shape[1] != width:
            identity = self.downsample[1](self.downsample[0](x, width))
        else:
            identity = x
        return out + identity

    def forward(self, x: torch.Tensor, width: int) -> torch.Tensor:
        return self.act2(self.preact(x, width))


class SuperResNet(TwinModel):
    def __init__(self, *, space: dict, num_classes: int, spiking: bool, timesteps: int = 4, in_channels: int = 3,
                 stem: str = "cifar", neuron: NeuronSpec | None = None):
        super().__init__(spiking=spiking, timesteps=timesteps, neuron=neuron)
        if stem != "cifar":
            raise ConfigError("the supernet has the CIFAR stem (3x3 conv, no max-pool) only")
        self.space = SearchSpace.from_dict(space)
        self.num_classes, self.in_channels = num_classes, in_channels
        w0 = self.space.stem_width
        self.conv1 = nn.Conv2d(in_channels, w0, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        self.act1 = self.act()
        cin = w0
        for i, (chs, deps) in enumerate(zip(self.space.channels, self.space.depths)):
            cout, stride = max(chs), 1 if i == 0 else 2
            blocks = [DynamicBlock(self.act, cin if j == 0 else cout, cout, stride if j == 0 else 1, shortcut=j == 0)
                      for j in range(max(deps))]
            self.add_module(f"layer{i + 1}", nn.ModuleList(blocks))
            cin = cout
        self.stage_ends = nn.ModuleList(self.act() for _ in self.space.channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = DynamicLinear(cin, num_classes)
        init_weights(self)
        self.subnet = self.space.largest()

    def use(self, arch: Arch) -> SuperResNet:
        """Run as ``arch`` from now on."""
        self.subnet = self.space.check(arch)
        return self

    def forward_stem(self, x):
        return self.bn1(self.conv1(x))

    def forward_body(self, x):
        x = self.act1(x)
        for i, (width, depth) in enumerate(zip(self.subnet.channels, self.subnet.depths)):
            blocks = getattr(self, f"layer{i + 1}")
            for block in blocks[: depth - 1]:
                x = block(x, width)
            x = self.stage_ends[i](blocks[depth - 1].preact(x, width))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def tap_points(self, level: str = "stage") -> list[TapPoint]:
        if level != "stage":
            raise ConfigError("the supernet's feature taps are its stage ends (distill.features.level=stage)")
        return [
            TapPoint(f"layer{i + 1}", act, max(chs))
            for i, (act, chs) in enumerate(zip(self.stage_ends, self.space.channels))
        ]

    def materialize(self, arch: Arch | None = None) -> TwinModel:
        """The subnet as a standalone ``resnet_custom`` with weights sliced from the supernet."""
        arch = self.space.check(arch or self.subnet)
        model = create_model(
            "resnet_custom", spiking=self.spiking, num_classes=self.num_classes, timesteps=self.timesteps,
            in_channels=self.in_channels, neuron=self.neuron, depths=list(arch.depths), widths=list(arch.channels),
            stem_width=self.space.stem_width,
        )
        source = self.state_dict()
        sliced = {}
        for name, target in model.state_dict().items():
            value = source[name]
            sliced[name] = value[tuple(slice(0, n) for n in target.shape)].clone() if target.dim() else value.clone()
        model = model.to(device=self.conv1.weight.device, dtype=self.conv1.weight.dtype)
        model.load_state_dict(sliced, strict=True)
        return model


@MODELS.register()
def resnet_supernet(*, space: dict | None = None, **kwargs) -> SuperResNet:
    """one-shot NAS supernet over BasicBlock ResNets (model.options.space; default: the paper's Table 1 space)"""
    return SuperResNet(space=PAPER_SPACE if space is None else space, **kwargs)
