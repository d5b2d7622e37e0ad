"""``run.memory``: what a training step keeps for its backward pass.

* ``fast``: autograd's default: every tensor an operation saves stays as it is.
* ``lean``: spikes are binary, so a spike tensor that a later layer saves for its backward (the
  input of the convolution or linear layer a neuron feeds, a residual's downsampling conv, a
  feature transform) is stored packed, 1 bit per element (``packing="bits"``, 32x smaller than
  float32) or 1 byte (``"uint8"``, 4x), and unpacked, with its original shape, strides and dtype,
  when backward needs it. The unpacked tensor equals the saved one element for element, so the
  gradients are bit-identical to ``fast`` (tested in float64 and float32).

Spike tensors are recognised as the outputs of the model's spiking layers (every
:class:`~sakd.neurons.SpikeActivation`; a registered neuron emits exact 0/1 values). One spike
tensor saved by several layers is packed once. :class:`SavedTensors` also counts the bytes kept
(distinct storages, packed or not), which the benchmarks report. Contexts for one model nest: the
outermost decides (a benchmark that counts a trainer's step wraps it in its own).
"""

from __future__ import annotations

import weakref
from typing import Literal

import torch
from torch import nn

from sakd.neurons import SpikeActivation

MEMORY_MODES = ("fast", "lean")
PACKINGS = ("bits", "uint8")
_SHIFTS = {}


def _shifts(device) -> torch.Tensor:
    if device not in _SHIFTS:
        _SHIFTS[device] = torch.arange(8, dtype=torch.uint8, device=device)
    return _SHIFTS[device]


def _dense_order(t: torch.Tensor) -> list[int] | None:
    """The dimension order in which ``t`` is dense (contiguous after permuting), or None."""
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))
    return order if t.permute(order).is_contiguous() else None


class Packed:
    """A binary tensor stored as bits (or bytes), with what rebuilds it exactly."""

    def __init__(self, t: torch.Tensor, packing: str):
        self.shape, self.dtype = t.shape, t.dtype
        self.order = _dense_order(t)
        flat = (t.permute(self.order) if self.order else t).reshape(-1)
        self.numel = flat.numel()
        if packing == "uint8":
            self.data = flat.to(torch.uint8)
        else:
            bits = flat.to(torch.uint8)
            pad = (-self.numel) % 8
            if pad:
                bits = torch.cat([bits, bits.new_zeros(pad)])
            self.data = (bits.view(-1, 8) << _shifts(bits.device)).sum(1, dtype=torch.uint8)
        self.packing = packing

    @property
    def nbytes(self) -> int:
        return self.data.numel()

    def unpack(self) -> torch.Tensor:
        if self.packing == "uint8":
            flat = self.data.to(self.dtype)
        else:
            flat = ((self.data.unsqueeze(1) >> _shifts(self.data.device)) & 1).view(-1)[: self.numel].to(self.dtype)
        if self.order is None:
            return flat.view(self.shape)
        permuted = flat.view([self.shape[d] for d in self.order])
        return permuted.permute([self.order.index(d) for d in range(len(self.shape))])


class SavedTensors:
    """While active (a context manager around a forward pass), saved tensors go through this:
    with ``mode="lean"`` the spikes of ``model`` are packed; with ``count``, ``kept_bytes`` counts
    the bytes of the distinct storages kept for backward (``exclude``: storages not to count, such
    as the parameters')."""

    _active: list["SavedTensors"] = []

    def __init__(self, model: nn.Module, mode: Literal["fast", "lean"] = "fast", packing: str = "bits",
                 exclude: set[int] | None = None, count: bool = False):
        if mode not in MEMORY_MODES:
            raise ValueError(f"unknown memory mode {mode!r}; choose one of {MEMORY_MODES}")
        if packing not in PACKINGS:
            raise ValueError(f"unknown packing {packing!r}; choose one of {PACKINGS}")
        self.model, self.mode, self.packing, self.count = model, mode, packing, count
        self.exclude = exclude or set()
        self.kept: dict[object, int] = {}
        self._spikes: dict[int, weakref.ref] = {}
        self._packed: dict[int, dict[tuple, Packed]] = {}  # storage -> view -> its packed bits
        self._handles: list = []
        self._hooks = None

    @property
    def kept_bytes(self) -> int:
        return sum(self.kept.values())

    def _record(self, module, inputs, output):
        ptr = output.untyped_storage().data_ptr()
        self._spikes[ptr] = weakref.ref(output)
        self._packed.pop(ptr, None)  # a new spike tensor in memory that an earlier, freed one had

    def _is_spikes(self, t: torch.Tensor) -> bool:
        ref = self._spikes.get(t.untyped_storage().data_ptr())
        alive = ref() if ref is not None else None
        # the recorded spike tensor still lives, so its storage has not been reused
        return alive is not None and alive.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()

    def _pack(self, t: torch.Tensor):
        if self.mode == "lean" and t.dim() > 0 and self._is_spikes(t) and _dense_order(t) is not None:
            ptr = t.untyped_storage().data_ptr()
            key = (ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            views = self._packed.setdefault(ptr, {})
            packed = views.get(key)
            if packed is None:
                packed = views[key] = Packed(t, self.packing)
            if self.count:
                self.kept[("packed", key)] = packed.nbytes
            return packed
        if self.count:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in self.exclude:
                self.kept[ptr] = t.untyped_storage().nbytes()
        return t

    @staticmethod
    def _unpack(saved):
        return saved.unpack() if isinstance(saved, Packed) else saved

    def __enter__(self) -> "SavedTensors":
        self._inner = any(a.model is self.model for a in SavedTensors._active)
        if self._inner:  # an outer context for this model decides
            return self
        SavedTensors._active.append(self)
        if self.mode == "lean":
            self._handles = [m.register_forward_hook(self._record) for m in self.model.modules()
                             if isinstance(m, SpikeActivation)]
        if self.mode == "lean" or self.count:
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
            self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._inner:
            return
        SavedTensors._active.remove(self)
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self._hooks = None
        for h in self._handles:
            h.remove()
        self._handles = []
        self._spikes.clear()
        self._packed.clear()
