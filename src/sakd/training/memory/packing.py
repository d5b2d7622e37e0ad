"""Binary tensors stored as bits (or bytes) and rebuilt exactly: what ``run.memory=lean`` and
``min`` keep of spikes."""

from __future__ import annotations

import functools
import sys

import torch

PACKINGS = ("bits", "uint8")
# Bits, little-endian: element i of a group of 8 is bit i of its byte. Packing reads the 8 bytes
# (0/1) of a group as one int64 whose byte i is element i; multiplying by the sum of 2^(7j),
# j = 1..8, puts element i at bit 56 + i with no carries (every partial product lands on its own
# bit), so bits 56-63 are the packed byte. Unpacking looks each byte up in a 256 x 8 table.
_GATHER = sum(1 << (7 * j) for j in range(1, 9))


def is_binary(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is exactly 0 or 1 (what may be stored as bits)."""
    return bool(((t == 0) | (t == 1)).all())


def _bytes(flat: torch.Tensor) -> torch.Tensor:
    """The 0/1 elements of ``flat`` as bytes 0/1: through bool, whose bytes are 0/1, since
    PyTorch's CPU kernels convert float to bool 5-10x faster than float to uint8."""
    return flat.bool().view(torch.uint8)


def _pack_bits(flat: torch.Tensor) -> torch.Tensor:
    if sys.byteorder != "little":
        raise RuntimeError("run.memory=lean packs spikes as bits on little-endian machines only; use fast")
    pad = (-flat.numel()) % 8
    data = _bytes(flat)
    if pad:
        data = torch.cat([data, data.new_zeros(pad)])
    return ((data.view(torch.int64) * _GATHER) >> 56).to(torch.uint8)


@functools.cache
def _bits_table(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Row b: the 8 bits of the byte b, little-endian (a constant, made once per device and dtype)."""
    byte = torch.arange(256, device=device).unsqueeze(1)
    return ((byte >> torch.arange(8, device=device)) & 1).to(dtype)


def _unpack_bits(data: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return _bits_table(data.device, dtype).index_select(0, data.int()).view(-1)


def dense_order(t: torch.Tensor) -> list[int] | None:
    """The dimension order in which ``t`` is dense (contiguous after permuting), or None."""
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))
    return order if t.permute(order).is_contiguous() else None


class Packed:
    """A binary tensor stored as bits (or bytes), with what rebuilds it exactly (and, from
    ``SavedTensors``, a guard against an in-place change after it was saved: an object whose
    ``check()`` raises)."""

    guard = None

    def __init__(self, t: torch.Tensor, packing: str):
        self.shape, self.dtype = t.shape, t.dtype
        self.order = dense_order(t)
        flat = (t.permute(self.order) if self.order else t).reshape(-1)
        self.numel = flat.numel()
        self.data = _bytes(flat) if packing == "uint8" else _pack_bits(flat)
        self.packing = packing

    @property
    def nbytes(self) -> int:
        return self.data.numel()

    def unpack(self) -> torch.Tensor:
        if self.guard is not None:
            self.guard.check()
        if self.packing == "uint8":
            flat = self.data.to(self.dtype)
        else:
            flat = _unpack_bits(self.data, self.dtype)[: self.numel]
        if self.order is None:
            return flat.view(self.shape)
        permuted = flat.view([self.shape[d] for d in self.order])
        return permuted.permute([self.order.index(d) for d in range(len(self.shape))])
