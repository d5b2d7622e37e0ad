"""Parametric LIF (Fang et al. 2021b, "Incorporating learnable membrane time constant to enhance
learning of spiking neural networks", the paper's reference for self-accumulating dynamics).

Each PLIF layer learns its own leak ``λ = sigmoid(w)``, starting at ``model.neuron.decay``; the
recursion is the paper's LIF otherwise (``H_t = λ·V_{t-1} + X_t``, input not scaled by ``1 - λ``,
like the official SAKD code's ``decay_input=False`` LIF). All backends run it: the fused and
compiled kernels return ``dL/dλ = Σ_t dL/dH_t · V_{t-1}`` with ``dL/dX``.

``w`` is a parameter of the SNN twin only (the ANN has no neurons): weights copied from an ANN
teacher (``model.init=teacher``) leave it at its initial value.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.neurons.base import NEURONS
from sakd.neurons.lif import LIF


@NEURONS.register("plif")
class PLIF(LIF):
    """Parametric LIF (Fang et al. 2021b): the leak λ = sigmoid(w) is learned per layer, from model.neuron.decay"""

    @property
    def decay(self) -> torch.Tensor:
        return torch.sigmoid(self.w)

    @decay.setter
    def decay(self, value: float) -> None:  # LIF's constructor sets the initial leak
        if not 0.0 < float(value) < 1.0:
            raise ConfigError(f"PLIF's initial decay must lie strictly between 0 and 1, got {value}")
        self.w = nn.Parameter(torch.tensor(math.log(value / (1.0 - value))))
