"""One registry type for every kind of plug-in: models, data sets, neurons, surrogates, feature
transforms and distances, optimisers and schedulers.

Registering is one decorator in the file that defines the part; nothing else needs an edit::

    from sakd.neurons import NEURONS

    @NEURONS.register("my_if")
    class MyIF(SpikingNeuron):
        '''Integrate-and-fire with ...: the first docstring line is the description ``sakd neurons`` lists.'''

The name defaults to the function's or class's own name (``def resnet50`` registers ``resnet50``,
so ``grep "def resnet50"`` finds it). An unknown name is one :class:`~sakd.errors.ConfigError`
that names the kind, suggests close matches and lists what is registered.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import sys
from typing import Callable, Generic, TypeVar

from sakd.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named parts of one ``kind`` (a word for messages: "model", "data set", "neuron", ...)."""

    all: list["Registry"] = []  # every registry, for the plug-in modules that registered parts

    def __init__(self, kind: str):
        self.kind = kind
        self._parts: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._registered_in: dict[str, str | None] = {}
        Registry.all.append(self)

    def modules(self) -> dict[str, str]:
        """Each part's name and the module that registered it."""
        return {n: m for n, m in self._registered_in.items() if m}

    def register(self, name: str | None = None, *, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated function or class under ``name`` (default: its own)."""

        def add(part: T) -> T:
            key = name or part.__name__
            if key in self._parts:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._parts[key] = part
            # the module that registered it (a decorator or a call there), not where it was defined
            self._registered_in[key] = sys._getframe(1).f_globals.get("__name__")
            doc = inspect.getdoc(part) or ""
            self._descriptions[key] = description or (doc.splitlines()[0] if doc else "")
            return part

        return add

    def get(self, name: str) -> T:
        if name not in self._parts:
            raise self.unknown(name)
        return self._parts[name]

    def unknown(self, name) -> ConfigError:
        close = difflib.get_close_matches(str(name), self._parts, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        return ConfigError(f"unknown {self.kind} {name!r}.{hint} Registered: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return sorted(self._parts)

    def describe(self) -> dict[str, str]:
        """Every name with its one-line description, sorted by name."""
        return {n: self._descriptions[n] for n in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._parts)


def import_submodules(package: str, path) -> None:
    """Import every module of a package (from its ``__init__``: ``import_submodules(__name__,
    __path__)``), so that a part added as a new file registers itself with no other edit."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
