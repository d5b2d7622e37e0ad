"""``run.memory``: what a training step keeps for its backward pass, as small strategies.

* ``auto`` (the default, :func:`resolve_memory`): ``lean`` for a spiking model, ``fast`` for an ANN.
* ``fast``: autograd's default: every tensor an operation saves stays as it is.
* ``lean``: two savings, both exact: spikes kept as bits (:mod:`~sakd.training.memory.spikes`) and
  neuron input currents made again in backward from what is kept anyway
  (:mod:`~sakd.training.memory.recipes`).
* ``min``: ``lean``, and each block a model names (its ``recompute_units``) keeps only its input
  and runs again in backward (:mod:`~sakd.training.memory.units`), keeping then what ``lean``
  keeps of what it saves; exact too.

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

from sakd.training.memory.kept import Kept
from sakd.training.memory.packing import Packed
from sakd.training.memory.recipes import Recomputed
from sakd.training.memory.saved import MEMORY_MODES, SavedTensors
from sakd.training.memory.units import recompute_units

__all__ = ["MEMORY_MODES", "Kept", "Packed", "Recomputed", "SavedTensors", "recompute_units", "resolve_memory"]


def resolve_memory(mode: str, model: nn.Module) -> str:
    """``run.memory`` for ``model``: ``auto`` is ``lean`` for a spiking model and ``fast`` for an
    ANN, which has no spikes to pack and keeps no neuron inputs."""
    if mode == "min":
        recompute_units(model)  # one clear line where the model names no blocks
    if mode != "auto":
        return mode
    return "lean" if getattr(model, "spiking", False) else "fast"
