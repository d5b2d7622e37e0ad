"""What a model is: :class:`ModelSpec`, the typed record from which it is built and which every
checkpoint keeps, so a teacher, ``sakd eval`` or a resumed run rebuilds exactly the model it holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from sakd.errors import CheckpointError
from sakd.neurons import NeuronSpec, neuron_spec


@dataclass(frozen=True)
class ModelSpec:
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
        from sakd.models.registry import create_model

        return create_model(self.name, spiking=self.spiking, num_classes=self.num_classes, timesteps=self.timesteps,
                            in_channels=self.in_channels, stem=self.stem, neuron=self.neuron, **self.options)

    def replace(self, **changes) -> "ModelSpec":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "ModelSpec":
        """From :meth:`to_dict`'s form (also a version-1 checkpoint's ``arch`` record)."""
        try:
            return cls(**{**record, "neuron": neuron_spec(record.get("neuron")), "options": dict(record.get("options", {}))})
        except TypeError as exc:
            raise CheckpointError(f"a checkpoint's model record {record} is not a model spec: {exc}") from None
