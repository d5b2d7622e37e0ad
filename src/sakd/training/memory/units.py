"""``run.memory=min``: a unit (a residual block, a transformer block) keeps only its input, its
spikes packed as bits, and is run again in backward to make what its layers saved.

While a unit runs forward, what its operations save for backward is kept as a ``lean`` step keeps
it (spikes as bits, a BatchNorm's output and a residual sum as what makes them again: one float
tensor per layer, not two) and autograd gets place holders (``torch.autograd.graph.saved_tensors_hooks``).
Which units go on holding it is a plan's where there is one (a trainer's ``run.memory=min`` and
``run.memory_budget``: :mod:`~sakd.training.memory.budget`, measured); without one, the last units
of the forward do, while together they hold at most :attr:`Recomputing.footprint` times what the
largest unit held: backward needs them first, and
later runs the largest one again, which is then alive at about that multiple of what it keeps
(its kept convolution outputs beside the BatchNorm output, residual sum, unpacked input spikes
and incoming gradient it makes: ``benchmarks/peak_record.py``), so holding them does not raise the
step's peak and saves running them again (before a unit runs, room is made for it, guessed from
its input's size against the largest's); every earlier unit frees it.
The first time backward needs a freed tensor, the unit runs again from its kept input, under the
forward's random state (torch's CPU and CUDA generators and the step's generators of
:mod:`sakd.randomness`) and autocast state, with its BatchNorms' running statistics restored
afterwards (so they are updated once, by the forward), and what its operations save is handed to
the place holders in the order they were saved, kept as ``lean`` keeps it. The recomputation
runs the same kernels on the same values, so the saved tensors, and the gradients, are those of
``fast`` bit for bit (tested in float64 and float32). The autograd graph itself is the forward's:
taps inside a unit, loss terms on them and DistributedDataParallel see an ordinary graph.

A unit's input is kept packed where it is spikes (exact 0/1 values) and as it is otherwise (a
membrane-potential residual stream); everything else a freed unit made is freed after the forward.
A saved tensor is dropped once backward has used it; a second backward through the same graph
(``retain_graph``) runs the unit again, held or not.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sakd import randomness
from sakd.errors import ConfigError
from sakd.models.base import TwinModel
from sakd.training.memory.packing import Packed, dense_order, is_binary


def named_units(model: nn.Module) -> list[nn.Module]:
    """The units every sakd model in ``model`` names (:meth:`~sakd.models.base.TwinModel.recompute_units`)."""
    return [u for m in model.modules() if isinstance(m, TwinModel) for u in m.recompute_units()]


def recompute_units(model: nn.Module) -> list[nn.Module]:
    """The units ``run.memory=min`` runs again in backward (:func:`named_units`; one clear line
    where there are none)."""
    units = named_units(model)
    if not units:
        raise ConfigError("run.memory=min runs blocks again in backward, but this model names none "
                          "(TwinModel.recompute_units); use run.memory=lean")
    return units


def _binary(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.dim() > 0 and is_binary(t)


class _Input:
    """One argument of a unit call as kept: packed bits for spikes, else the value itself, with
    whether it required grad (the recomputation asks the same of it)."""

    def __init__(self, value, packing: str):
        self.requires_grad = isinstance(value, torch.Tensor) and value.requires_grad
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if _binary(value) and dense_order(value) is not None:
                value = Packed(value, packing)
        self.value = value

    @property
    def nbytes(self) -> int:
        if isinstance(self.value, Packed):
            return self.value.nbytes
        if isinstance(self.value, torch.Tensor):
            return self.value.untyped_storage().nbytes()
        return 0

    def get(self):
        value = self.value.unpack() if isinstance(self.value, Packed) else self.value
        if isinstance(value, torch.Tensor):
            value = value.detach().requires_grad_(self.requires_grad)
        return value


class _RandomState:
    """The random state at a unit's start: torch's CPU generator, the device's CUDA generator and
    the step's generators, to be replayed by the recomputation and left as they were after it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.steps = randomness.generator_states()

    @contextlib.contextmanager
    def replayed(self):
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), randomness.generators_at(self.steps):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def _norms(unit: nn.Module) -> list[_BatchNorm]:
    """A unit's BatchNorms: what its ``norms()`` names (a graph twin's block, which holds no
    module), else those among its modules."""
    if hasattr(unit, "norms"):
        return unit.norms()
    return [m for m in unit.modules() if isinstance(m, _BatchNorm)]


@contextlib.contextmanager
def _running_statistics_kept(norms: list[_BatchNorm]):
    """BatchNorm buffers (running mean and variance, batch count) as they are now, after the block."""
    kept = [{k: b.clone() for k, b in m.named_buffers(recurse=False) if b is not None} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():  # through .data: BatchNorm saves its statistics, whose version must not move
            for m, buffers in zip(norms, kept):
                for k, b in buffers.items():
                    getattr(m, k).data.copy_(b)


class UnitCall:
    """One forward call of a unit: its kept inputs, its random and autocast state, and the place
    holders of what its operations saved."""

    def __init__(self, run, args: tuple, packing: str, device: torch.device, members: nn.Module, saving,
                 choice: str = "lean"):
        self.run, self.packing, self.members, self.saving = run, packing, members, saving
        self.choice = choice  # a plan's (run.memory_budget): fast or lean (held as such) or again (freed)
        self.watch = None  # a plan measuring this call (MemoryBudget): what it saves, its time, its run again
        self.index = 0  # its place among the forward's block calls
        self.inputs = [_Input(a, packing) for a in args]
        self.elements = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
        self.random = _RandomState(device)
        self.context = contextvars.copy_context()  # the forward's: backward may run on another thread
        kind = device.type
        self.autocast = (kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))
        self.count = 0  # tensors saved in the forward
        self.saved: dict[int, object] = {}  # index -> as ``saving`` keeps it, until backward takes it
        self.held = 0  # bytes of what the forward saved, while held

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self.inputs)

    @property
    def mode(self) -> str:
        """How what it saves is kept: as it is (a block a plan holds as ``fast``) or as ``lean`` keeps it."""
        return "fast" if self.choice == "fast" else "lean"

    def begin(self, args: tuple) -> None:
        """The forward call starts (a forward pre-hook): until :meth:`end`, what its operations
        save is held as ``saving`` keeps it (a :meth:`release` later frees it, and backward then
        runs the unit again)."""
        alive = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}  # kept anyway
        alive |= {b.untyped_storage().data_ptr() for b in self.members.buffers()}
        self._open = contextlib.ExitStack()
        saving = self._open.enter_context(self.saving(self.members, alive, self.mode))
        self._mark_spikes(saving, args)
        watch = self.watch

        def keep(t):
            if isinstance(t, nn.Parameter):  # alive anyway
                return t
            index, self.count = self.count, self.count + 1
            self.saved[index] = saving.keep(t)
            if watch is not None:
                watch.saved(self, t)
            return (self, index)

        self._open.enter_context(torch.autograd.graph.saved_tensors_hooks(keep, UnitCall.unpack))
        self._saving = saving

    def end(self) -> None:
        """The forward call ended (a forward hook, called even if it raised)."""
        self._open.close()
        self.held = self._saving.kept_bytes
        self._open = self._saving = None

    def release(self) -> None:
        """Free what the forward saved: backward runs the unit again to make it."""
        self.saved.clear()
        self.held = 0

    def _mark_spikes(self, saving, args) -> None:
        if self.mode == "fast":
            return
        for i, a in zip(self.inputs, args):
            if isinstance(i.value, Packed):
                saving.mark_spikes(a)

    @staticmethod
    def unpack(holder):
        if isinstance(holder, torch.Tensor):
            return holder
        call, index = holder
        if index not in call.saved:
            call.recompute()
        return call.saved.pop(index).unpack()

    def recompute(self) -> None:
        """Run the unit again (in the forward's context: backward may run on autograd's device thread)."""
        if self.watch is not None:
            self.watch.run_again(self)
        self.context.copy().run(self._recompute)

    def _recompute(self) -> None:
        """Run the unit again and keep what its operations save, through ``saving`` (``lean``:
        spikes as bits, BatchNorm outputs and residual sums as what makes them again)."""
        captured: list = []
        kind, enabled, dtype = self.autocast
        args = [i.get() for i in self.inputs]
        with self.saving(self.members, set(), self.mode) as saving:
            self._mark_spikes(saving, args)

            def capture(t):  # what saving keeps holds no graph: the recomputation's own is never run
                if not isinstance(t, nn.Parameter):
                    captured.append(saving.keep(t))

            with self.random.replayed(), torch.enable_grad(), torch.autocast(kind, dtype=dtype, enabled=enabled), \
                    torch.autograd.graph.saved_tensors_hooks(capture, lambda _: None):
                self.run(*args)
        if len(captured) != self.count:
            raise RuntimeError(f"run.memory=min: a unit saved {len(captured)} tensors when run again but {self.count} "
                               "in the forward (it does not run the same operations twice); use run.memory=lean")
        self.saved = dict(enumerate(captured))
        captured.clear()  # the hooks' closures may outlive this call (autograd keeps them with its graph)


class Recomputing:
    """While active, each call of one of ``units`` runs as a :class:`UnitCall` (a forward pre-hook
    begins it, a forward hook ends it; the hooks go when the context closes); ``calls`` holds every
    call of the forward, for counting.

    ``saving``, a function of a unit's modules, the storages not to count (alive anyway: the
    unit's input, its buffers) and a mode (``lean``, or ``fast`` for a block a plan holds as it
    is), gives the context a unit's forward and its recomputation run in: its ``keep(t)`` returns
    what is kept of a saved tensor (an object whose ``unpack()`` gives it back), its
    ``mark_spikes(t)`` names the unit's input as spikes and its ``kept_bytes`` counts what it
    kept: ``run.memory=min`` passes :class:`sakd.training.memory.SavedTensors` over the unit's
    modules, counting. With a ``plan`` (``run.memory_budget``'s
    :class:`~sakd.training.memory.budget.MemoryBudget`), each call is held (as ``fast`` or
    ``lean`` keeps it) or freed as the plan chooses by its place in the forward, and the plan
    measures the calls of the steps it plans from; without one, the last calls are held within
    :attr:`footprint`."""

    # what the last units may hold together, as a multiple of what the largest unit holds: a unit
    # run again is alive at its peak at about 3x what it keeps (ResNet-19's first block, 1/4 width:
    # 8 MiB kept, 24 MiB of it alive then; benchmarks/results/peak_record-cpu.json). Measured side by
    # side on the full-width ResNet-19 SAKD step (B=8): 1x ran 6 of 8 blocks again, 3x 4, at the same
    # peak (126.1 MiB) and in less time (docs/speed-and-memory.md)
    footprint = 3.0

    def __init__(self, units: list[nn.Module], saving, packing: str = "bits", plan=None):
        self.units, self.packing, self.saving = units, packing, saving
        # a MemoryBudget (run.memory_budget): its choice for each call, by its place in the forward,
        # instead of the hold bound; it measures the calls of the step it plans from
        self.plan = plan
        self.calls: list[UnitCall] = []
        self.holding: list[UnitCall] = []  # the last calls, which hold what they saved
        self.largest = (0, 1)  # the most bytes one call of this forward held, and its input's elements
        self.depth = 0  # > 0 while a unit runs forward
        self._open: list[UnitCall | None] = []  # the calls running now, innermost last (None: not one)
        self._handles: list = []

    def _begin(self, unit: nn.Module):
        members = unit.members() if hasattr(unit, "members") else unit  # a graph twin's block holds no module

        def run(*args):  # the recomputation: the unit's own forward, no hooks, statistics left alone
            norms = [m for m in _norms(unit) if m.training]
            with _running_statistics_kept(norms) if norms else contextlib.nullcontext():
                return unit.forward(*args)

        def begin(module, args, kwargs):
            if not torch.is_grad_enabled() or self.depth:
                self._open.append(None)
                return
            if kwargs:
                self._open.append(None)
                raise ConfigError(f"run.memory=min runs {type(unit).__name__} again from its positional inputs, but it "
                                  f"was called with keyword arguments ({', '.join(kwargs)}); use run.memory=lean")
            device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
            plan = self.plan
            call = UnitCall(run, args, self.packing, device, members, self.saving,
                            plan.choice(len(self.calls)) if plan is not None else "lean")
            call.index = len(self.calls)
            self.calls.append(call)
            if plan is not None:
                plan.begin(call)
            elif self.holding:  # room for what this call will hold, guessed from its input's size
                most, elements = self.largest
                self._hold_at_most(self.footprint * most * (1 - call.elements / max(elements, 1)))
            self.depth += 1
            self._open.append(call)
            call.begin(args)

        return begin

    def _end(self, module, args, output) -> None:
        call = self._open.pop()
        if call is None:
            return
        self.depth -= 1
        call.end()
        if self.plan is not None:
            self.plan.end(call)
            if call.choice == "again":
                call.release()
            return
        self.holding.append(call)
        if call.held > self.largest[0]:
            self.largest = (call.held, call.elements)
        self._hold_at_most(self.footprint * self.largest[0])

    def _hold_at_most(self, nbytes: float) -> None:
        """Free the earliest held calls until the rest hold at most ``nbytes``."""
        while self.holding and sum(c.held for c in self.holding) > nbytes:
            self.holding.pop(0).release()

    @property
    def nbytes(self) -> int:
        """What the calls of this forward keep: their inputs (packed spikes, other tensors) and
        what the calls still held save."""
        return sum(call.nbytes + call.held for call in self.calls)

    def __enter__(self) -> Recomputing:
        for unit in self.units:  # begun last among the pre-hooks, ended first among the hooks
            self._handles += [unit.register_forward_pre_hook(self._begin(unit), with_kwargs=True),
                              unit.register_forward_hook(self._end, prepend=True, always_call=True)]
        return self

    def __exit__(self, *exc) -> None:
        for call in reversed(self._open):  # a forward stopped inside a unit (Ctrl-C): its contexts closed
            if call is not None:
                call.end()
        for h in self._handles:
            h.remove()
        self._handles, self._open = [], []
        self.calls, self.holding, self.largest = [], [], (0, 1)
