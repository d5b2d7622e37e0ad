"""``run.memory``: what a training step keeps for its backward pass.

* ``auto`` (the default, :func:`resolve_memory`): ``lean`` for a spiking model, ``fast`` for an ANN.
* ``fast``: autograd's default: every tensor an operation saves stays as it is.
* ``min``: ``lean``, and each block a model names (its ``recompute_units``) keeps only its input
  and runs again in backward (:mod:`sakd.training.recompute`), keeping then what ``lean`` keeps of
  what it saves (the last blocks, which together hold at most what the largest one does, hold it
  from the forward instead); exact too.
* ``lean``: two savings, both exact.

  - Spikes are binary, so a spike tensor that a later layer saves for its backward (the input of
    the convolution or linear layer a neuron feeds, a residual's downsampling conv, a feature
    transform) is stored packed, 1 bit per element (``packing="bits"``, 32x smaller than float32)
    or 1 byte (``"uint8"``, 4x), and unpacked, with its original shape, strides and dtype, when
    backward needs it.
  - A neuron's input current (which the neuron saves for its BPTT) is not kept but made again in
    backward from what is kept anyway: a BatchNorm's output by the same ``F.batch_norm`` call on
    the BatchNorm's input (which BatchNorm keeps for its own backward), a residual sum from its
    two terms (a BatchNorm output made again, and packed spikes or another BatchNorm output), the
    stem's output repeated over time from the stem's BatchNorm. In conv -> BN -> LIF that leaves
    one float tensor per layer and timestep, plus bits, instead of two floats.

  The unpacked or recomputed tensor equals the saved one element for element (the same kernels on
  the same inputs, under the same autocast state), so the gradients are bit-identical to ``fast``
  (tested in float64 and float32).

Spike tensors are recognised as the outputs of the model's spiking layers (every
:class:`~sakd.neurons.SpikeActivation`) whose neuron emits exact 0/1 values: a neuron says so with
``binary = True`` (LIF, IF, PLIF) or ``binary = False`` (ternary or graded spikes: never packed);
for a neuron that says nothing, each output is checked and packed only where it is exactly 0/1
(a layer that once gave another output is not checked again). Outputs made
again are those of *replayable* modules: ``BatchNorm1d/2d/3d`` running PyTorch's own forward
(subclasses with their own forward, such as SyncBatchNorm or the NAS supernet's, are kept as
they are) and modules marked ``replayable = True``, a pure function of their arguments
(:class:`~sakd.models.base.ResidualAdd`, :class:`~sakd.models.base.RepeatOverTime`; a new model
marks its own). An output is made again only where that keeps nothing backward would not keep
anyway. One spike tensor saved by several layers is packed once.

In-place operations are safe: each recorded tensor carries its version (autograd's counter of
in-place changes, shared by a tensor and its views). A tensor changed in place after it was
recorded (``out = bn(conv(s)); out += identity``, dropout in place on spikes) is not packed or made
again but kept as autograd keeps it; a tensor changed in place after it was saved raises autograd's
own error when backward needs it, as ``fast`` does (the saved-tensor hooks switch autograd's check
off, so this module makes it: for packed and recomputed tensors while the changed tensor, or the
tensor it is a view of, is alive, which covers a change before backward through any live view).
One case raises where ``fast`` would not: an argument of a module output that lean makes again
(the spikes a residual sum adds) changed in place after the module ran, which leaves nothing to
make the output from; ``run.memory=fast`` runs such a model.

:class:`SavedTensors` also counts the bytes kept (distinct storages, packed bits, the inputs of
outputs made again), which the benchmarks report. Contexts for one model nest: the outermost
decides (a benchmark that counts a trainer's step wraps it in its own).
"""

from __future__ import annotations

import contextvars
import itertools
import weakref
from typing import Literal
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from sakd.errors import ConfigError
from sakd.models.base import TwinModel
from sakd.neurons import SpikeActivation
from sakd.training.packing import PACKINGS, Packed, dense_order, is_binary
from sakd.training.recompute import Recomputing

MEMORY_MODES = ("fast", "lean", "min")


def recompute_units(model: nn.Module) -> list[nn.Module]:
    """The units ``run.memory=min`` runs again in backward: those every sakd model in ``model``
    names (:meth:`~sakd.models.base.TwinModel.recompute_units`)."""
    units = [u for m in model.modules() if isinstance(m, TwinModel) for u in m.recompute_units()]
    if not units:
        raise ConfigError("run.memory=min runs blocks again in backward, but this model names none "
                          "(TwinModel.recompute_units); use run.memory=lean")
    return units


def resolve_memory(mode: str, model: nn.Module) -> str:
    """``run.memory`` for ``model``: ``auto`` is ``lean`` for a spiking model (0.37x the memory of
    a SAKD step at 1.04-1.19x its time on CPU, ``benchmarks/suite.py`` figure 7) and ``fast`` for
    an ANN, which has no spikes to pack and keeps no neuron inputs."""
    if mode == "min":
        recompute_units(model)  # one clear line where the model names no blocks
    if mode != "auto":
        return mode
    return "lean" if getattr(model, "spiking", False) else "fast"
def _version(t: torch.Tensor) -> int:
    """Autograd's count of in-place changes to ``t`` (shared with its views); inference tensors
    have none and never change under autograd."""
    return -1 if t.is_inference() else t._version


def _emits_binary(layer: nn.Module, output: torch.Tensor, not_binary: weakref.WeakSet[nn.Module]) -> bool:
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


def _modified(t: torch.Tensor, expected: int) -> RuntimeError:
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
        self.ref, self.version = weakref.ref(root), _version(t)

    def check(self) -> None:
        root = self.ref()
        if root is not None and _version(root) != self.version:
            raise _modified(root, self.version)


class Kept:
    """A tensor saved as it is, with its version: unpacking it checks it was not changed in place."""

    __slots__ = ("tensor", "version")

    def __init__(self, t: torch.Tensor):  # detached: a recipe's argument must not keep a graph alive
        self.tensor, self.version = t.detach(), _version(t)

    def unpack(self) -> torch.Tensor:
        if _version(self.tensor) != self.version:
            raise _modified(self.tensor, self.version)
        return self.tensor


def _replayable(module: nn.Module) -> bool:
    """Whether :func:`_replay` can make ``module``'s output again: a module marked ``replayable``
    (a pure function of its arguments) or a BatchNorm running PyTorch's own forward."""
    return getattr(module, "replayable", False) or (
        isinstance(module, _BatchNorm) and type(module).forward is _BatchNorm.forward)


def _replay(module: nn.Module) -> tuple[Callable[..., torch.Tensor], int]:
    """A function that makes a :func:`_replayable` module's last output again from its arguments,
    exactly, and the bytes it holds.

    * a module marked ``replayable``: its own forward.
    * a BatchNorm: the same ``F.batch_norm`` call, with copies of the running statistics (so that
      the same kernel runs; in training they do not enter the output, and the copies, not the
      module's buffers, take the update).
    """
    if getattr(module, "replayable", False):
        return module.forward, 0
    tracked = not module.training or module.track_running_stats
    stats = [s.clone() if tracked and s is not None else None for s in (module.running_mean, module.running_var)]
    training = module.training or (module.running_mean is None and module.running_var is None)
    weight, bias, eps = module.weight, module.bias, module.eps

    def batch_norm(x):
        return F.batch_norm(x, *stats, weight, bias, training, 0.0, eps)

    return batch_norm, sum(s.untyped_storage().nbytes() for s in stats if s is not None)


class Recipe:
    """What makes one module output again, exactly: the module's computation (:func:`_replay`),
    its arguments as kept (packed spikes, other recipes, tensors backward keeps anyway, numbers)
    and the autocast state of the forward."""

    def __init__(self, module: nn.Module, args: list, out: torch.Tensor, serial: int):
        self.fn, self.nbytes = _replay(module)
        self.args, self.serial = args, serial
        device = out.device.type
        self.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        self.layout = (out.shape, out.stride(), out.storage_offset(), out.dtype)
        self._made: weakref.ref | None = None

    def output(self) -> torch.Tensor:
        made = self._made() if self._made is not None else None
        if made is None:  # several saved views of one output share one recomputation
            device, enabled, dtype = self.autocast
            with torch.autocast(device, dtype=dtype, enabled=enabled):
                made = self.fn(*(SavedTensors._unpack(a) for a in self.args))
            shape, stride, offset, dtype = self.layout
            if made.shape != shape or made.stride() != stride or made.dtype != dtype:
                raise RuntimeError(f"run.memory=lean: a recomputed output is laid out as {tuple(made.shape)}/"
                                   f"{made.stride()}/{made.dtype}, the forward's as {tuple(shape)}/{stride}/{dtype}")
            self._made = weakref.ref(made)
        return made


class Recomputed:
    """A saved view of a module output, kept as the :class:`Recipe` that makes the output again."""

    def __init__(self, recipe: Recipe, t: torch.Tensor):
        self.recipe = recipe
        self.view = (t.shape, t.stride(), t.storage_offset() - recipe.layout[2])
        self.guard = Guard(t)

    def unpack(self) -> torch.Tensor:
        self.guard.check()
        made = self.recipe.output()
        shape, stride, offset = self.view
        return made.as_strided(shape, stride, made.storage_offset() + offset)


# the SavedTensors open in this context, outermost first (an inner one for the same model defers to it)
_ACTIVE: contextvars.ContextVar[tuple[SavedTensors, ...]] = contextvars.ContextVar("sakd_saved_tensors", default=())


class SavedTensors:
    """While active (a context manager around a forward pass), saved tensors go through this:
    with ``mode="lean"`` the spikes of ``model`` are packed and the outputs of its replayable
    modules made again (``recompute=False``: packing only, for the benchmarks' breakdown); with
    ``count``, ``kept_bytes`` counts the bytes kept for backward (``exclude``: storages not to
    count, such as the parameters'). ``model`` is every module whose layers count: a trainer
    passes the student with its loss (the feature transforms' BatchNorms)."""

    def __init__(self, model: nn.Module, mode: Literal["fast", "lean", "min"] = "fast", packing: str = "bits",
                 exclude: set[int] | None = None, count: bool = False, recompute: bool = True):
        if mode not in MEMORY_MODES:
            raise ValueError(f"unknown memory mode {mode!r}; choose one of {MEMORY_MODES}")
        if packing not in PACKINGS:
            raise ValueError(f"unknown packing {packing!r}; choose one of {PACKINGS}")
        self.model, self.mode, self.packing, self.count = model, mode, packing, count
        self.recompute = recompute
        self.exclude = exclude or set()
        self.kept: dict[object, int] = {}
        # storage -> a live weak reference to the tensor recorded there and its version then:
        # spikes, module outputs with their recipe, tensors saved as they are (kept by backward anyway)
        self._spikes: dict[int, tuple[weakref.ref, int]] = {}
        self._outputs: dict[int, tuple[weakref.ref, int, Recipe]] = {}
        self._plain: dict[int, tuple[weakref.ref, int]] = {}
        self._packed: dict[int, dict[tuple, Packed]] = {}  # storage -> view -> its packed bits
        self._serial = itertools.count()
        self._not_binary: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # layers once seen not 0/1
        self._token = None
        self._handles: list = []
        self._hooks = None
        # min: a unit made again in backward keeps what a lean step would of what it saves
        def lean(members, alive):
            return SavedTensors(members, "lean", packing, exclude=alive, count=True)

        self._units = Recomputing(recompute_units(model), lean, packing) if mode == "min" else None
        self._unit_bytes = 0  # what min's blocks kept, counted when the context closes

    @property
    def kept_bytes(self) -> int:
        return sum(self.kept.values()) + self._unit_bytes + (self._units.nbytes if self._units is not None else 0)

    @staticmethod
    def _lookup(table: dict, t: torch.Tensor):
        """The entry of ``table`` for ``t``'s storage, if the tensor recorded there still lives (so
        that its memory has not been given to another tensor) and ``t`` has the version it was
        recorded with (no in-place change since), else None."""
        ptr = t.untyped_storage().data_ptr()
        entry = table.get(ptr)
        if entry is None:
            return None
        alive = entry[0]()
        if alive is None or alive.untyped_storage().data_ptr() != ptr or _version(t) != entry[1]:
            return None
        return entry

    def _record(self, module, inputs, output):
        ptr = output.untyped_storage().data_ptr()
        self._packed.pop(ptr, None)  # a new spike tensor in memory that an earlier, freed one had
        if _emits_binary(module, output, self._not_binary):
            self._spikes[ptr] = (weakref.ref(output), _version(output))
        else:
            self._spikes.pop(ptr, None)

    def _record_output(self, module, inputs, output):
        """A replayable module ran: its recipe, made now while its arguments live, lives with
        the output (and with what saves it); none where an argument is kept by nothing else, or
        inside a unit that ``min`` runs again (nothing there is kept)."""
        if self._units is not None and self._units.depth:
            return
        ptr = output.untyped_storage().data_ptr()
        self._outputs.pop(ptr, None)
        args = []
        for a in inputs:
            if isinstance(a, torch.Tensor):
                a = self._lean_form(a) or (Kept(a) if self._lookup(self._plain, a) else None)
                if a is None:
                    return
            args.append(a)
        recipe = Recipe(module, args, output, next(self._serial))
        self._outputs[ptr] = (weakref.ref(output), _version(output), recipe)

    def _lean_form(self, t: torch.Tensor):
        """``t`` packed (spikes) or as a recipe (a view of a replayable module's output), or None
        (also where ``t`` changed in place since it was recorded)."""
        if self._lookup(self._spikes, t) and t.dim() > 0 and dense_order(t) is not None:
            ptr = t.untyped_storage().data_ptr()
            key = (ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            views = self._packed.setdefault(ptr, {})
            if key not in views:
                views[key] = Packed(t, self.packing)
                views[key].guard = Guard(t)
            return views[key]
        entry = self._lookup(self._outputs, t)
        if entry is not None and entry[0]().dtype == t.dtype:
            return Recomputed(entry[2], t)
        return None

    def _count(self, saved) -> None:
        if isinstance(saved, Packed):
            self.kept[("packed", id(saved))] = saved.nbytes  # alive in the cache until exit: ids unique
        elif isinstance(saved, Recomputed):
            recipe = saved.recipe
            if ("recipe", recipe.serial) not in self.kept:
                self.kept[("recipe", recipe.serial)] = recipe.nbytes
                for a in recipe.args:
                    self._count(a)
        elif isinstance(saved, Kept):
            storage = saved.tensor.untyped_storage()
            if storage.data_ptr() not in self.exclude:
                self.kept[storage.data_ptr()] = storage.nbytes()

    def mark_spikes(self, t: torch.Tensor) -> None:
        """Take ``t`` for spikes, as if a binary spiking layer had made it (``min``: a unit's input)."""
        self._spikes[t.untyped_storage().data_ptr()] = (weakref.ref(t), _version(t))

    def pack(self, t: torch.Tensor):
        """What is kept of a tensor an operation saves: packed, a recipe, or the tensor itself."""
        saved = self._lean_form(t) if self.mode != "fast" else None
        if saved is None:
            saved = Kept(t)
            if self.mode != "fast":
                self._plain[t.untyped_storage().data_ptr()] = (weakref.ref(t), _version(t))
        if self.count:
            self._count(saved)
        return saved

    @staticmethod
    def _unpack(saved):
        return saved.unpack() if isinstance(saved, (Packed, Recomputed, Kept)) else saved

    def __enter__(self) -> SavedTensors:
        self._inner = any(a.model is self.model for a in _ACTIVE.get())
        if self._inner:  # an outer context for this model decides
            return self
        self._token = _ACTIVE.set((*_ACTIVE.get(), self))
        if self.mode != "fast":
            self._handles = [m.register_forward_hook(self._record) for m in self.model.modules()
                             if isinstance(m, SpikeActivation)]
            if self.recompute:  # first among the hooks, so it sees the output the module made
                self._handles += [m.register_forward_hook(self._record_output, prepend=True)
                                  for m in self.model.modules() if _replayable(m)]
        if self.mode != "fast" or self.count:
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self._unpack)
            self._hooks.__enter__()
        if self._units is not None:
            self._units.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._inner:
            return
        _ACTIVE.reset(self._token)
        if self._units is not None:
            self._unit_bytes = self._units.nbytes if self.count else 0
            self._units.__exit__(*exc)
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self._hooks = None
        for h in self._handles:
            h.remove()
        self._handles = []
        for table in (self._spikes, self._outputs, self._plain, self._packed):
            table.clear()
