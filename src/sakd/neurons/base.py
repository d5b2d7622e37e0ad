"""What every spiking neuron shares: its base class, its registry, its settings and its layer.

* :class:`SpikingNeuron`: a multi-step layer from currents ``[T, B, ...]`` to spikes ``[T, B, ...]``
  (0./1. in the input's dtype), stateless between calls. Firing-rate monitors, feature taps and
  the analysis find spiking layers through this base class, whatever the neuron.
* :data:`NEURONS`: the registry (``sakd neurons`` lists it); a new neuron is one class in one file
  with ``@NEURONS.register("name")``.
* :class:`NeuronSpec`: the ``model.neuron`` settings; :meth:`NeuronSpec.build` passes each neuron
  the settings its constructor takes, plus ``options`` (a neuron's own further settings).
* :class:`SpikeActivation`: a neuron on time-folded tensors ``[T*B, ...]``, the form models use.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.fields import limited
from sakd.registry import Registered, Registry


class SpikingNeuron(nn.Module):
    """Base of every registered neuron: ``forward(x [T, B, ...]) -> spikes [T, B, ...]``.

    ``binary`` says whether every output element is exactly 0 or 1: ``True`` lets
    ``run.memory=lean`` keep the outputs as bits unchecked, ``False`` (ternary or graded spikes)
    keeps them as they are; ``None`` (not said) makes lean check each output.

    Two optional forms make a neuron complete (SpikingJelly's single-step / multi-step pair, without
    state kept in the module): :meth:`step`, one timestep with the state passed in and out, which
    step-by-step export (NIR, ONNX's unrolled graph) runs; and :meth:`nir_node`, the neuron as a
    NIR node. A neuron without :meth:`step` still exports to ONNX, traced over its multi-step
    ``forward``; one without :meth:`nir_node` is one clear error from the NIR exporter."""

    binary: bool | None = None

    def step(self, x: torch.Tensor, state):
        """One timestep: the current ``X_t`` ``[B, ...]`` and the state after the previous step
        (``None`` at rest, before the first) -> ``(spikes S_t, state)``. Running it over
        ``x[0], x[1], ...`` from ``None`` gives :meth:`forward`'s spikes."""
        raise NotImplementedError

    @property
    def has_step(self) -> bool:
        return type(self).step is not SpikingNeuron.step

    def ann_twin(self) -> nn.Module | None:
        """The ANN twin's activation where this neuron sits (QCFS's quantised clip, with its
        parameters under the same names), or ``None``: a ReLU."""
        return None

    def nir_node(self, shape: tuple[int, ...], dt: float, dtype):
        """A NIR node (``nir.LIF``, ``nir.IF``, ...) for a layer of ``shape`` (without the batch),
        for a consumer stepping with ``dt``, parameters in the numpy ``dtype``; ``None``: this
        neuron has no NIR description."""
        return None


def nir_threshold(v_th: float, dtype) -> np.ndarray:
    """The largest number of ``dtype`` below ``v_th``: NIR fires at ``v > v_threshold``, eq. 2 at
    ``v >= V_th``, so that NIR fires exactly where eq. 2 does, at V_th itself included."""
    return np.nextafter(np.asarray(v_th, dtype=dtype), np.asarray(-np.inf, dtype=dtype))


NEURONS: Registry[type[SpikingNeuron]] = Registry("neuron", keys=("model.neuron.name",), listed=("neurons",))


@dataclass(frozen=True)
class NeuronSpec:
    """The neuron of every spiking layer of a model (``model.neuron``)."""

    name: str = limited("lif", choices=Registered("model.neuron.name"))  # the neuron (lif: eq. 1-3)
    decay: float = limited(0.5, ge=0.0, le=1.0)  # the leak λ of eq. 1 (neurons without a leak ignore it)
    threshold: float = limited(1.0, gt=0.0)  # V_th of eq. 2
    # the spike's surrogate gradient (triangle: eq. 4)
    surrogate: str = limited("triangle", choices=Registered("model.neuron.surrogate"))
    surrogate_options: dict = field(default_factory=dict)  # its parameters, e.g. {alpha: 2} for sigmoid
    detach_reset: bool = False  # no gradient through the reset (eq. 3's S)
    reset: Literal["hard", "soft"] = "hard"  # hard: V = H(1 - S) (eq. 3); soft: V = H - S·V_th
    # compiled (torch.compile kernels) | fused (eager) | reference (autograd loop) | auto (compiled where it builds)
    backend: Literal["auto", "compiled", "fused", "reference"] = "auto"
    options: dict = field(default_factory=dict)  # a neuron's own further constructor arguments

    def ann_activation(self) -> nn.Module:
        """The ANN twin's activation where the SNN twin has this neuron: ``nn.ReLU``, or the
        neuron's own ANN form held by an :class:`ActivationSite` (QCFS's)."""
        ann = self.build().ann_twin()
        return nn.ReLU(inplace=False) if ann is None else ActivationSite(ann)

    def build(self) -> SpikingNeuron:
        cls = NEURONS.get(self.name)
        takes = inspect.signature(cls).parameters
        shared = {k: getattr(self, k) for k in ("decay", "threshold", "surrogate", "detach_reset", "reset", "backend")
                  if k in takes}
        if self.surrogate_options and "surrogate" in shared:
            shared["surrogate"] = {"name": self.surrogate, **self.surrogate_options}
        try:
            return cls(**shared, **self.options)
        except TypeError as exc:
            raise ConfigError(f"neuron {self.name!r}: bad model.neuron.options {self.options}: {exc}") from None


def neuron_spec(neuron: NeuronSpec | dict | None) -> NeuronSpec:
    """A :class:`NeuronSpec` from itself, a dict of its fields (as checkpoints record it) or None."""
    if neuron is None or isinstance(neuron, NeuronSpec):
        return neuron or NeuronSpec()
    known = set(inspect.signature(NeuronSpec).parameters)
    unknown = set(neuron) - known
    if unknown:
        raise ConfigError(f"unknown neuron setting(s) {sorted(unknown)}; known: {sorted(known)}")
    return NeuronSpec(**neuron)


class ActivationSite(nn.Module):
    """The ANN twin's activation where the SNN's neuron has parameters (QCFS's threshold): held as
    ``neuron``, as :class:`SpikeActivation` holds the neuron, so both twins' state dicts have the
    same keys and weights copy either way."""

    def __init__(self, activation: nn.Module):
        super().__init__()
        self.neuron = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(x)


class SpikeActivation(nn.Module):
    """A neuron on time-folded tensors: ``[T*B, ...] -> [T, B, ...] -> neuron -> [T*B, ...]``.

    ``online`` (``run.bptt=sltt``, :mod:`sakd.training.online`): each call is one timestep
    ``[B, ...]`` through the neuron's :meth:`~SpikingNeuron.step`, from the membrane the previous
    call left, detached (no gradient flows back through time); ``state = None`` starts at rest."""

    def __init__(self, timesteps: int, neuron: NeuronSpec):
        super().__init__()
        self.timesteps = timesteps
        self.neuron = neuron.build()
        self.online = False
        self.state = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.online:
            s, v = self.neuron.step(x, self.state)
            self.state = v.detach()
            return s
        return self.neuron(x.unflatten(0, (self.timesteps, -1))).flatten(0, 1)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}"
