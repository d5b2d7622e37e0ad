"""``run.memory_budget=SIZE``: the fastest exact step that fits the memory a user states, planned
block by block from measurements of the run's own steps.

Each block the student names (the units ``run.memory=min`` runs again) gets one of three
treatments, every one exact (``fast``'s gradients and BatchNorm statistics bit for bit):

* ``fast``: what its operations save is held as autograd saves it;
* ``lean``: held as ``run.memory=lean`` keeps it (spikes as bits, BatchNorm outputs and residual
  sums as what makes them again): less memory, a little more time;
* ``again``: only its input is kept (spikes as bits), and backward runs it again: least memory,
  the time of a second forward of the block.

The rest of the step (the stem, the head, the loss and its transforms) runs ``lean``. A model
that names no blocks runs ``lean`` and is only checked against the budget.

``run.memory=min`` is the same plan with the least step's peak as its budget: the blocks whose
holding does not raise it (measured) hold what they saved, and the others run again. (A ``min``
step outside a trainer, without a plan, holds the last blocks while together they hold at most
:attr:`~sakd.training.memory.units.Recomputing.footprint` times the largest block's.)

**Measured.** The run's first two steps run every block again (the least memory). The second
(the first to start with what a previous step left, such as the taps' last features, whose frees
the CPU's profiler counts only if it saw them made: the first step runs under it too) measures
(:class:`~sakd.training.memory.meter.StepPeaks`) for each block the bytes it would hold as
``lean`` and as ``fast`` and its forward's time; and the step's peak memory in
segments, each begun by a block's forward, its end or its run again in backward.

**Planned.** A block that holds what it saved has it alive from its forward until backward has
gone through it: in the segments from its forward's end to its run again, and in none before or
after. While it runs (forward or backward) it holds what ``fast`` keeps beyond ``lean``, since
running it again made what ``lean`` holds. So a plan's peak is estimated as each measured
segment's peak plus what the plan's held blocks add to it (:func:`estimate`). Starting from every
block run again, the plan gives the block whose next treatment (``again`` -> ``lean`` ->
``fast``) saves the most time per byte it adds that treatment, while the estimate stays within
the budget; ``lean`` costs :data:`LEAN_COST` of a block's forward (``lean``'s whole-step time is
1.05-1.31x ``fast``'s in ``benchmarks/results/suite-cpu.json``, figures 7 and 10).

**Checked.** The estimate adds bytes to measured peaks but cannot see every tensor a treatment
moves (the allocator's rounding, what a held block's neighbours keep of its output), so the plan's
first step is measured too (it fits within :data:`NOISE` of the budget: what two identical steps'
peaks differ by). One above the budget plans again: within the budget lowered by the
estimate's error (at least by the excess; no lower than the least step's peak, which the
estimate of every block run again is), its blocks holding fewer bytes together than the plan
measured above it did (so ``run.memory=min``, whose budget is the least step's peak, holds fewer
blocks instead of none), until :data:`TRIES` plans were measured above it; then every block runs
again. Each epoch's first step checks the plan again (the loss terms a step runs
may change with the epoch), and plans again the same way where it is above.
A budget below what a step with every block run again was measured to need stops the run with
one line (the run has taken at most a few steps: without a checkpoint, its folder goes). The
plan changes only what is kept, never a value: a run's results do not depend on it, and a
resumed run plans again.

**Across processes** (``torchrun``): each process measures its own steps, and every measurement
and check is the largest any process made (``agree``), so that every process plans alike and a
budget one process cannot meet stops them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable

import torch

from sakd.errors import ConfigError
from sakd.training.memory.counting import ByteCount
from sakd.training.memory.kept import Kept
from sakd.training.memory.meter import StepPeaks

LEAN_COST = 0.1  # lean's extra time for a block, as a share of its forward's
TRIES = 3  # plans measured above the budget before every block runs again
# what two identical steps' peaks differ by (generator states, scalars: 128 B measured on CPU);
# a step within this of the budget fits it
NOISE = 64 * 1024
TREATMENTS = ("again", "lean", "fast")  # least memory first


def size_text(nbytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{int(nbytes)} B"


@dataclasses.dataclass
class BlockCost:
    """One block call's measurements (the largest over the step's forwards)."""

    lean: int = 0  # bytes it holds as lean keeps them (beside its input)
    fast: int = 0  # bytes it holds as autograd saves them
    seconds: float = 0.0  # its forward's time

    def holds(self, treatment: str) -> int:
        return {"again": 0, "lean": self.lean, "fast": self.fast}[treatment]

    def widen(self, other: BlockCost) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, max(getattr(self, f.name), getattr(other, f.name)))


def estimate(choices: list[str], costs: list[BlockCost], segments: list[tuple[tuple | None, int]]) -> int:
    """The plan's peak, estimated: each measured segment's peak with what the plan's held blocks
    add to it. A segment is labelled by what began it: ``("in", i)``, block ``i``'s forward or its run
    again in backward (the blocks before it are held, and it holds what ``fast`` keeps beyond
    ``lean``); ``("after", i)``, the end of its forward (it and the blocks before it are held);
    ``None``, the step's start (no block yet)."""
    each = [c.holds(t) for c, t in zip(costs, choices)]
    peak = 0
    for label, measured in segments:
        if label is None:
            peak = max(peak, measured)
            continue
        kind, i = label
        own = max(0, each[i] - costs[i].lean) if choices[i] != "again" else 0
        peak = max(peak, measured + (sum(each[:i]) + own if kind == "in" else sum(each[:i + 1])))
    return peak


def held(choices: list[str], costs: list[BlockCost]) -> int:
    """The bytes a plan's blocks hold together."""
    return sum(c.holds(t) for c, t in zip(costs, choices))


def plan(costs: list[BlockCost], segments: list[tuple[tuple | None, int]], limit: int,
         cap: int | None = None) -> list[str]:
    """The treatment of each block (greedy, most time saved per byte first), estimated within
    ``limit``, its blocks holding at most ``cap`` bytes together."""
    choices = ["again"] * len(costs)
    while True:
        best, best_score = None, -1.0
        for i, (cost, now) in enumerate(zip(costs, choices)):
            if now == "fast":
                continue
            nxt = TREATMENTS[TREATMENTS.index(now) + 1]
            trial = [*choices[:i], nxt, *choices[i + 1:]]
            if estimate(trial, costs, segments) > limit or (cap is not None and held(trial, costs) > cap):
                continue
            saved = cost.seconds * ((1 - LEAN_COST) if nxt == "lean" else LEAN_COST)
            score = saved / max(cost.holds(nxt) - cost.holds(now), 1)
            if score > best_score:
                best, best_score = (i, nxt), score
        if best is None:
            return choices
        choices[best[0]] = best[1]


class MemoryBudget:
    """A run's plan for ``run.memory_budget`` (its trainer owns it): :meth:`step` around each
    micro-batch's forward and backward measures the first steps; :meth:`choice` is what the
    blocks of a forward get (``run.memory=min``'s :class:`~sakd.training.memory.units.Recomputing`
    asks it). ``resident``: the bytes alive on the device before a step (CPU; CUDA counts them);
    ``say``: where the plan is reported; ``agree``: the largest of each of a list of measurements
    over the run's processes (one process: the list itself)."""

    def __init__(self, budget: int | None, device: torch.device, resident: Callable[[], int],
                 say: Callable[[str], None] = print, agree: Callable[[list[float]], list[float]] | None = None):
        self.budget, self.device, self.resident, self.say = budget, device, resident, say
        self.agree = agree or (lambda values: values)
        self.stated = budget is not None  # None: run.memory=min's plan, whose budget is the least step's peak
        # warm-up (the first step: every block runs again), measure (the next), check (the plan's
        # first step, and each re-plan's), planned
        self.state = "warm-up"
        self.choices: list[str] = []  # a block past the plan runs again
        self.costs: list[BlockCost] = []
        self.segments: list[tuple[tuple | None, int]] = []
        # bytes: the first step's peak, the plan's estimate and its measured peak
        self.least = self.predicted = self.measured = None
        self.margin, self.tries, self.checks = 0, 0, 0  # checks: the plan's measured steps
        self.cap: int | None = None  # below what the last plan measured above the budget held
        self._said: list[str] | None = None  # the plan last reported
        self._meter: StepPeaks | None = None
        self._labels: list[tuple | None] = []
        self._started: dict[int, float] = {}
        self._raw: dict[int, ByteCount] = {}

    def choice(self, index: int) -> str:
        """The treatment of the ``index``-th block call of a forward."""
        return self.choices[index] if index < len(self.choices) else "again"

    # -- what the blocks of a measured step report (Recomputing, UnitCall) -------------------------
    def begin(self, call) -> None:
        if self.state != "measure":
            return
        call.watch = self
        self._segment(("in", call.index))
        self._raw[id(call)] = ByteCount({b.untyped_storage().data_ptr() for b in call.members.buffers()})
        self._started[id(call)] = self._now()

    def saved(self, call, t: torch.Tensor) -> None:
        self._raw[id(call)].add(Kept(t))

    def end(self, call) -> None:
        if call.watch is not self:
            return
        cost = BlockCost(call.held, self._raw.pop(id(call)).nbytes, self._now() - self._started.pop(id(call)))
        self.costs += [BlockCost() for _ in range(call.index + 1 - len(self.costs))]
        self.costs[call.index].widen(cost)
        self._segment(("after", call.index))

    def run_again(self, call) -> None:
        if self._meter is not None:
            self._segment(("in", call.index))

    def _segment(self, label: tuple | None) -> None:
        self._meter.mark()
        self._labels.append(label)

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    # -- the steps -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self):
        """Around one micro-batch's forward and backward: measured (the first profiled only, so that
        the second's frees of what it left are counted) until the plan is checked."""
        if self.state == "planned":
            yield
            return
        if self.state == "warm-up":  # profiled too (CPU): the next step's frees of what it made are then counted
            with StepPeaks(self.device, 0):
                yield
            self.state = "measure"
            return
        self._meter, self._labels = StepPeaks(self.device, self.resident()), [None]
        try:
            with self._meter:
                yield
            segments = list(zip(self._labels, self._meter.segments))
        finally:
            self._meter, self._labels = None, []
            self._started.clear()
            self._raw.clear()
        if self.state == "measure":
            self._first(segments)
        else:
            self._check(int(self.agree([max(peak for _, peak in segments)])[0]))

    def _first(self, segments: list[tuple[tuple | None, int]]) -> None:
        costs = [v for c in self.costs for v in (c.lean, c.fast, c.seconds)]
        values = self.agree([peak for _, peak in segments] + costs)
        segments = [(label, int(v)) for (label, _), v in zip(segments, values)]
        rows = values[len(segments):]
        self.costs = [BlockCost(int(rows[i]), int(rows[i + 1]), rows[i + 2]) for i in range(0, len(rows), 3)]
        self.segments = segments
        self.least = max(peak for _, peak in segments)
        if not self.stated:
            self.budget = self.least
        elif self.least > self.budget + NOISE:
            self._too_small(self.least)
        self._plan()

    def _plan(self) -> None:
        self.choices = plan(self.costs, self.segments, max(self.budget - self.margin, self.least), self.cap)
        self.predicted = estimate(self.choices, self.costs, self.segments)
        self.state = "check"

    def recheck(self) -> None:
        """Measure the plan again on the next step (an epoch begins: its loss terms may differ)."""
        if self.state == "planned":
            self.state = "check"

    def _check(self, peak: int) -> None:
        self.measured, self.checks = peak, self.checks + 1
        if peak <= self.budget + NOISE or all(c == "again" for c in self.choices):
            if peak > self.budget + NOISE and self.stated:
                self._too_small(peak)
            self.state = "planned"  # (min above its budget: the least step, as it is)
            if self.choices != self._said:  # said once, and again where an epoch's check changed it
                self._said = list(self.choices)
                self.say(self.describe())
            return
        self.tries += 1
        if self.tries < TRIES:  # lower by the estimate's error (at least the excess), holding less than this plan
            self.margin = max(self.margin + peak - self.budget, peak - self.predicted)
            self.cap = held(self.choices, self.costs) - 1
            self._plan()
        else:
            self.choices, self.predicted = ["again"] * len(self.costs), self.least

    def _too_small(self, peak: int) -> None:
        what = "with every block run again" if self.costs else "(run.memory=lean; the model names no blocks)"
        raise ConfigError(f"run.memory_budget={size_text(self.budget)} is below the least this step needs: "
                          f"{size_text(peak)} measured {what}; raise it, or lower data.batch_size or model.timesteps")

    def describe(self) -> str:
        counts = {t: self.choices.count(t) for t in ("fast", "lean", "again")}
        blocks = ", ".join(f"{n} {'run again' if t == 'again' else t}" for t, n in counts.items() if n)
        what = f"run.memory_budget {size_text(self.budget)}" if self.stated else "run.memory=min"
        return (f"{what}: {blocks or 'no blocks (lean)'}; step peak {size_text(self.measured)} measured (every block "
                f"run again: {size_text(self.least)})")

