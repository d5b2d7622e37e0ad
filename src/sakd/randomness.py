"""Random draws that a resumed run repeats exactly: one generator per training micro-batch.

A loss term or a neuron that draws at random (BKD's channel mask, a stochastic neuron, a plug-in's
noise) takes its generator from :func:`step_generator` instead of torch's global one::

    from sakd.randomness import step_generator

    mask = torch.rand(shape, device=x.device, generator=step_generator(x.device)) < p

During a training step the trainer opens :func:`step_draws` with ``(seed, epoch, step, micro-batch,
rank)``: the generator of each device is seeded from those numbers (:func:`mixed_seed`) at its
first use in the micro-batch and continues its stream for the further draws of that micro-batch.
So the draws of a step are a function of where the step is, not of what ran before it: a run
interrupted anywhere (mid-epoch or at an epoch's end, with any ``data.num_workers``) and resumed
draws what the uninterrupted run drew, and torch's global generator is left alone. Outside a
training step (a Python caller of a loss term) :func:`step_generator` returns None, which torch's
functions read as their global generator.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class StepDraws:
    """The draws of one open micro-batch: its place ``(seed, epoch, step, micro, rank)`` and the
    generators made for it so far, one per device."""

    place: tuple | None
    generators: dict[torch.device, torch.Generator] = field(default_factory=dict)

    def states(self) -> StepDraws:
        """A copy holding its generators' states now (``run.memory=min`` replays a block from them)."""
        return StepDraws(self.place, {d: g.get_state() for d, g in self.generators.items()})


# the open micro-batch's draws: a context's own (set by step_draws, nested and reset with it)
_DRAWS: contextvars.ContextVar[StepDraws | None] = contextvars.ContextVar("sakd_step_draws", default=None)


def mixed_seed(*parts) -> int:
    """A 63-bit seed mixed from ``parts`` (numbers or strings; no two lists share a stream in practice)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def step_draws(seed: int, epoch: int, step: int, micro: int = 0, rank: int = 0):
    """Within: :func:`step_generator` gives generators seeded by this micro-batch's place in the run."""
    token = _DRAWS.set(StepDraws((seed, epoch, step, micro, rank)))
    try:
        yield
    finally:
        _DRAWS.reset(token)


def step_generator(device: torch.device | str = "cpu") -> torch.Generator | None:
    """The generator of ``device`` for the open micro-batch (see the module), or None outside one."""
    draws = _DRAWS.get()
    if draws is None or draws.place is None:
        return None
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in draws.generators:
        draws.generators[device] = torch.Generator(device).manual_seed(mixed_seed("draws", *draws.place, device))
    return draws.generators[device]


def generator_states() -> StepDraws:
    """The open micro-batch's place and the states of its generators made so far (``run.memory=min``
    replays them, in backward, where the step's context may not be open)."""
    draws = _DRAWS.get()
    return draws.states() if draws is not None else StepDraws(None)


@contextlib.contextmanager
def generators_at(saved: StepDraws):
    """Within: the step's generators as they were at :func:`generator_states` (those made since are
    made again from the step's seed on first use); afterwards as they are now."""
    generators = {}
    for device, state in saved.generators.items():
        generators[device] = torch.Generator(device)
        generators[device].set_state(state)
    token = _DRAWS.set(StepDraws(saved.place, generators))
    try:
        yield
    finally:
        _DRAWS.reset(token)
