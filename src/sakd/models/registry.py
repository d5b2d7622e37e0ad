"""The model registry: ``create_model("resnet19", spiking=True, num_classes=10)``.

A model is a function registered with ``@MODELS.register()`` under its own name (``def resnet50``
is ``resnet50``) that returns a :class:`~sakd.models.base.TwinModel`; its docstring's first line
is what ``sakd models`` lists.
"""

from __future__ import annotations

from sakd.errors import ConfigError
from sakd.models.base import TwinModel
from sakd.models.spec import ModelSpec
from sakd.neurons import NeuronSpec, neuron_spec
from sakd.registry import Registry

MODELS: Registry = Registry("model")


def list_models() -> dict[str, str]:
    """Registered model names and their one-line descriptions."""
    return MODELS.describe()


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
    builder = MODELS.get(name)
    neuron = neuron_spec(neuron)
    try:
        model = builder(
            num_classes=int(num_classes),
            spiking=bool(spiking),
            timesteps=int(timesteps),
            in_channels=int(in_channels),
            stem=stem,
            neuron=neuron,
            **options,
        )
    except TypeError as exc:
        given = f" (given: {sorted(options)})" if options else ""
        raise ConfigError(f"model {name!r}: bad model.options{given}: {exc}") from None
    model.spec = ModelSpec(name, bool(spiking), int(num_classes), int(timesteps), int(in_channels), stem, neuron,
                           dict(options))
    return model
