"""Decoupled KD: Zhao, Cui, Song, Qiu, Liang (2022), "Decoupled knowledge distillation" (CVPR).

The KD loss splits into target-class KD (TCKD: the KL between the binary distributions
[p_target, 1 - p_target] of teacher and student) and non-target-class KD (NCKD: the KL between
the distributions over the non-target classes, each renormalised); DKD weighs them freely:
``α·TCKD + β·NCKD``, both at temperature τ and scaled by τ², averaged over the batch. Defaults
are the paper's CIFAR-100 ones (α = 1, β = 8, τ = 4). The paper (and its mdistiller code) ramps
the loss up linearly over the first ``warmup`` epochs (20 of 240); ``warmup`` here counts epochs
of this run, 0 (no ramp) by default since short runs have few epochs to spare.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs


def dkd_parts(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, tau: float):
    """(TCKD, NCKD), each ``τ² · KL``, averaged over the batch."""
    gt = F.one_hot(target, student.shape[1]).bool()
    log_ps, log_pt = F.log_softmax(student / tau, 1), F.log_softmax(teacher / tau, 1)

    def binary(log_p, z):  # log [p_target, 1 - p_target], the second as a log-sum-exp of the others
        others = torch.logsumexp((z / tau).masked_fill(gt, float("-inf")), 1) - torch.logsumexp(z / tau, 1)
        return torch.stack([log_p[gt], others], 1)

    b_s, b_t = binary(log_ps, student), binary(log_pt, teacher)
    tckd = (b_t.exp() * (b_t - b_s)).sum(1).mean()
    rest = (~gt).nonzero(as_tuple=True)  # the non-target logits, [B, K - 1]
    n_s = F.log_softmax(student[rest].view(len(student), -1) / tau, 1)
    n_t = F.log_softmax(teacher[rest].view(len(teacher), -1) / tau, 1)
    nckd = (n_t.exp() * (n_t - n_s)).sum(1).mean()
    return tckd * tau * tau, nckd * tau * tau


@LOSSES.register("dkd")
class DecoupledKD(LossTerm):
    """Decoupled KD (Zhao et al. 2022): alpha * TCKD + beta * NCKD at temperature tau"""

    needs_teacher = True
    hard_labels = True  # splits the target class from the others

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, tau: float = 4.0, warmup: int = 0):
        super().__init__()
        if tau <= 0 or alpha < 0 or beta < 0 or warmup < 0:
            raise ValueError(f"needs tau > 0 and alpha, beta, warmup >= 0; got tau={tau}, alpha={alpha}, "
                             f"beta={beta}, warmup={warmup}")
        self.alpha, self.beta, self.tau, self.warmup = float(alpha), float(beta), float(tau), int(warmup)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        tckd, nckd = dkd_parts(inputs.student_logits, inputs.teacher_logits, inputs.target, self.tau)
        ramp = min((inputs.epoch + 1) / self.warmup, 1.0) if self.warmup else 1.0
        return ramp * (self.alpha * tckd + self.beta * nckd)
