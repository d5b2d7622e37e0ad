"""Spike-driven Transformer (Yao et al., NeurIPS 2023, "Spike-driven Transformer") and its ANN
twin: the same graph and parameters, ReLU where the SNN has a neuron.

Written from the paper and the authors' code (BICLab/Spike-Driven-Transformer, ``module/sps.py``,
``module/ms_conv.py``, ``model/spikeformer.py``), our own code:

* **Membrane shortcuts.** The residual stream carries membrane potentials (real values), not
  spikes: every block begins with a neuron on it, and the branches add their BatchNorm outputs
  to it, so every convolution reads spikes.
* **Patch splitting.** Spikformer's four 3x3 convolutions (no bias) + BN, widths D/8, D/4, D/2, D,
  a neuron after each of the first three; 3x3/2 max-pools after the third convolution's spikes and
  on the fourth's BN output (``stem: cifar``: 32x32 -> 8x8 tokens), or after all four
  (``stem: imagenet``: 224 -> 14x14). The relative position embedding adds
  ``BN(Conv3x3(SN(x)))`` to ``x``, the fourth convolution's (pooled) BN output.
* **Spike-driven self-attention (SDSA).** ``s = SN(x)``; ``Q, K, V = SN(BN(Conv1x1(s)))`` (no
  bias); ``x + BN(Conv1x1(Q ⊙ SN_0.5(Σ_tokens K ⊙ V)))`` (the projection with a bias). ``K ⊙ V`` is
  a mask of spikes by spikes, its sum over the tokens a column of additions, and ``Q`` masks the
  result: no multiplication, linear in tokens and channels. The sum is per channel, so the heads of
  the authors' code change nothing in it (their ``talking_heads`` layer is built but not used);
  sakd has no heads option. The attention's neuron fires at 0.5.
* **MLP.** ``x + BN(Conv1x1_{4D->D}(SN(BN(Conv1x1_{D->4D}(SN(x))))))``, both with a bias.
* **Head.** The mean over tokens of the stream, a neuron, a linear classifier; sakd averages the
  logits over T, as the authors do.
* **Init** as the authors': truncated normal (0.02) for every convolution, zero biases, unit/zero
  BatchNorm; the classifier keeps PyTorch's default.

Choices of ours, stated: the neuron is sakd's configured one (the authors' SpikingJelly LIF, τ = 2
with its input decayed, is ``presets/spikingjelly_lif.yaml``, which the recipes use: the same
spikes and gradients, tested); the first convolution + BN of a static image run once (direct
encoding, as all sakd models; the authors repeat the image T times, the same values); event
frames are not eroded (the authors' ``dvs`` option max-pools K, V and the attention on event data);
no stochastic depth. The masks are :class:`~sakd.models.base.Mul` modules, which ``sakd analyze``
counts: the positions where both operands are nonzero, accumulates (both operands are spikes).

Taps: ``block`` is each block's end, the residual stream (membrane potentials in the SNN) after
and the MLP branch it adds before; ``stage`` the patch splitting's output and the last block.
"""

from __future__ import annotations

import torch
from torch import nn

from sakd.models.base import Mul, ResidualAdd, TapPoint
from sakd.models.registry import MODELS
from sakd.models.spiking_transformer import (PatchSplitting, SpikingTransformer, Unit, check_size, pointwise, pool,
                                             truncated_normal_init)


def conv_bn(cin: int, cout: int, kernel: int = 1, bias: bool = True) -> nn.Sequential:
    """A convolution and its BatchNorm, no activation: what a membrane shortcut adds."""
    conv = pointwise(cin, cout, bias) if kernel == 1 else nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


class MembraneSPS(PatchSplitting):
    """Patch splitting whose output is a membrane potential (the authors' ``MS_SPS``)."""

    def __init__(self, in_channels: int, dim: int, pools: tuple[bool, ...], act):
        super().__init__(in_channels, dim, pools, act, units=2)
        self.proj = conv_bn(dim // 2, dim, 3, bias=False)
        self.proj_pool = pool(pools[3])  # on the membrane, before the neuron
        self.proj_act = act()
        self.rpe = conv_bn(dim, dim, 3, bias=False)
        self.add = ResidualAdd()

    def body(self, h: torch.Tensor) -> torch.Tensor:
        feat = self.proj_pool(self.proj(self.front(h)))
        return self.add(self.rpe(self.proj_act(feat)), feat)


class SDSA(nn.Module):
    """Spike-driven self-attention on a token grid ``[N, D, H, W]`` (N: time-folded batch), with its
    membrane shortcut."""

    def __init__(self, dim: int, act, attention_act):
        super().__init__()
        self.act = act()  # the shortcut's neuron: the stream's potentials to spikes
        self.q, self.k, self.v = (Unit(pointwise(dim, dim, bias=False), dim, act()) for _ in range(3))
        self.kv, self.mask = Mul(), Mul()
        self.attn_act = attention_act()
        self.proj = conv_bn(dim, dim)
        self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.act(x)
        q, k, v = self.q(s), self.k(s), self.v(s)
        kv = self.kv(k, v).sum((2, 3), keepdim=True)  # per channel, over the tokens: [N, D, 1, 1]
        return self.add(self.proj(self.mask(q, self.attn_act(kv))), x)


class MembraneMLP(nn.Module):
    """``x + BN(Conv(SN(BN(Conv(SN(x))))))``; with ``hidden == dim`` the authors' ``MS_MLP_Conv``
    also adds ``x`` to the hidden potential, and the output sums onto that."""

    def __init__(self, dim: int, hidden: int, act):
        super().__init__()
        self.act1 = act()
        self.fc1 = conv_bn(dim, hidden)
        self.inner = ResidualAdd() if hidden == dim else None
        self.act2 = act()
        self.fc2 = conv_bn(hidden, dim)
        self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.act1(x))
        if self.inner is not None:
            h = x = self.inner(h, x)
        return self.add(self.fc2(self.act2(h)), x)


class Block(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, act, attention_act):
        super().__init__()
        self.attn = SDSA(dim, act, attention_act)
        self.mlp = MembraneMLP(dim, int(dim * mlp_ratio), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class SpikeDrivenTransformer(SpikingTransformer):
    def __init__(self, *, num_classes: int, spiking: bool, timesteps: int, neuron, in_channels: int = 3,
                 stem: str = "cifar", depth: int = 2, dim: int = 512, mlp_ratio: float = 4.0,
                 attention_threshold: float = 0.5):
        super().__init__(spiking=spiking, timesteps=timesteps, neuron=neuron)
        check_size("spike_driven_transformer", depth, dim)
        pools = (False, False, True, True) if stem == "cifar" else (True, True, True, True)
        self.dim = dim
        self.sps = MembraneSPS(in_channels, dim, pools, self.act)
        self.blocks = nn.ModuleList(Block(dim, mlp_ratio, self.act, lambda: self.act(threshold=attention_threshold))
                                    for _ in range(depth))
        self.head_act = self.act()
        self.head = nn.Linear(dim, num_classes)
        truncated_normal_init(self, lambda m: isinstance(m, nn.Conv2d))  # the classifier keeps PyTorch's init

    def readout(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_act(tokens))

    def sps_tap(self) -> TapPoint:
        return TapPoint("sps", self.sps.add, self.dim)

    def block_taps(self) -> list[TapPoint]:
        # a block ends in a sum, not a neuron: "after" reads the stream, "before" the branch added to it
        return [TapPoint(f"blocks.{i}", b.mlp.add, self.dim) for i, b in enumerate(self.blocks)]


@MODELS.register()
def spike_driven_transformer(**kwargs) -> SpikeDrivenTransformer:
    """Spike-driven Transformer (Yao et al. 2023); model.options depth, dim, mlp_ratio (default 2-512)"""
    return SpikeDrivenTransformer(**kwargs)


@MODELS.register()
def spike_driven_transformer_2_512(**kwargs) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-2-512, the paper's CIFAR model"""
    return SpikeDrivenTransformer(depth=2, dim=512, **kwargs)


@MODELS.register()
def spike_driven_transformer_4_384(**kwargs) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-4-384: Spikformer's CIFAR size, for a like-for-like comparison"""
    return SpikeDrivenTransformer(depth=4, dim=384, **kwargs)


@MODELS.register()
def spike_driven_transformer_8_384(**kwargs) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-8-384, an ImageNet size of the paper (model.stem=imagenet)"""
    return SpikeDrivenTransformer(depth=8, dim=384, **kwargs)


@MODELS.register()
def spike_driven_transformer_8_512(**kwargs) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-8-512, an ImageNet size of the paper (model.stem=imagenet)"""
    return SpikeDrivenTransformer(depth=8, dim=512, **kwargs)


@MODELS.register()
def spike_driven_transformer_8_768(**kwargs) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-8-768, the paper's largest ImageNet size (model.stem=imagenet)"""
    return SpikeDrivenTransformer(depth=8, dim=768, **kwargs)
