"""The bytes a step keeps for backward, counted as the benchmarks report them: distinct storages
of tensors kept as they are (less ``exclude``: the parameters', alive anyway), packed bits, and
each recipe's own bytes and arguments, once."""

from __future__ import annotations

from sakd.training.memory.kept import Kept
from sakd.training.memory.packing import Packed
from sakd.training.memory.recipes import Recomputed


class ByteCount:
    def __init__(self, exclude: set[int] | None = None):
        self.exclude = exclude or set()
        self.kept: dict[object, int] = {}

    def add(self, saved) -> None:
        """Count what is kept of one saved tensor (and, for a recipe, of its arguments)."""
        if isinstance(saved, Packed):
            self.kept[("packed", id(saved))] = saved.nbytes  # alive in the step's cache until exit: ids unique
        elif isinstance(saved, Recomputed):
            recipe = saved.recipe
            if ("recipe", recipe.serial) not in self.kept:
                self.kept[("recipe", recipe.serial)] = recipe.nbytes
                for a in recipe.args:
                    self.add(a)
        elif isinstance(saved, Kept):
            storage = saved.tensor.untyped_storage()
            if storage.data_ptr() not in self.exclude:
                self.kept[storage.data_ptr()] = storage.nbytes()

    @property
    def nbytes(self) -> int:
        return sum(self.kept.values())
