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
import hashlib

import torch

_step: tuple | None = None  # (seed, epoch, step, micro, rank) of the open micro-batch
_generators: dict[torch.device, torch.Generator] = {}


def mixed_seed(*parts) -> int:
    """A 63-bit seed mixed from ``parts`` (numbers or strings; no two lists share a stream in practice)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def step_draws(seed: int, epoch: int, step: int, micro: int = 0, rank: int = 0):
    """Within: :func:`step_generator` gives generators seeded by this micro-batch's place in the run."""
    global _step
    outer = _step, dict(_generators)
    _step = (seed, epoch, step, micro, rank)
    _generators.clear()
    try:
        yield
    finally:
        _step = outer[0]
        _generators.clear()
        _generators.update(outer[1])


def step_generator(device: torch.device | str = "cpu") -> torch.Generator | None:
    """The generator of ``device`` for the open micro-batch (see the module), or None outside one."""
    if _step is None:
        return None
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _generators:
        _generators[device] = torch.Generator(device).manual_seed(mixed_seed("draws", *_step, device))
    return _generators[device]


def generator_states() -> dict:
    """The states of the open micro-batch's generators made so far (``run.memory=min`` replays them)."""
    return {device: g.get_state() for device, g in _generators.items()}


@contextlib.contextmanager
def generators_at(states: dict):
    """Within: the step's generators as they were at :func:`generator_states` (those made since are
    made again from the step's seed on first use); afterwards as they are now."""
    outer = dict(_generators)
    _generators.clear()
    for device, state in states.items():
        _generators[device] = torch.Generator(device)
        _generators[device].set_state(state)
    try:
        yield
    finally:
        _generators.clear()
        _generators.update(outer)
