""":class:`SavedTensors`: the context a training step's forward runs in, through which every tensor
an operation saves for backward passes (``torch.autograd.graph.saved_tensors_hooks``). It composes
the strategies of ``run.memory``: spike packing (:mod:`~sakd.training.memory.spikes`), outputs made
again (:mod:`~sakd.training.memory.recipes`), blocks run again (``min``:
:mod:`~sakd.training.memory.units`) and byte counting (:mod:`~sakd.training.memory.counting`).

In-place operations are safe: each recorded tensor carries its version (autograd's counter of
in-place changes, shared by a tensor and its views). A tensor changed in place after it was
recorded (``out = bn(conv(s)); out += identity``, dropout in place on spikes) is not packed or made
again but kept as autograd keeps it; a tensor changed in place after it was saved raises autograd's
own error when backward needs it, as ``fast`` does (the saved-tensor hooks switch autograd's check
off, so the modes make it: for packed and recomputed tensors while the changed tensor, or the
tensor it is a view of, is alive, which covers a change before backward through any live view).
One case raises where ``fast`` would not: an argument of a module output that lean makes again
(the spikes a residual sum adds) changed in place after the module ran, which leaves nothing to
make the output from; ``run.memory=fast`` runs such a model. Contexts for one model nest: the
outermost decides (a benchmark that counts a trainer's step wraps it in its own).
"""

from __future__ import annotations

import contextvars
from typing import Literal

import torch
from torch import nn

from sakd.training.memory.counting import ByteCount
from sakd.training.memory.kept import Kept, LiveTable, unpacked
from sakd.training.memory.packing import PACKINGS
from sakd.training.memory.recipes import OutputRecipes
from sakd.training.memory.spikes import SpikePacking
from sakd.training.memory.units import Recomputing, recompute_units

MEMORY_MODES = ("fast", "lean", "min")

# the SavedTensors open in this context, outermost first (an inner one for the same model defers to it)
_ACTIVE: contextvars.ContextVar[tuple[SavedTensors, ...]] = contextvars.ContextVar("sakd_saved_tensors", default=())


class SavedTensors:
    """While active (a context manager around a forward pass), saved tensors go through this:
    with ``mode="lean"`` the spikes of ``model`` are packed (:attr:`spikes`) and the outputs of its
    replayable modules made again (:attr:`recipes`; ``recompute=False``: packing only, for the
    benchmarks' breakdown); ``min`` also runs ``model``'s blocks again (:attr:`units`); with
    ``count``, :attr:`kept_bytes` counts the bytes kept for backward (``exclude``: storages not to
    count, such as the parameters'); under ``min``, ``plan`` (a
    :class:`~sakd.training.memory.budget.MemoryBudget`) chooses for each block whether it holds
    what it saves, as it is or as ``lean`` keeps it, or runs again. ``model`` is every module
    whose layers count: a trainer passes the student with its loss (the feature transforms'
    BatchNorms)."""

    def __init__(self, model: nn.Module, mode: Literal["fast", "lean", "min"] = "fast", packing: str = "bits",
                 exclude: set[int] | None = None, count: bool = False, recompute: bool = True, plan=None):
        if mode not in MEMORY_MODES:
            raise ValueError(f"unknown memory mode {mode!r}; choose one of {MEMORY_MODES}")
        if packing not in PACKINGS:
            raise ValueError(f"unknown packing {packing!r}; choose one of {PACKINGS}")
        self.model, self.mode, self.packing = model, mode, packing
        lean = mode != "fast"
        self.plain = LiveTable()  # tensors saved as they are (a recipe's arguments may be among them)
        self.spikes = SpikePacking(packing) if lean else None
        self.units = Recomputing(recompute_units(model), self._unit_saving, packing, plan) if mode == "min" else None
        inside_unit = (lambda: self.units.depth > 0) if self.units is not None else (lambda: False)
        self.recipes = OutputRecipes(self.lean_form, self.plain, inside_unit) if lean and recompute else None
        self.counter = ByteCount(exclude) if count else None
        self._unit_bytes = 0  # what min's blocks kept, counted when the context closes
        self._token, self._handles, self._hooks, self._inner = None, [], None, False

    def _unit_saving(self, members: nn.Module, alive: set[int], mode: str) -> SavedTensors:
        """min: what a block keeps of what it saves, counted: a lean step's, or (``mode="fast"``, a
        block a plan holds as it is) autograd's."""
        return SavedTensors(members, mode, self.packing, exclude=alive, count=True)

    @property
    def kept_bytes(self) -> int:
        units = self._unit_bytes + (self.units.nbytes if self.units is not None else 0)
        return (self.counter.nbytes if self.counter is not None else 0) + units

    def lean_form(self, t: torch.Tensor):
        """What ``lean`` keeps of ``t`` instead of it (packed spikes, or a recipe), or None."""
        if self.spikes is not None:
            packed = self.spikes.lean_form(t)
            if packed is not None:
                return packed
        return self.recipes.lean_form(t) if self.recipes is not None else None

    def mark_spikes(self, t: torch.Tensor) -> None:
        """Take ``t`` for spikes, as if a binary spiking layer had made it (``min``: a unit's input)."""
        self.spikes.mark(t)

    def keep(self, t: torch.Tensor):
        """What is kept of a tensor an operation saves: packed, a recipe, or the tensor itself."""
        saved = self.lean_form(t) if self.mode != "fast" else None
        if saved is None:
            saved = Kept(t)
            if self.mode != "fast":
                self.plain.record(t)
        if self.counter is not None:
            self.counter.add(saved)
        return saved

    def __enter__(self) -> SavedTensors:
        self._inner = any(a.model is self.model for a in _ACTIVE.get())
        if self._inner:  # an outer context for this model decides
            return self
        self._token = _ACTIVE.set((*_ACTIVE.get(), self))
        for strategy in (self.spikes, self.recipes):
            if strategy is not None:
                self._handles += strategy.hooks(self.model)
        if self.mode != "fast" or self.counter is not None:
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self.keep, unpacked)
            self._hooks.__enter__()
        if self.units is not None:
            self.units.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._inner:
            return
        _ACTIVE.reset(self._token)
        if self.units is not None:
            self._unit_bytes = self.units.nbytes if self.counter is not None else 0
            self.units.__exit__(*exc)
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self._hooks = None
        for h in self._handles:
            h.remove()
        self._handles = []
        for strategy in (self.spikes, self.recipes, self.plain):
            if strategy is not None:
                strategy.clear()
