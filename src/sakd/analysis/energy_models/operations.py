"""Operations only: today's figure of the field (``sakd analyze``'s first table)."""

from __future__ import annotations

from sakd.analysis.energy import E_AC_PJ, E_MAC_PJ, LayerOps, NeuronOps, synaptic_ops
from sakd.analysis.energy_models.registry import ENERGY_MODELS, EnergyModel, Ledger


@ENERGY_MODELS.register("ops")
class Operations(EnergyModel):
    """E_MAC·MACs + E_AC·ACs (Horowitz 2014, 45 nm, 32-bit float): no memory traffic"""

    source = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014: 45 nm, "
              "32-bit float add 0.9 pJ, multiply 3.7 pJ; the SNN literature's usual figure")
    assumes = ("only arithmetic costs energy: weights, membrane potentials and activations move for free; "
               "neuron updates, BatchNorm (folded), residual additions and pooling are not counted")

    def __init__(self, e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ):
        self.e_mac, self.e_ac = e_mac, e_ac

    def synapses(self, rec: LayerOps, spiking: bool) -> Ledger:
        acs, macs = synaptic_ops(rec, spiking)
        return Ledger().add("ops", self.e_ac * acs + self.e_mac * macs)

    def neurons(self, rec: NeuronOps) -> Ledger:
        return Ledger()
