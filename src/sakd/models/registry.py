"""The model registry: ``create_model("resnet19", spiking=True, num_classes=10)``, and
:class:`ModelSpec`, what a model is (the record it is built from, kept by every checkpoint).

A model is a function registered with ``@MODELS.register()`` under its own name (``def resnet50``
is ``resnet50``) that returns a :class:`~sakd.models.base.TwinModel`; its docstring's first line
is what ``sakd models`` lists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from sakd.errors import CheckpointError, ConfigError
from sakd.models.base import TwinModel
from sakd.neurons import NeuronSpec, neuron_spec
from sakd.registry import Registry

MODELS: Registry = Registry("model", keys=("model.name", "distill.teacher.name"), listed=("models",),
                             heading="models (model.name)")
# where a "SOURCE:NAME" model comes from (sakd.models.sources: torchvision, timm, python)
MODEL_SOURCES: Registry = Registry(
    "model source", keys=("model.name", "distill.teacher.name"), sources=True, listed=("models",),
    heading="networks from elsewhere (model.name=SOURCE:NAME, twinned through torch.fx)")


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
    neuron = neuron_spec(neuron)
    if ":" in name:  # a network from a model source, twinned through its graph
        model = _sourced(name, spiking=spiking, num_classes=num_classes, timesteps=timesteps, in_channels=in_channels,
                         neuron=neuron, options=options)
    else:
        try:
            model = MODELS.get(name)(num_classes=int(num_classes), spiking=bool(spiking), timesteps=int(timesteps),
                                     in_channels=int(in_channels), stem=stem, neuron=neuron, **options)
        except TypeError as exc:
            given = f" (given: {sorted(options)})" if options else ""
            raise ConfigError(f"model {name!r}: bad model.options{given}: {exc}") from None
    model.spec = ModelSpec(name, bool(spiking), int(num_classes), int(timesteps), int(in_channels), stem, neuron,
                           dict(options))
    return model


def _sourced(name: str, *, spiking, num_classes, timesteps, in_channels, neuron, options) -> TwinModel:
    from sakd.models.graph_twin import OPTIONS, graph_twin

    source, _, rest = name.partition(":")
    build = MODEL_SOURCES.get(source)
    net = build(rest, num_classes=int(num_classes), in_channels=int(in_channels),
                **{k: v for k, v in options.items() if k not in OPTIONS})
    return graph_twin(
        net,
        source=name,
        spiking=bool(spiking),
        timesteps=int(timesteps),
        in_channels=int(in_channels),
        num_classes=int(num_classes),
        neuron=neuron,
        options={k: v for k, v in options.items() if k in OPTIONS},
    )


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: the typed record from which it is built and which every checkpoint keeps,
    so a teacher, ``sakd eval`` or a resumed run rebuilds exactly the model it holds."""

    name: str  # a registered model (``sakd models``)
    spiking: bool  # the SNN twin, or the ANN twin
    num_classes: int
    timesteps: int = 4
    in_channels: int = 3
    stem: str = "cifar"
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    options: dict = field(default_factory=dict)  # the model's own options (e.g. resnet_custom's depths)

    def build(self):
        """The :class:`~sakd.models.base.TwinModel` this spec describes (fresh weights)."""
        return create_model(self.name, spiking=self.spiking, num_classes=self.num_classes, timesteps=self.timesteps,
                            in_channels=self.in_channels, stem=self.stem, neuron=self.neuron, **self.options)

    def replace(self, **changes) -> ModelSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> ModelSpec:
        """From :meth:`to_dict`'s form (also a version-1 checkpoint's ``arch`` record)."""
        try:
            return cls(
                **{**record, "neuron": neuron_spec(record.get("neuron")), "options": dict(record.get("options", {}))}
            )
        except TypeError as exc:
            raise CheckpointError(f"a checkpoint's model record {record} is not a model spec: {exc}") from None
