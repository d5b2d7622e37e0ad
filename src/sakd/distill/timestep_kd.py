"""Per-timestep logits KD: the ANN teacher's soft targets teach the SNN's logits at every
timestep, not only their mean.

Used by the temporal distillation work on SNNs, e.g. Yu, Zhao, Liu, Yang, Wang, Li, Wang (2025),
"Efficient logit-based knowledge distillation of deep spiking neural networks for full-range
timestep deployment" (ICML), whose per-timestep KD makes every prefix of the timesteps a good
classifier. The loss is ``Σ_t w_t · τ² · KL(p_τ^teacher ‖ p_τ(z_t))`` with weights summing to 1:
``uniform`` (the paper's), ``linear`` (w_t ∝ t: later timesteps, which have integrated more
input, weigh more), or an explicit list of T weights (normalised).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs


def timestep_weights(weighting: str | list[float], steps: int) -> list[float]:
    if weighting == "uniform":
        w = [1.0] * steps
    elif weighting == "linear":
        w = [float(t) for t in range(1, steps + 1)]
    elif (
        isinstance(weighting, (list, tuple))
        and len(weighting) == steps
        and all(x >= 0 for x in weighting)
        and sum(weighting) > 0
    ):
        w = [float(x) for x in weighting]
    else:
        raise ValueError(f"weighting must be 'uniform', 'linear' or {steps} non-negative weights, got {weighting!r}")
    return [x / sum(w) for x in w]


@LOSSES.register("timestep_kd")
class TimestepKD(LossTerm):
    """Per-timestep logits KD (e.g. Yu et al. 2025): the teacher's soft targets teach every timestep's logits"""

    needs_teacher = True
    across_time = True  # weights across the timesteps (under run.bptt=sltt, logit_kd is per timestep)

    def __init__(self, tau: float = 4.0, weighting: str | list[float] = "uniform"):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if isinstance(weighting, str):
            timestep_weights(weighting, 1)  # the name is checked now, list lengths at the first step
        self.tau, self.weighting = float(tau), weighting

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        z = inputs.timestep_logits()  # [T, B, K]
        w = torch.tensor(timestep_weights(self.weighting, z.shape[0]), dtype=z.dtype, device=z.device)
        log_ps = F.log_softmax(z / self.tau, dim=-1)
        log_pt = F.log_softmax(inputs.teacher_logits / self.tau, dim=-1).unsqueeze(0)
        per_step = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean(-1)  # KL of each timestep, batch mean
        return (w * per_step).sum() * self.tau * self.tau
