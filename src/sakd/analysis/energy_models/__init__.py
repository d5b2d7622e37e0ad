"""Energy models: what an SNN and its ANN twin cost, priced from one set of counts
(:class:`~sakd.analysis.energy.OpCounter`). ``sakd analyze --energy-model NAME`` (``sakd list
energy-models``) chooses one to show beside the operations-only figure; a new model is one file
here (or a plug-in module) with one class registered in :data:`ENERGY_MODELS`."""

from sakd.analysis.energy_models.registry import ENERGY_MODELS, WORD_BYTES, EnergyModel, Ledger, estimate
from sakd.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["ENERGY_MODELS", "WORD_BYTES", "EnergyModel", "Ledger", "estimate"]
