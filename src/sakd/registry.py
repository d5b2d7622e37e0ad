"""One registry type for every kind of plug-in: models, data sets, neurons, surrogates, loss terms,
feature transforms and distances, optimisers, schedulers, loggers, export formats and commands.

Registering is one decorator in the file that defines the part; nothing else needs an edit::

    from sakd.neurons import NEURONS

    @NEURONS.register("my_if")
    class MyIF(SpikingNeuron):
        '''Integrate-and-fire with ...: the first docstring line is the description ``sakd neurons`` lists.'''

The name defaults to the function's or class's own name (``def resnet50`` registers ``resnet50``,
so ``grep "def resnet50"`` finds it). An unknown name is one :class:`~sakd.errors.ConfigError`
that names the kind, suggests close matches and lists what is registered.

Each registry also knows where it shows: the config keys whose values name its parts (so the
config checks them, a run records the plug-in modules they came from, and a reader of the run
knows which ones it can go on without) and the ``sakd list`` kinds that list it. Those three
uses are one loop over :func:`registries`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import sys
from typing import Generic, TypeVar
from collections.abc import Callable

from sakd.errors import ConfigError

T = TypeVar("T")

# the modules that hold sakd's registries (importing them registers every built-in part): those of
# the parts a config names, and those only ``sakd list`` shows (export formats, commands), which a
# config never names, so that checking a config imports no command
HOMES = ("sakd.models", "sakd.data", "sakd.neurons", "sakd.distill", "sakd.training.optim", "sakd.training.loggers")
LISTED_HOMES = ("sakd.export", "sakd.analysis.energy_models", "sakd.cli.command")


class Registry(Generic[T]):
    """Named parts of one ``kind`` (a word for messages: "model", "data set", "neuron", ...).

    ``keys``: the config keys whose values name its parts (dotted; a list on the way is walked item
    by item: ``distill.terms.name``); ``sources``: a value names a part by its prefix
    (``model.name=torchvision:resnet18`` names the source ``torchvision``); ``listed``: the
    ``sakd list`` kinds that show it, ``heading`` its line there; ``training_only``: only training
    needs its parts, so a command that reads a run goes on without one that is gone."""

    def __init__(self, kind: str, *, keys: tuple[str, ...] = (), sources: bool = False, listed: tuple[str, ...] = (),
                 heading: str | None = None, training_only: bool = False):
        self.kind, self.keys, self.sources, self.listed = kind, tuple(keys), sources, tuple(listed)
        self.heading = heading or (f"{kind}s ({', '.join(keys)})" if keys else f"{kind}s")
        self.training_only = training_only
        self._parts: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._registered_in: dict[str, str | None] = {}

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

    def choices(self) -> list[str]:
        """What a config key may say: the names (``SOURCE:*`` for a registry of sources)."""
        return [f"{n}:*" for n in self.names()] if self.sources else self.names()

    def named_by(self, config: dict) -> set[str]:
        """The names of this registry's parts that a config (as a mapping) names."""
        values = {v for key in self.keys for v in values_at(config, key)}
        return {v.partition(":")[0] for v in values if ":" in v} if self.sources else values

    def describe(self) -> dict[str, str]:
        """Every name with its one-line description, sorted by name."""
        return {n: self._descriptions[n] for n in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._parts)


def values_at(data, key: str) -> list[str]:
    """The strings at a dotted ``key`` of nested mappings; a list on the way (or at the end) is
    walked item by item: ``values_at(config, "distill.terms.name")``."""
    items = [data]
    for part in key.split("."):
        items = [x[part] for item in items for x in (item if isinstance(item, list) else [item])
                 if isinstance(x, dict) and part in x]
    return [v for item in items for v in (item if isinstance(item, list) else [item]) if isinstance(v, str)]


def registries(listed: bool = False) -> list[Registry]:
    """The registries of the parts a config names, their homes imported (so every built-in part is
    registered); ``listed``: every registry ``sakd list`` shows (export formats and commands too)."""
    found: dict[int, Registry] = {}
    for home in (*HOMES, *LISTED_HOMES) if listed else HOMES:
        module = importlib.import_module(home)
        names = getattr(module, "__all__", None) or vars(module)  # in the order the home gives them
        for value in (getattr(module, name) for name in names):
            if isinstance(value, Registry):
                found.setdefault(id(value), value)
    return list(found.values())


class Registered:
    """A config field's choices: the names registered now (plug-ins included) in every registry
    whose parts the config key names; ``listed_by``: the command that lists them."""

    def __init__(self, key: str):
        self.key = key

    def __call__(self) -> list[str]:
        return [choice for r in registries() if self.key in r.keys for choice in r.choices()]

    @property
    def listed_by(self) -> str:
        kinds = [r.listed[0] for r in registries() if self.key in r.keys and r.listed]
        return f"sakd list {kinds[0]}" if kinds else ""


def import_submodules(package: str, path) -> None:
    """Import every module of a package (from its ``__init__``: ``import_submodules(__name__,
    __path__)``), so that a part added as a new file registers itself with no other edit."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
