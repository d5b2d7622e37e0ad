"""Spiking neurons as registered parts: LIF (the paper's, eq. 1-3), IF, PLIF and QCFS, their surrogate
gradients, what every neuron shares (base class, registry, settings, time-folded layer) and the
firing-rate monitor that counts the spikes of any of them."""

from sakd.neurons.base import NEURONS, ActivationSite, NeuronSpec, SpikeActivation, SpikingNeuron, neuron_spec
from sakd.neurons.firing import FiringRateMonitor, spiking_layers
from sakd.neurons.lif import IF, LIF, lif_reference
from sakd.neurons.plif import PLIF
from sakd.registry import import_submodules
from sakd.neurons.surrogate import SURROGATES, Surrogate, get_surrogate, spike

__all__ = [
    "NEURONS",
    "FiringRateMonitor",
    "spiking_layers",
    "NeuronSpec",
    "ActivationSite",
    "SpikeActivation",
    "SpikingNeuron",
    "neuron_spec",
    "IF",
    "LIF",
    "PLIF",
    "lif_reference",
    "SURROGATES",
    "Surrogate",
    "get_surrogate",
    "spike",
]

import_submodules(__name__, __path__)  # every file registers its parts
