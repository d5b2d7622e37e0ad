"""The energy-model registry and what every model shares: a :class:`Ledger` per layer (energy in
pJ and bytes moved, by component) and :func:`estimate`, which prices both sides, the SNN and its
ANN twin, by one model and gives per-image totals and the SNN/ANN ratio.

A model is a class registered in :data:`ENERGY_MODELS`; its constructor's keyword arguments are
its options (``--energy-option KEY=VALUE``), its class attributes ``source`` and ``assumes`` say
where its figures come from and what it takes for granted; it prices one layer at a time::

    @ENERGY_MODELS.register("mine")
    class Mine(EnergyModel):
        '''one line for sakd list energy-models'''
        source = "..."
        assumes = "..."

        def synapses(self, rec: LayerOps, spiking: bool) -> Ledger: ...   # Conv2d, Linear, MatMul, Mul
        def neurons(self, rec: NeuronOps) -> Ledger: ...                  # a spiking layer (SNN only)

Components (keys of a ledger): ``ops`` (arithmetic), ``addressing`` (locating an event's
synapses), and the memory traffic ``weights`` (weights and biases read), ``inputs`` (input spikes
or activations read), ``potentials`` (membrane potentials read and written) and ``outputs``
(output spikes or activations written). Every word is 32 bits (:data:`WORD_BYTES`).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

from sakd.analysis.energy import LayerOps, NeuronOps
from sakd.errors import ConfigError
from sakd.registry import Registry

WORD_BYTES = 4  # 32-bit weights, potentials and activations (the figures' precision); a spike is a word too
COMPONENTS = ("ops", "addressing", "weights", "inputs", "potentials", "outputs")
MEMORY = ("weights", "inputs", "potentials", "outputs")

ENERGY_MODELS: Registry = Registry("energy model", listed=("energy-models",),
                                   heading="energy models (sakd analyze --energy-model)")


@dataclass
class Ledger:
    """One layer's energy (pJ) and memory traffic (bytes), by component."""

    pj: dict[str, float] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)  # bytes

    def add(self, component: str, pj: float, nbytes: int = 0) -> Ledger:
        self.pj[component] = self.pj.get(component, 0.0) + pj
        if nbytes or component in MEMORY:
            self.moved[component] = self.moved.get(component, 0) + nbytes
        return self

    def total(self) -> float:
        return sum(self.pj.values())


class EnergyModel:
    """Base of every energy model: prices one layer's counts (totals over the images seen)."""

    source: str = ""
    assumes: str = ""

    def synapses(self, rec: LayerOps, spiking: bool) -> Ledger:
        raise NotImplementedError

    def neurons(self, rec: NeuronOps) -> Ledger:
        raise NotImplementedError

    def options(self) -> dict:
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}


def dense_or_events(rec: LayerOps, spiking: bool) -> tuple[int, int]:
    """What a model that counts memory prices, ``(accumulates, multiply-accumulates)``: where an
    SNN's input is spikes, the weight uses its spikes drive (events; none for a silent layer);
    everywhere else, as a dense layer works, every weight use, zeros included, as the ANN's
    (SpikingJelly's reading; zero padding left out on both sides)."""
    return (rec.ops, 0) if spiking and rec.binary else (0, rec.dense_macs)


def model_named(name: str, options: dict | None = None) -> EnergyModel:
    """The registered model ``name`` with ``options``; an option it does not take, or one of the
    wrong type, is one line naming it and the options it takes."""
    cls = ENERGY_MODELS.get(name)
    takes = inspect.signature(cls).parameters
    options = dict(options or {})
    extra = sorted(k for k in options if k not in takes)
    if extra:
        raise ConfigError(f"energy model {name!r} takes no option {', '.join(map(repr, extra))}; its options: "
                          f"{', '.join(f'{k}={p.default}' for k, p in takes.items()) or 'none'}")
    for key, value in options.items():
        default = takes[key].default
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if isinstance(default, int) and not (number and value == int(value) and value > 0):
            raise ConfigError(f"energy model {name!r}: option {key} must be a whole number >= 1, got {value!r}")
        if isinstance(default, float) and not (number and value >= 0):
            raise ConfigError(f"energy model {name!r}: option {key} must be a finite number >= 0, got {value!r}")
        options[key] = type(default)(value)
    return cls(**options)


def _per_image(ledger: Ledger, images: int) -> dict:
    return {"pj": {k: v / images for k, v in ledger.pj.items()},
            "bytes": {k: v / images for k, v in ledger.moved.items()}, "total_pj": ledger.total() / images}


def _sum(ledgers) -> Ledger:
    out = Ledger()
    for ledger in ledgers:
        for k, v in ledger.pj.items():
            out.add(k, v, ledger.moved.get(k, 0))
    return out


def estimate(name: str, snn_layers: dict[str, LayerOps], snn_neurons: dict[str, NeuronOps],
             ann_layers: dict[str, LayerOps], images: int, options: dict | None = None,
             ann_images: int | None = None) -> dict:
    """Price the SNN (``snn_layers`` and ``snn_neurons``, counted on ``images`` images) and its
    ANN twin (``ann_layers``, on ``ann_images``, default ``images``) by the model ``name``: per
    layer and in total, per image, energy by component, bytes moved and the SNN/ANN ratio."""
    model = model_named(name, options)
    snn = {n: model.synapses(r, spiking=True) for n, r in snn_layers.items()}
    snn.update({n: model.neurons(r) for n, r in snn_neurons.items()})
    ann = {n: model.synapses(r, spiking=False) for n, r in ann_layers.items()}
    ann_images = ann_images or images
    snn_total, ann_total = _sum(snn.values()), _sum(ann.values())
    total = {"snn": _per_image(snn_total, images), "ann": _per_image(ann_total, ann_images)}
    s, a = total["snn"]["total_pj"], total["ann"]["total_pj"]
    total |= {"snn_energy_pj": s, "ann_energy_pj": a, "energy_ratio": s / a if a else None,
              "snn_memory_share": sum(snn_total.pj.get(k, 0.0) for k in MEMORY) / snn_total.total()
              if snn_total.total() else None,
              "ann_memory_share": sum(ann_total.pj.get(k, 0.0) for k in MEMORY) / ann_total.total()
              if ann_total.total() else None}
    layers = {n: {"snn": _per_image(led, images),
                  **({"ann": _per_image(ann[n], ann_images)} if n in ann else {})} for n, led in snn.items()}
    doc = inspect.getdoc(type(model)) or ""
    return {"model": name, "description": doc.splitlines()[0] if doc else "", "source": model.source,
            "assumes": model.assumes, "options": model.options(), "word_bytes": WORD_BYTES, "images": images,
            "layers": layers, "total": total}
