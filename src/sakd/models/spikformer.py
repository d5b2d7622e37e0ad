"""Spikformer (Zhou et al., ICLR 2023, "Spikformer: When Spiking Neural Network Meets
Transformer") and its ANN twin: the same graph and parameters, ReLU where the SNN has a neuron.

Written from the paper and the authors' code (ZK-Zhou/spikformer, ``cifar10/model.py`` and
``imagenet/model.py``), our own code:

* **Spiking patch splitting (SPS).** Four 3x3 convolutions (no bias) + BN + neuron, widths D/8,
  D/4, D/2, D; 3x3/2 max-pools after the third and fourth (``stem: cifar``: 32x32 -> 8x8 tokens)
  or after all four (``stem: imagenet``: 224 -> 14x14); then the relative position embedding,
  ``x = SN(BN(Conv3x3(x))) + x`` (spikes plus spikes).
* **Spiking self-attention (SSA).** ``Q, K, V = SN(BN(Linear(x)))``, per head
  ``SN_0.5(Q K^T V * s)`` with s = 0.125 and no softmax (the attention's neuron fires at 0.5), then
  ``SN(BN(Linear(.)))``. **Block**: ``x = x + SSA(x)``, ``x = x + MLP(x)`` with
  ``MLP = SN(BN(Linear_{4D->D}(SN(BN(Linear_{D->4D}(x))))))``; the sums add spikes to spikes.
* **Head**: the mean over tokens, a linear classifier; sakd averages the logits over T (the same
  as averaging the features first: the classifier is linear).

Choices of ours, stated: the token-wise linear layers are 1x1 convolutions on the token grid and
their BatchNorm1d over tokens a BatchNorm2d over the grid (the same function: per channel, over
batch and positions), so the blocks' features are maps ``[B, D, H, W]`` that every loss term,
Figure 4 and the energy count read as any model's; the neuron is sakd's configured one (the
authors' SpikingJelly LIF, τ = 2 with its input decayed, is ``presets/spikingjelly_lif.yaml``,
which the recipes use: the same spikes and gradients, tested); the first convolution + BN
of a static image run once (direct encoding, as all sakd models). The two attention products are
:class:`~sakd.models.base.MatMul` modules, which ``sakd analyze`` counts: Q K^T multiplies two
spike tensors and (.) V a spike tensor, so both are accumulates, ``Σ_k nnz(A[:, k]) · nnz(B[k, :])``
of them (every product of two nonzero elements), as the paper counts its attention in SOPs.

Taps: ``block`` is each block's output (after) or its last neuron's input (before); ``stage`` the
SPS output and the last block.
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.models.base import MatMul, ResidualAdd, TapPoint
from sakd.models.registry import MODELS
from sakd.models.spiking_transformer import (PatchSplitting, SpikingTransformer, Unit, check_size, pointwise,
                                             truncated_normal_init)


class SPS(PatchSplitting):
    def __init__(self, in_channels: int, dim: int, pools: tuple[bool, ...], act):
        super().__init__(in_channels, dim, pools, act, units=3)
        self.rpe = Unit(nn.Conv2d(dim, dim, 3, padding=1, bias=False), dim, act())
        self.add = ResidualAdd()

    def body(self, h: torch.Tensor) -> torch.Tensor:
        x = self.front(h)
        return self.add(self.rpe(x), x)


class SSA(nn.Module):
    """Spiking self-attention on a token grid ``[N, D, H, W]`` (N: time-folded batch)."""

    def __init__(self, dim: int, heads: int, act, attention_act, scale: float = 0.125, qkv_bias: bool = True):
        super().__init__()
        self.heads, self.scale = heads, scale
        self.q, self.k, self.v = (Unit(pointwise(dim, dim, qkv_bias), dim, act()) for _ in range(3))
        self.qk, self.av = MatMul(), MatMul()
        self.attn_act = attention_act()
        self.proj = Unit(pointwise(dim, dim), dim, act())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, d, h, w = x.shape

        def split(t):  # [N, D, H, W] -> [N, heads, H*W, D/heads]
            return t.flatten(2).transpose(1, 2).unflatten(2, (self.heads, d // self.heads)).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        y = self.av(self.qk(q, k.transpose(-2, -1)) * self.scale, v)
        y = y.transpose(1, 2).flatten(2).transpose(1, 2).unflatten(2, (h, w))
        return self.proj(self.attn_act(y))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act):
        super().__init__()
        self.fc1 = Unit(pointwise(dim, hidden), hidden, act())
        self.fc2 = Unit(pointwise(hidden, dim), dim, act())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, act, attention_act, qkv_bias: bool):
        super().__init__()
        self.attn = SSA(dim, heads, act, attention_act, qkv_bias=qkv_bias)
        self.add1 = ResidualAdd()
        self.mlp = MLP(dim, int(dim * mlp_ratio), act)
        self.add2 = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.add1(x, self.attn(x))
        return self.add2(x, self.mlp(x))


class Spikformer(SpikingTransformer):
    def __init__(self, *, num_classes: int, spiking: bool, timesteps: int, neuron, in_channels: int = 3,
                 stem: str = "cifar", depth: int = 4, dim: int = 384, heads: int = 12, mlp_ratio: float = 4.0,
                 attention_threshold: float = 0.5):
        super().__init__(spiking=spiking, timesteps=timesteps, neuron=neuron)
        check_size("spikformer", depth, dim, heads)
        pools = (False, False, True, True) if stem == "cifar" else (True, True, True, True)
        self.dim = dim
        self.sps = SPS(in_channels, dim, pools, self.act)
        # q, k, v with a bias on CIFAR (the authors' nn.Linear), without on ImageNet (their Conv1d, bias=False)
        self.blocks = nn.ModuleList(
            Block(
                dim,
                heads,
                mlp_ratio,
                self.act,
                lambda: self.act(threshold=attention_threshold),
                qkv_bias=stem == "cifar",
            )
            for _ in range(depth)
        )
        self.head = nn.Linear(dim, num_classes)
        # the authors' init: truncated normal (0.02) and zero bias for their nn.Linear layers: the
        # head, and on CIFAR the token-wise layers too (on ImageNet these are Conv1d/Conv2d layers,
        # which keep PyTorch's default init there as here)
        truncated_normal_init(self, lambda m: isinstance(m, nn.Linear) or (
            stem == "cifar" and isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)))

    def readout(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens)

    def sps_tap(self) -> TapPoint:
        return TapPoint("sps", self.sps.rpe[2], self.dim, self.sps.add)

    def block_taps(self) -> list[TapPoint]:
        return [TapPoint(f"blocks.{i}", b.mlp.fc2[2], self.dim, b.add2) for i, b in enumerate(self.blocks)]


@MODELS.register()
def spikformer(**kwargs) -> Spikformer:
    """Spikformer (Zhou et al. 2023); model.options depth, dim, heads, mlp_ratio (default 4-384, 12 heads)"""
    return Spikformer(**kwargs)


@MODELS.register()
def spikformer_4_384(**kwargs) -> Spikformer:
    """Spikformer-4-384, the paper's CIFAR model (12 heads)"""
    return Spikformer(depth=4, dim=384, heads=12, **kwargs)


@MODELS.register()
def spikformer_8_384(**kwargs) -> Spikformer:
    """Spikformer-8-384, an ImageNet size of the paper (model.stem=imagenet; 12 heads)"""
    return Spikformer(depth=8, dim=384, heads=12, **kwargs)


@MODELS.register()
def spikformer_8_512(**kwargs) -> Spikformer:
    """Spikformer-8-512, the paper's ImageNet default (model.stem=imagenet; 8 heads)"""
    return Spikformer(depth=8, dim=512, heads=8, **kwargs)


@MODELS.register()
def spikformer_8_768(**kwargs) -> Spikformer:
    """Spikformer-8-768, the paper's largest ImageNet size (model.stem=imagenet; 12 heads)"""
    return Spikformer(depth=8, dim=768, heads=12, **kwargs)
