"""VGG-11 twin with BatchNorm, for 32x32 (CIFAR) or 48x48 (DVS-CIFAR10) inputs.

Stages end at each 2x2 max-pool (five stages); blocks are the individual conv layers. The head
is global average pooling and one linear layer, as in the SNN literature's VGG-11 for DVS data.
"""

from __future__ import annotations

from torch import nn

from sakd.models.base import NeuronSpec, TapPoint, TwinModel, init_weights
from sakd.models.registry import register_model

VGG11_STAGES = ((64,), (128,), (256, 256), (512, 512), (512, 512))


class VGGLayer(nn.Module):
    def __init__(self, owner: TwinModel, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = owner.act()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class VGG(TwinModel):
    def __init__(
        self,
        stages=VGG11_STAGES,
        *,
        num_classes: int,
        spiking: bool,
        timesteps: int = 4,
        in_channels: int = 3,
        stem: str = "cifar",
        neuron: NeuronSpec | None = None,
    ):
        super().__init__(spiking=spiking, timesteps=timesteps, neuron=neuron)
        if stem != "cifar":
            raise ValueError("vgg11 has one stem, 'cifar' (3x3 convolutions from the first layer)")
        cin = in_channels
        self.stage_names: list[str] = []
        for i, widths in enumerate(stages):
            layers = []
            for cout in widths:
                layers.append(VGGLayer(self, cin, cout))
                cin = cout
            name = f"stage{i + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
        self.pool = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.num_features = cin
        init_weights(self)

    def forward_stem(self, x):
        first = self.stage1[0]
        return first.bn(first.conv(x))

    def forward_body(self, x):
        first = self.stage1[0]
        x = first.act(x)
        for i, name in enumerate(self.stage_names):
            layers = getattr(self, name)
            for layer in layers[1:] if i == 0 else layers:
                x = layer(x)
            x = self.pool(x)
        return self.fc(self.avgpool(x).flatten(1))

    def tap_points(self, level: str = "stage") -> list[TapPoint]:
        if level not in ("stage", "block"):
            raise ValueError(f"unknown tap level {level!r}; choose 'stage' or 'block'")
        points = []
        for name in self.stage_names:
            layers = list(enumerate(getattr(self, name)))
            for j, layer in layers[-1:] if level == "stage" else layers:
                label = name if level == "stage" else f"{name}.{j}"
                points.append(TapPoint(label, layer.act, layer.bn.num_features))
        return points


register_model(
    "vgg11",
    lambda *, num_classes, spiking, **kw: VGG(num_classes=num_classes, spiking=spiking, **kw),
    description="VGG-11 with BatchNorm, global-average-pool head (CIFAR / DVS-CIFAR10)",
)
