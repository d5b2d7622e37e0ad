"""Operations plus memory at one cost per byte: SpikingJelly 2.0's ``SimpleEnergyProfiler``.

Its memory part is SpikingJelly's ``NeuromorphicMemoryAccessCounter`` (weights and biases read
per use, each membrane read and written per timestep), with zero padding left out where a layer's
input is not spikes (SpikingJelly counts a padded layer's every weight use); its operations are
sakd's synaptic ones priced by Horowitz's E_MAC and E_AC, where SpikingJelly's MAC and AC counters
also count BatchNorm, neuron updates, residual additions and pooling. Where an SNN's input is not
spikes (a directly encoded image, graded inputs) the layer is priced dense, as the ANN's."""

from __future__ import annotations

from sakd.analysis.energy import E_AC_PJ, E_MAC_PJ, LayerOps, NeuronOps
from sakd.analysis.energy_models.registry import ENERGY_MODELS, WORD_BYTES, EnergyModel, Ledger, dense_or_events


@ENERGY_MODELS.register("flat_memory")
class FlatMemory(EnergyModel):
    """ops + every weight/bias read and membrane read and write at 24.96 pJ/byte (SpikingJelly 2.0's simple model)"""

    source = ("SpikingJelly 2.0 op_counter.SimpleEnergyProfiler: Horowitz 2014's E_MAC, E_AC (45 nm) and 3.12 pJ "
              "per bit of memory access, the figure of the STEP benchmark (OpenReview SzwU2XrXIS)")
    assumes = ("no reuse: every weight use reads its weight (and every output its bias), in the SNN at every "
               "timestep; each neuron's membrane lives in memory and is read and written once per timestep "
               "(its input summed in a register); input and output activations and spikes are outside the "
               "model; one cost per byte, whatever the memory's size")

    def __init__(self, e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ, e_byte: float = 24.96):
        self.e_mac, self.e_ac, self.e_byte = e_mac, e_ac, e_byte

    def synapses(self, rec: LayerOps, spiking: bool) -> Ledger:
        acs, macs = dense_or_events(rec, spiking)
        ledger = Ledger().add("ops", self.e_ac * acs + self.e_mac * macs)
        if rec.kind in ("conv", "linear"):  # a product of two activations (MatMul, Mul) reads no weights
            words = acs + macs + (rec.outputs if rec.bias else 0)
            ledger.add("weights", self.e_byte * words * WORD_BYTES, words * WORD_BYTES)
        return ledger

    def neurons(self, rec: NeuronOps) -> Ledger:
        words = 2 * rec.neuron_steps  # one read, one write
        return Ledger().add("potentials", self.e_byte * words * WORD_BYTES, words * WORD_BYTES)
