"""Spiking neurons: the multi-step LIF of the paper and its surrogate gradients."""

from sakd.neurons.lif import LIF, lif_reference
from sakd.neurons.surrogate import SURROGATES, Surrogate, get_surrogate, spike

__all__ = ["LIF", "lif_reference", "SURROGATES", "Surrogate", "get_surrogate", "spike"]
