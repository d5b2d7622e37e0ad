"""What every memory mode shares: a tensor kept as it is (:class:`Kept`), the guard against an
in-place change after a tensor was saved (:class:`Guard`; autograd's own check is off under
saved-tensor hooks, so the modes make it), and :class:`LiveTable`, tensors recorded by their
storage while they live unchanged."""

from __future__ import annotations

import weakref

import torch


def version(t: torch.Tensor) -> int:
    """Autograd's count of in-place changes to ``t`` (shared with its views); inference tensors
    have none and never change under autograd."""
    return -1 if t.is_inference() else t._version


def modified(t: torch.Tensor, expected: int) -> RuntimeError:
    """Autograd's error for a saved tensor changed in place (the hooks switch autograd's check off)."""
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an inplace operation: "
        f"[{t.type()} {list(t.shape)}] is at version {t._version}; expected version {expected} instead "
        "(run.memory=lean makes autograd's check; run.memory=fast raises the same)")


class Guard:
    """The version a tensor had when saved, and a weak reference to the tensor whose version counter
    it shares (its base, for a view), to check at unpacking that it was not changed in place."""

    __slots__ = ("ref", "version")

    def __init__(self, t: torch.Tensor):
        root = t if t._base is None else t._base
        self.ref, self.version = weakref.ref(root), version(t)

    def check(self) -> None:
        root = self.ref()
        if root is not None and version(root) != self.version:
            raise modified(root, self.version)


class Kept:
    """A tensor saved as it is, with its version: unpacking it checks it was not changed in place."""

    __slots__ = ("tensor", "version")

    def __init__(self, t: torch.Tensor):  # detached: a recipe's argument must not keep a graph alive
        self.tensor, self.version = t.detach(), version(t)

    def unpack(self) -> torch.Tensor:
        if version(self.tensor) != self.version:
            raise modified(self.tensor, self.version)
        return self.tensor


class LiveTable:
    """Tensors recorded by storage, each with a payload: :meth:`get` finds ``t``'s entry only while
    the tensor recorded there lives (so its memory was not given to another tensor) and ``t`` has
    the version it was recorded with (no in-place change since)."""

    def __init__(self):
        self._entries: dict[int, tuple[weakref.ref, int, object]] = {}

    def record(self, t: torch.Tensor, payload: object = None) -> None:
        self._entries[t.untyped_storage().data_ptr()] = (weakref.ref(t), version(t), payload)

    def forget(self, t: torch.Tensor) -> None:
        self._entries.pop(t.untyped_storage().data_ptr(), None)

    def get(self, t: torch.Tensor) -> tuple[torch.Tensor, object] | None:
        """``(the recorded tensor, its payload)`` for ``t``, or None."""
        ptr = t.untyped_storage().data_ptr()
        entry = self._entries.get(ptr)
        if entry is None:
            return None
        alive = entry[0]()
        if alive is None or alive.untyped_storage().data_ptr() != ptr or version(t) != entry[1]:
            return None
        return alive, entry[2]

    def clear(self) -> None:
        self._entries.clear()


def unpacked(saved):
    """What a saved form (packed, a recipe, kept) gives back; anything else (a number) as it is."""
    unpack = getattr(saved, "unpack", None)
    return unpack() if unpack is not None and not isinstance(saved, torch.Tensor) else saved
