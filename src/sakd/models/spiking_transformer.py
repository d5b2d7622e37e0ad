"""What the spiking transformers (Spikformer, the Spike-driven Transformer) share: token-wise
layers as 1x1 convolutions on the token grid, the layer -> BN -> activation unit, the authors'
truncated-normal init, and a twin whose body is patch splitting, blocks and a readout of the
tokens' mean, tapped at the patch splitting's output and the blocks' ends."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.models.base import TapPoint, TwinModel


def pointwise(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    """A linear layer over the tokens of a grid: a 1x1 convolution (the authors' nn.Linear)."""
    return nn.Conv2d(cin, cout, 1, bias=bias)


class Unit(nn.Sequential):
    """layer -> BatchNorm -> activation (a neuron in the SNN, ReLU in the ANN)."""

    def __init__(self, layer: nn.Module, channels: int, act: nn.Module):
        super().__init__(layer, nn.BatchNorm2d(channels), act)


def check_size(model: str, depth, dim, heads=None) -> None:
    """One line naming the bad ``model.options`` size (blocks, dims, heads where the model has them)."""
    sizes = {"depth": depth, "dim": dim} | ({"heads": heads} if heads is not None else {})
    for key, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{model}: model.options.{key} must be a whole number >= 1, got {v!r}")
    if dim % 8:
        raise ConfigError(f"{model}: model.options.dim must be a multiple of 8 (the patch splitting's D/8), got {dim}")
    if heads is not None and dim % heads:
        raise ConfigError(f"{model}: model.options.dim {dim} does not split into {heads} heads")


def pool(on: bool) -> nn.Module:
    """The patch splitting's 3x3/2 max-pool, or nothing."""
    return nn.MaxPool2d(3, 2, 1) if on else nn.Identity()


class PatchSplitting(nn.Module):
    """Spikformer's convolutions 3 -> D/8 -> D/4 -> D/2 (3x3, no bias, BN), each but the last
    followed by an activation and ``pools[i]``; the first conv + BN is the stem (run once per
    image). Subclasses add the last convolution, the position embedding and :meth:`body`."""

    def __init__(self, in_channels: int, dim: int, pools: tuple[bool, ...], act, units: int):
        super().__init__()
        w = [in_channels, dim // 8, dim // 4, dim // 2, dim]
        self.conv1 = nn.Conv2d(in_channels, dim // 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim // 8)
        self.act1 = act()
        self.pool1 = pool(pools[0])
        self.units = nn.ModuleList(Unit(nn.Conv2d(w[i], w[i + 1], 3, padding=1, bias=False), w[i + 1], act())
                                   for i in range(1, 1 + units))
        self.pools = nn.ModuleList(pool(p) for p in pools[1:1 + units])

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv1(x))

    def front(self, h: torch.Tensor) -> torch.Tensor:
        """The stem's activation, then the units and their pools."""
        x = self.pool1(self.act1(h))
        for unit, p in zip(self.units, self.pools):
            x = p(unit(x))
        return x


def truncated_normal_init(model: nn.Module, chosen: Callable[[nn.Module], bool]) -> None:
    """The authors' init: truncated normal (0.02) and zero bias for the ``chosen`` layers, unit
    weight and zero bias for every BatchNorm2d."""
    for m in model.modules():
        if chosen(m):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SpikingTransformer(TwinModel):
    """``self.sps`` (patch splitting with ``stem``/``body``), ``self.blocks``, :meth:`readout` of
    the tokens' mean; subclasses name their taps in :meth:`sps_tap` and :meth:`block_taps`."""

    sps: nn.Module
    blocks: nn.ModuleList

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.sps.stem(x)

    def forward_body(self, h: torch.Tensor) -> torch.Tensor:
        x = self.sps.body(h)
        for block in self.blocks:
            x = block(x)
        return self.readout(x.mean((2, 3)))

    def readout(self, tokens: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sps_tap(self) -> TapPoint:  # pragma: no cover - abstract
        raise NotImplementedError

    def block_taps(self) -> list[TapPoint]:  # pragma: no cover - abstract
        raise NotImplementedError

    def recompute_units(self) -> list[nn.Module]:
        return list(self.blocks)

    def tap_points(self, level: str = "stage") -> list[TapPoint]:
        blocks = self.block_taps()
        return [self.sps_tap(), blocks[-1]] if level == "stage" else blocks
