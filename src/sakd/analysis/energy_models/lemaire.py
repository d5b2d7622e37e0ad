"""Lemaire et al. 2022, "An analytical estimation of spiking neural networks energy efficiency"
(ICONIP 2022, arXiv 2210.13107): operations, addressing and memory accesses priced by the size of
the memory they go to, for an SNN and an ANN on one accelerator template.

The paper's rules, as SpikingJelly 2.0's ``LemaireEnergyProfiler`` reads them (the paper has no
code): per synaptic layer (``Conv2d``, ``Linear``)

* **spike input** (event-driven): each input spike is read from a FIFO of ``fifo`` words, each
  synapse it reaches reads its weight and reads and writes the target's membrane potential (in a
  memory of one sample's outputs), and costs one accumulate and one addressing addition; a
  convolution locates a spike's first output with two multiply-adds;
* **non-spike input** (the ANN, and an SNN's layers fed by a directly encoded image, graded
  inputs or average-pooled spikes), priced dense: every weight use, zeros included, reads its
  weight and (convolution; a linear layer reads each input once) its input, one MAC; addressing
  adds once per input and output element (and, convolution, per filter weight of a sample); an
  ANN writes each output once (an SNN's such layer feeds its neurons instead);
* a bias is one read and one addition per output;
* per spiking layer and timestep: each neuron's membrane is read and written once, a leaky neuron
  multiplies once (LIF; integrate-and-fire does not), each spike costs an addition (the reset) and
  one write of the spike to the next FIFO.

Energies: 32-bit integer addition 0.1 pJ, multiplication 3.1 pJ (45 nm), and a memory access of
one byte costs what a 32-bit access to an SRAM of that size costs over 4, interpolated linearly
between 0 (0 B), 10 pJ (8 KiB), 20 pJ (32 KiB) and 100 pJ (1 MiB), and held above 1 MiB
(Horowitz 2014's SRAM figures, as the paper and SpikingJelly use them). Each memory's size is one
sample's: a layer's weights and bias, one sample's input, one sample's outputs for one timestep
(the potentials), the FIFO.

Where sakd differs from SpikingJelly's reading, it counts exactly what happened: a spike reaches
the synapses its receptive fields hold (fewer at a border, ``ceil(k / stride)^2`` of a strided
convolution's positions), where SpikingJelly takes ``k^2`` for the memory traffic and
``ceil(k / s)^2`` for the accumulates; zero padding costs nothing on either side; memories are
sized, and a layer's per-filter addressing counted, per sample (SpikingJelly sizes them by the
tensor a call sees, a batch and, in multi-step mode, all T); an ANN layer is always priced dense
(SpikingJelly would price one whose input happens to be 0/1 as events). sakd's SNNs convolve a
directly encoded image once and feed the same currents at every timestep: the layer is counted
once, and keeping its output for T timesteps is not charged (SpikingJelly's template would run it
T times). Spiking transformers' products of two activations (``MatMul``, ``Mul``) are counted as
operations only.
"""

from __future__ import annotations

from sakd.analysis.energy import LayerOps, NeuronOps
from sakd.analysis.energy_models.registry import ENERGY_MODELS, WORD_BYTES, EnergyModel, Ledger, dense_or_events

KIB = 1024.0
SRAM_PJ_PER_BYTE = ((0.0, 0.0), (8 * KIB, 10.0 / 4), (32 * KIB, 20.0 / 4), (1024 * KIB, 100.0 / 4))


def sram_pj_per_byte(size: float) -> float:
    """The energy of a one-byte access to a memory of ``size`` bytes (linear between the points,
    held above the last)."""
    (x0, y0), (x1, y1) = next((a, b) for a, b in zip(SRAM_PJ_PER_BYTE, SRAM_PJ_PER_BYTE[1:])
                              if size <= b[0] or b is SRAM_PJ_PER_BYTE[-1])
    return y0 + (y1 - y0) * (min(max(size, x0), x1) - x0) / (x1 - x0)


@ENERGY_MODELS.register("lemaire")
class Lemaire(EnergyModel):
    """operations, addressing and every weight, input, membrane and output access priced by its memory's size (Lemaire et al. 2022)"""  # noqa: E501

    source = ("E. Lemaire, L. Cordone, A. Castagnetti, P.-E. Novac, J. Courtois, B. Miramond, 'An analytical "
              "estimation of spiking neural networks energy efficiency', ICONIP 2022 (arXiv 2210.13107), as "
              "SpikingJelly 2.0's LemaireEnergyProfiler reads it; SRAM and integer figures of Horowitz 2014")
    assumes = ("one sample at a time on a layer-by-layer accelerator, 32-bit integers; no weight reuse: every "
               "synaptic event (SNN) or weight use (ANN) reads its weight, in the SNN at every timestep; the "
               "membrane lives in memory: every synaptic event reads and writes its target's potential, and "
               "each neuron's is read and written once more per timestep for its update; spikes travel "
               "through FIFOs of 'fifo' words; an ANN's convolution reads each input per use, its linear layer "
               "once, and it writes each output once")

    def __init__(self, e_add: float = 0.1, e_mul: float = 3.1, fifo: int = 1000):
        self.e_add, self.e_mul, self.fifo = e_add, e_mul, fifo

    def _access(self, ledger: Ledger, component: str, words: int, memory_words: int) -> None:
        nbytes = words * WORD_BYTES
        ledger.add(component, nbytes * sram_pj_per_byte(memory_words * WORD_BYTES), nbytes)

    def synapses(self, rec: LayerOps, spiking: bool) -> Ledger:
        acs, macs = dense_or_events(rec, spiking)
        ledger = Ledger()
        bias = rec.outputs if rec.bias else 0
        ledger.add("ops", self.e_add * (acs + bias) + (self.e_mul + self.e_add) * macs)
        if rec.kind not in ("conv", "linear"):
            return ledger
        if spiking and rec.binary:  # event-driven (a silent layer costs its bias only)
            ledger.add("addressing", self.e_add * acs + (self.e_mul + self.e_add) * (
                2 * rec.nonzero if rec.kind == "conv" else 0))
            self._access(ledger, "inputs", rec.nonzero, self.fifo)
            self._access(ledger, "potentials", 2 * acs, rec.output_size)
        else:
            filter_addresses = rec.kernel_outputs * rec.samples
            ledger.add("addressing", self.e_add * (rec.inputs + rec.outputs + filter_addresses))
            self._access(ledger, "inputs", macs if rec.kind == "conv" else rec.inputs, rec.input_size)
            if not spiking:  # an ANN writes its outputs; an SNN's such layer feeds its neurons' membranes
                self._access(ledger, "outputs", rec.outputs, rec.output_size)
        self._access(ledger, "weights", acs + macs + bias, rec.params)
        return ledger

    def neurons(self, rec: NeuronOps) -> Ledger:
        ledger = Ledger().add("ops", self.e_add * rec.spikes + (self.e_mul + self.e_add) * (
            rec.neuron_steps if rec.leaky else 0))
        self._access(ledger, "potentials", 2 * rec.neuron_steps, rec.size)
        self._access(ledger, "outputs", rec.spikes, self.fifo)
        return ledger
