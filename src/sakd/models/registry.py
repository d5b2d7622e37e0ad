"""Model registry: ``create_model("resnet19", spiking=True, num_classes=10)``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Callable

from sakd.errors import ConfigError
from sakd.models.base import NeuronSpec, TwinModel


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., TwinModel]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, builder: Callable[..., TwinModel], description: str = "") -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, builder, description)


def list_models() -> dict[str, str]:
    """Registered model names and their one-line descriptions."""
    return {n: e.description for n, e in sorted(_REGISTRY.items())}


def check_model_name(name: str) -> None:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown model {name!r}.{hint} Registered: {', '.join(sorted(_REGISTRY))}")


def neuron_spec(neuron: NeuronSpec | dict | None) -> NeuronSpec:
    if neuron is None or isinstance(neuron, NeuronSpec):
        return neuron or NeuronSpec()
    known = {f.name for f in fields(NeuronSpec)}
    unknown = set(neuron) - known
    if unknown:
        raise ConfigError(f"unknown neuron option(s) {sorted(unknown)}; known: {sorted(known)}")
    return NeuronSpec(**neuron)


def create_model(
    name: str,
    *,
    spiking: bool,
    num_classes: int,
    timesteps: int = 4,
    in_channels: int = 3,
    stem: str = "cifar",
    neuron: NeuronSpec | dict | None = None,
    **options,
) -> TwinModel:
    """Build the ANN (``spiking=False``) or SNN (``spiking=True``) twin of a registered model.

    Both twins of one name have identical parameter and buffer names and shapes, so
    ``snn.load_state_dict(ann.state_dict())`` works strictly. ``options`` go to parametric models
    (``resnet_custom``: ``depths``, ``widths``, ``stem_width``, ...).
    """
    check_model_name(name)
    try:
        model = _REGISTRY[name].builder(
            num_classes=int(num_classes),
            spiking=bool(spiking),
            timesteps=int(timesteps),
            in_channels=int(in_channels),
            stem=stem,
            neuron=neuron_spec(neuron),
            **options,
        )
    except TypeError as exc:
        given = f" (given: {sorted(options)})" if options else ""
        raise ConfigError(f"model {name!r}: bad model.options{given}: {exc}") from None
    model.arch = name
    return model
