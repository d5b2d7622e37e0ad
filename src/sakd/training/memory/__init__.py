"""``run.memory``: what a training step keeps for its backward pass, as small strategies.

* ``auto`` (the default, :func:`resolve_memory`): ``lean`` for a spiking model, ``fast`` for an ANN.
* ``fast``: autograd's default: every tensor an operation saves stays as it is.
* ``lean``: two savings, both exact: spikes kept as bits (:mod:`~sakd.training.memory.spikes`) and
  neuron input currents made again in backward from what is kept anyway
  (:mod:`~sakd.training.memory.recipes`).
* ``min``: ``lean``, and each block a model names (its ``recompute_units``) keeps only its input
  and runs again in backward (:mod:`~sakd.training.memory.units`), keeping then what ``lean``
  keeps of what it saves; exact too. In a trainer, the blocks whose holding does not raise the
  least step's peak hold what they saved instead (a :class:`MemoryBudget` at that peak).
* ``auto`` with ``run.memory_budget=SIZE``: each block holds what it saves (as ``fast`` or ``lean``
  keeps it) or runs again, planned from the run's first steps to fit the budget in the least time
  (:mod:`~sakd.training.memory.budget`; peaks measured by :mod:`~sakd.training.memory.meter`).

:class:`~sakd.training.memory.saved.SavedTensors` composes them around a step's forward, and
counts the bytes kept (:mod:`~sakd.training.memory.counting`). Every mode gives ``fast``'s
gradients and BatchNorm statistics bit for bit (``tests/test_memory.py``); what each costs and
saves is measured in ``benchmarks/suite.py`` (docs/speed-and-memory.md). A strategy that keeps a
saved tensor in another form (spikes, recipes) is a module here with ``hooks(model)`` (what it
records in the forward), ``lean_form(t)`` (what it keeps of ``t``, or None) and ``clear()``,
composed in ``SavedTensors.lean_form``; ``min``'s blocks (``Recomputing``) and the byte count
(``ByteCount``) are the two other parts ``SavedTensors`` holds.
"""

from torch import nn

from sakd.errors import ConfigError
from sakd.training.memory.budget import MemoryBudget
from sakd.training.memory.kept import Kept
from sakd.training.memory.packing import Packed
from sakd.training.memory.recipes import Recomputed
from sakd.training.memory.saved import MEMORY_MODES, SavedTensors
from sakd.training.memory.meter import StepPeaks, resident_bytes
from sakd.training.memory.units import named_units, recompute_units

__all__ = ["MEMORY_MODES", "Kept", "MemoryBudget", "Packed", "Recomputed", "SavedTensors", "StepPeaks",
           "recompute_units", "resident_bytes", "resolve_memory"]


def resolve_memory(mode: str, model: nn.Module, budget: int | None = None) -> str:
    """``run.memory`` for ``model``: ``auto`` is ``lean`` for a spiking model and ``fast`` for an
    ANN, which has no spikes to pack and keeps no neuron inputs; with a ``run.memory_budget``, it
    is ``min`` with each block's treatment planned (:class:`MemoryBudget`), or ``lean`` for a model
    that names no blocks."""
    if budget is not None:
        if mode != "auto":
            raise ConfigError(f"run.memory_budget chooses what each block keeps itself; it needs run.memory=auto, "
                              f"not run.memory={mode}")
        return "min" if named_units(model) else "lean"
    if mode == "min":
        recompute_units(model)  # one clear line where the model names no blocks
    if mode != "auto":
        return mode
    return "lean" if getattr(model, "spiking", False) else "fast"
