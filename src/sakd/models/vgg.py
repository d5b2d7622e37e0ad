"""VGG-11 twin with BatchNorm: the VGGSNN of the DVS literature the paper compares with.

The layout is TET's VGGSNN (Deng et al. 2022, the DVS-CIFAR10 row of the paper's Table 3): eight
3x3 conv+BN layers in four stages, ``64, 128 | 256, 256 | 512, 512 | 512, 512``, each stage
ending in a 2x2 average pool. A 48x48 DVS frame leaves a 3x3 map, which the head flattens into one
linear layer (512·3·3 inputs), so every position of the last map reaches the logits. The head
pools the last map adaptively to that 3x3 grid: at 48x48 the pool is the identity (TET's model
exactly); a 32x32 CIFAR image leaves a 2x2 map whose cells the grid's overlapping bins all read. The pools
round up (``ceil_mode``), so a map of odd size keeps its last row and column; at sizes divisible by
16 (32, 48) that changes nothing.

(The classic VGG-11 has a fifth pool: on 48x48 inputs it took the 3x3 map to 1x1 from its top-left
2x2 window, so five of the nine positions got no gradient.)

``vgg16`` is the VGG-16 of the ANN->SNN conversion literature, in QCFS's layout (Bu et al. 2022,
putshua/ANN_SNN_QCFS ``Models/VGG.py``): thirteen 3x3 conv (with bias) + BN layers in five stages,
``64, 64 | 128, 128 | 256 x 3 | 512 x 3 | 512 x 3``, each ending in a 2x2 average pool, then a
classifier with neurons inside: ``Linear(512·g·g, 4096) -> act -> Linear(4096, 4096) -> act ->
Linear(4096, K)``, ``g`` the head's grid (1: a 32x32 image's 1x1 map, QCFS's CIFAR model; 7 its
ImageNet one). ``dropout`` (QCFS's default 0) follows every activation, as there.

Stages end at each pool; blocks are the individual conv layers.
"""

from __future__ import annotations

from torch import nn

from collections.abc import Callable

from sakd.models.base import TapPoint, TwinModel, init_weights
from sakd.models.registry import MODELS
from sakd.neurons import NeuronSpec

VGG11_STAGES = ((64, 128), (256, 256), (512, 512), (512, 512))
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
HEAD_GRID = 3  # the last map as vgg11's head reads it: 3x3, TET's VGGSNN on 48x48 frames
HIDDEN = 4096  # vgg16's classifier width


def _dropout(p: float) -> nn.Module:
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p!r}")
    return nn.Dropout(float(p)) if p else nn.Identity()


class VGGLayer(nn.Module):
    def __init__(self, act: Callable[[], nn.Module], cin: int, cout: int, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act()
        self.drop = _dropout(dropout)

    def forward(self, x):
        return self.drop(self.act(self.bn(self.conv(x))))


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
        grid: int = HEAD_GRID,
        hidden: int = 0,
        conv_bias: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__(spiking=spiking, timesteps=timesteps, neuron=neuron)
        if stem != "cifar":
            raise ValueError("VGG has one stem, 'cifar' (3x3 convolutions from the first layer)")
        cin = in_channels
        self.stage_names: list[str] = []
        for i, widths in enumerate(stages):
            layers = []
            for cout in widths:
                layers.append(VGGLayer(self.act, cin, cout, conv_bias, dropout))
                cin = cout
            name = f"stage{i + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
        self.pool = nn.AvgPool2d(2, ceil_mode=True)  # an odd-sized map keeps its last row/column
        self.grid = nn.AdaptiveAvgPool2d(grid)
        width = cin * grid * grid
        if hidden:  # vgg16's classifier: linear -> neuron (-> dropout), twice
            self.hidden = nn.Sequential(
                nn.Linear(width, hidden), self.act(), _dropout(dropout),
                nn.Linear(hidden, hidden), self.act(), _dropout(dropout),
            )
            width = hidden
        else:
            self.hidden = nn.Identity()
        self.fc = nn.Linear(width, num_classes)
        self.num_features = cin
        init_weights(self)
        if hidden:  # QCFS's VGG: linear biases from 0
            for m in (*self.hidden, self.fc):
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

    def forward_stem(self, x):
        first = self.stage1[0]
        return first.bn(first.conv(x))

    def forward_body(self, x):
        first = self.stage1[0]
        x = first.drop(first.act(x))
        for i, name in enumerate(self.stage_names):
            layers = getattr(self, name)
            for layer in layers[1:] if i == 0 else layers:
                x = layer(x)
            x = self.pool(x)
        return self.fc(self.hidden(self.grid(x).flatten(1)))

    def recompute_units(self) -> list[nn.Module]:
        """Every conv -> BN -> neuron layer the body calls whole (the first is split by the stem)."""
        return [layer for name in self.stage_names for layer in getattr(self, name)][1:]

    def tap_points(self, level: str = "stage") -> list[TapPoint]:
        points = []
        for name in self.stage_names:
            layers = list(enumerate(getattr(self, name)))
            for j, layer in layers[-1:] if level == "stage" else layers:
                label = name if level == "stage" else f"{name}.{j}"
                points.append(TapPoint(label, layer.act, layer.bn.num_features))
        return points


@MODELS.register()
def vgg11(**kwargs) -> VGG:
    """VGG-11 with BatchNorm, TET's VGGSNN layout: 4 stages, 2x2 avg-pools, 3x3-grid linear head (DVS/CIFAR)"""
    return VGG(**kwargs)


@MODELS.register()
def vgg16(grid: int = 1, dropout: float = 0.0, **kwargs) -> VGG:
    """VGG-16 with BatchNorm, QCFS's conversion layout: 5 stages, 2x2 avg-pools, 4096-4096 classifier with neurons"""
    return VGG(VGG16_STAGES, grid=grid, hidden=HIDDEN, conv_bias=True, dropout=dropout, **kwargs)
