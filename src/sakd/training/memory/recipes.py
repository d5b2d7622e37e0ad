"""``lean``'s second saving: a neuron's input current (which the neuron saves for its BPTT) is not
kept but made again in backward from what is kept anyway: a BatchNorm's output by the same
``F.batch_norm`` call on the BatchNorm's input (which BatchNorm keeps for its own backward), a
residual sum from its two terms (a BatchNorm output made again, and packed spikes or another
BatchNorm output), the stem's output repeated over time from the stem's BatchNorm. In
conv -> BN -> LIF that leaves one float tensor per layer and timestep, plus bits, instead of two.

Outputs made again are those of *replayable* modules: ``BatchNorm1d/2d/3d`` running PyTorch's own
forward (subclasses with their own forward, such as SyncBatchNorm or the NAS supernet's, are kept
as they are) and modules marked ``replayable = True``, a pure function of their arguments
(:class:`~sakd.models.base.ResidualAdd`, :class:`~sakd.models.base.RepeatOverTime`; a new model
marks its own). An output is made again only where that keeps nothing backward would not keep
anyway: every argument is itself kept (packed spikes, another recipe, or a tensor saved as it is).
The output made again equals the saved one element for element (the same kernels on the same
inputs, under the same autocast state).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from sakd.training.memory.kept import Guard, Kept, LiveTable, unpacked


def replayable(module: nn.Module) -> bool:
    """Whether :func:`replay` can make ``module``'s output again: a module marked ``replayable``
    (a pure function of its arguments) or a BatchNorm running PyTorch's own forward."""
    return getattr(module, "replayable", False) or (
        isinstance(module, _BatchNorm) and type(module).forward is _BatchNorm.forward)


def replay(module: nn.Module) -> tuple[Callable[..., torch.Tensor], int]:
    """A function that makes a :func:`replayable` module's last output again from its arguments,
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
    """What makes one module output again, exactly: the module's computation (:func:`replay`),
    its arguments as kept (packed spikes, other recipes, tensors backward keeps anyway, numbers)
    and the autocast state of the forward."""

    def __init__(self, module: nn.Module, args: list, out: torch.Tensor, serial: int):
        self.fn, self.nbytes = replay(module)
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
                made = self.fn(*(unpacked(a) for a in self.args))
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


class OutputRecipes:
    """Records a recipe for each replayable module's output (forward hooks, first among a module's
    hooks so they see the output it made) and keeps a saved view of one as its recipe.

    ``lean_form``: what the step keeps of a tensor instead of it, or None (a recipe's arguments are
    kept that way); ``plain``: the tensors the step saved as they are; ``skip``: whether to record nothing now
    (inside a unit that ``min`` runs again: nothing there is kept)."""

    def __init__(self, lean_form: Callable, plain: LiveTable, skip: Callable[[], bool] = lambda: False):
        self.kept_form, self.plain, self.skip = lean_form, plain, skip
        self.outputs = LiveTable()
        self._serial = itertools.count()

    def hooks(self, model: nn.Module) -> list:
        return [m.register_forward_hook(self.record, prepend=True) for m in model.modules() if replayable(m)]

    def record(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        """A replayable module ran: its recipe, made now while its arguments live, lives with the
        output (and with what saves it); none where an argument is kept by nothing else."""
        if self.skip():
            return
        self.outputs.forget(output)
        args = []
        for a in inputs:
            if isinstance(a, torch.Tensor):
                a = self.kept_form(a) or (Kept(a) if self.plain.get(a) is not None else None)
                if a is None:
                    return
            args.append(a)
        self.outputs.record(output, Recipe(module, args, output, next(self._serial)))

    def lean_form(self, t: torch.Tensor) -> Recomputed | None:
        """``t`` as the recipe of the recorded output it is a view of (same dtype), else None."""
        found = self.outputs.get(t)
        if found is None or found[0].dtype != t.dtype:
            return None
        return Recomputed(found[1], t)

    def clear(self) -> None:
        self.outputs.clear()
