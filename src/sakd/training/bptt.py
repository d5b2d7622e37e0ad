"""How a training step backpropagates through time, chosen once per run (``run.bptt``).

``full`` (BPTT, the paper's): the student runs all T timesteps, the objective is computed once
and backpropagated through every timestep. ``sltt``: the student runs one timestep at a time and
each timestep's objective is backpropagated at once, with no gradient back through the membrane
(:mod:`sakd.training.online`): memory constant in T. Each is called with the trainer's
:meth:`~sakd.training.trainer.Trainer.step_loss` and returns the micro-batch's
``(loss, {term: value}, student logits)``. Gradients are synchronised across processes on a
step's last backward only: ``sync(last)`` (DistributedDataParallel's ``no_sync`` otherwise) holds
the forward and the backward together, since DDP decides in the forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from sakd.training.online import check_online, timestep_by_timestep


class FullBPTT:
    """Backpropagation through all T timesteps at once."""

    def __call__(self, step_loss: Callable, backward: Callable, sync: Callable, x, y, epoch: int, features: bool,
                 last_micro: bool):
        with sync(last_micro):
            loss, terms, logits = step_loss(x, y, epoch, features)
            backward(loss)
        return loss, terms, logits


class OneTimestepAtATime:
    """SLTT: each timestep's objective backpropagated as soon as it is computed; the loss and terms
    returned are their means over T, the logits the mean of the timesteps' logits."""

    def __init__(self, model: nn.Module, teacher_outputs: Callable):
        self.model, self.teacher_outputs = model, teacher_outputs

    def __call__(self, step_loss: Callable, backward: Callable, sync: Callable, x, y, epoch: int, features: bool,
                 last_micro: bool):
        t_logits, t_feats = self.teacher_outputs(x, features)

        def run_step(x_t, feats_t):
            return step_loss(x_t, y, epoch, features, (t_logits, feats_t))

        def backward_t(loss_t: torch.Tensor, last: bool):
            backward(loss_t)

        def sync_t(last: bool):
            return sync(last_micro and last)

        return timestep_by_timestep(self.model, x, t_feats, run_step, backward_t, self.model.timesteps, sync_t)


def bptt_strategy(name: str, model: nn.Module, terms: list, teacher_outputs: Callable):
    """The strategy ``run.bptt`` names, checked once against the model and the objective's terms."""
    if name == "sltt":
        check_online(model, terms)
        return OneTimestepAtATime(model, teacher_outputs)
    return FullBPTT()


def synchronised(module: nn.Module, distributed: bool, last: bool):
    """DistributedDataParallel synchronises gradients on a step's last backward only."""
    return contextlib.nullcontext() if last or not distributed else module.no_sync()
