"""``lean``'s first saving: spikes are binary, so a spike tensor a later layer saves for its
backward (the input of the convolution or linear layer a neuron feeds, a residual's downsampling
conv, a feature transform) is kept packed, 1 bit per element (``packing="bits"``) or 1 byte
(``"uint8"``), and unpacked, with its shape, strides and dtype, when backward needs it.

Spike tensors are the outputs of the model's spiking layers (every
:class:`~sakd.neurons.SpikeActivation`) whose neuron emits exact 0/1 values: a neuron says so with
``binary = True`` (LIF, IF, PLIF) or ``binary = False`` (ternary or graded spikes: never packed);
for a neuron that says nothing, each output is checked and packed only where it is exactly 0/1 (a
layer that once gave another output is not checked again in the step). One spike tensor saved by
several layers is packed once.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from sakd.neurons import SpikeActivation
from sakd.training.memory.kept import Guard, LiveTable
from sakd.training.memory.packing import Packed, dense_order, is_binary


def emits_binary(layer: nn.Module, output: torch.Tensor, not_binary: weakref.WeakSet[nn.Module]) -> bool:
    """Whether a spiking layer's output may be packed as bits: what its neuron says
    (``binary = True / False``); for a neuron that says nothing, whether this output is exactly
    0/1 (checked every time, until one output is not: a graded neuron may start at 0/1; the layers
    seen not binary are in ``not_binary``, the step's own)."""
    declared = getattr(getattr(layer, "neuron", None), "binary", None)
    if declared is not None:
        return bool(declared)
    if layer in not_binary:
        return False
    if is_binary(output):
        return True
    not_binary.add(layer)
    return False


class SpikePacking:
    """Records the spiking layers' outputs (forward hooks) and keeps a saved spike tensor packed."""

    def __init__(self, packing: str):
        self.packing = packing
        self.spikes = LiveTable()
        self._packed: dict[int, dict[tuple, Packed]] = {}  # storage -> view -> its packed bits
        self._not_binary: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # layers once seen not 0/1

    def hooks(self, model: nn.Module) -> list:
        return [m.register_forward_hook(self.record) for m in model.modules() if isinstance(m, SpikeActivation)]

    def record(self, layer: nn.Module, inputs, output: torch.Tensor) -> None:
        """A spiking layer ran (a forward hook's arguments)."""
        self._packed.pop(output.untyped_storage().data_ptr(), None)  # new spikes where freed ones were
        if emits_binary(layer, output, self._not_binary):
            self.spikes.record(output)
        else:
            self.spikes.forget(output)

    def mark(self, t: torch.Tensor) -> None:
        """Take ``t`` for spikes, as if a binary spiking layer had made it (``min``: a unit's input)."""
        self.spikes.record(t)

    def lean_form(self, t: torch.Tensor) -> Packed | None:
        """``t`` packed, if it is a recorded spike tensor unchanged since (else None)."""
        if self.spikes.get(t) is None or t.dim() == 0 or dense_order(t) is None:
            return None
        ptr = t.untyped_storage().data_ptr()
        key = (ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        views = self._packed.setdefault(ptr, {})
        if key not in views:
            views[key] = Packed(t, self.packing)
            views[key].guard = Guard(t)
        return views[key]

    def clear(self) -> None:
        self.spikes.clear()
        self._packed.clear()
