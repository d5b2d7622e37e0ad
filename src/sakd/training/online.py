"""``run.bptt=sltt``: training whose memory does not grow with T (Meng et al., ICCV 2023, "Towards
Memory- and Time-Efficient Backpropagation for Training Spiking Neural Networks", SLTT).

BPTT carries the gradient back through time along the membrane, ``∂u[t+1]/∂u[t]`` and the reset's
``∂u[t+1]/∂s[t] · ∂s[t]/∂u[t]``. SLTT drops that whole temporal term and keeps the spatial one at
each timestep, ``∂L/∂u[t] ≈ ∂L[t]/∂s[t] · h'(u[t] - V_th)``, so each timestep's graph can be
differentiated and freed before the next one runs: the step runs the student T times, one timestep
each (:attr:`~sakd.neurons.SpikeActivation.online`: the membrane carried over detached, as the
authors' ``self.v = self.v.detach() * decay + x``), computes that timestep's objective on its own
logits and features, and backpropagates ``objective / T`` at once; the optimiser steps once, on the
sum. What the step keeps is one timestep's graph at batch B, whatever T.

As in the authors' code (qymeng94/SLTT, ``train_SLTT.py``): a static image is fed at every
timestep (event frames: frame t at timestep t), BatchNorm normalises each timestep's batch B (its
running statistics updated T times a step), and the objective is per timestep (their
``CE(out_t, y) / T``): sakd's cross-entropy reads timestep t's logits, logits KD compares them
with the teacher's, feature terms timestep t's features with the teacher's (its frame t's on
event data). Where a term is a function of the time-averaged logits (SAKD's KL, eq. 8) its SLTT
form is the mean of the per-timestep terms, not the term of the mean: a different objective,
stated. Terms that compare timesteps with each other (``timestep_kd``, ``temporal_sd``) have no
per-timestep form and are refused. A neuron needs :meth:`~sakd.neurons.SpikingNeuron.step`
(LIF, IF, PLIF have it). Not built: their MSE regulariser and SLTT-K (backpropagating K random
timesteps). Evaluation runs the whole T at once, as for ``full``.
"""

from __future__ import annotations

import contextlib

from torch import nn

from sakd.distill.spec import TermSpec
from sakd.errors import ConfigError
from sakd.models.base import TwinModel
from sakd.neurons import SpikeActivation

def check_online(model: nn.Module, terms: list[TermSpec]) -> None:
    """One line for what SLTT cannot run: a neuron without a single-timestep form, a term across time."""
    layers = [m for m in model.modules() if isinstance(m, SpikeActivation)]
    if not layers:
        raise ConfigError("run.bptt=sltt trains a spiking student; this model has no neurons")
    stepless = sorted({type(m.neuron).__name__ for m in layers if not m.neuron.has_step})
    if stepless:
        raise ConfigError(f"run.bptt=sltt runs one timestep at a time, but neuron {', '.join(stepless)} has no step(); "
                          "use run.bptt=full")
    across = [t.name for t in terms if t.part.across_time]
    if across:
        raise ConfigError(f"run.bptt=sltt computes each timestep's objective alone, but {', '.join(across)} compares "
                          "timesteps with each other; use run.bptt=full, or logit_kd (per timestep under sltt)")


@contextlib.contextmanager
def online(model: nn.Module):
    """Within: the model runs one timestep per call (``timesteps = 1``, its neurons online, from rest)."""
    layers = [m for m in model.modules() if isinstance(m, SpikeActivation)]
    twins = [m for m in model.modules() if isinstance(m, TwinModel) and m.spiking]
    kept = [(t, t.timesteps) for t in twins]
    for t in twins:
        t.timesteps = 1
    for m in layers:
        m.online, m.state = True, None
    try:
        yield
    finally:
        for t, steps in kept:
            t.timesteps = steps
        for m in layers:
            m.online, m.state = False, None


def timestep_by_timestep(model: nn.Module, x, teacher_features, run_step, backward, steps: int, sync=None):
    """One step of SLTT: for t = 0..T-1, ``run_step(x_t, teacher_features_t)`` (a static image at
    every timestep, event frames one each; the teacher's features of frame t on event data) gives
    ``(loss_t, terms_t, logits_t)``, and ``backward(loss_t / T, last)`` backpropagates it at once;
    both inside ``sync(last)`` (DistributedDataParallel's: gradients synchronised on the last
    timestep only, the forward included, as DDP decides in the forward). Returns the means over T
    of the losses and terms and of the timesteps' logits."""
    import torch

    frames = x.dim() == 5
    loss, terms, logits = 0.0, {}, []
    with online(model):
        for t in range(steps):
            x_t = x[t:t + 1] if frames else x
            feats = (
                [f[t : t + 1] for f in teacher_features]
                if frames and teacher_features is not None
                else teacher_features
            )
            last = t == steps - 1
            with sync(last) if sync is not None else contextlib.nullcontext():
                loss_t, terms_t, logits_t = run_step(x_t, feats)
                backward(loss_t / steps, last)
            loss = loss + loss_t.detach() / steps
            terms = {k: terms.get(k, 0.0) + v / steps for k, v in terms_t.items()}
            logits.append(logits_t.detach())
    return loss, terms, torch.stack(logits).mean(0)
