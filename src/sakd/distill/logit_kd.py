"""Logits KD: SAKD's eq. 7, which is Hinton et al.'s soft-target distillation.

Hinton, Vinyals, Dean (2015), "Distilling the knowledge in a neural network": the student matches
the teacher's class probabilities softened by a temperature τ, the loss scaled by τ² so that its
gradients keep their size as τ changes. SAKD (eq. 7) uses exactly this form,
``τ² · KL(p_τ^teacher ‖ p_τ^student)`` on the SNN's time-averaged logits; it is the ``gamma``
term of the shorthand (``distill.gamma``, ``distill.tau``). Hinton's soft cross-entropy
``-Σ p_τ^teacher log p_τ^student`` differs from this KL by the teacher's entropy, a constant for
the student: same gradients, so the project registers the one term, not two.
"""

from __future__ import annotations

import torch

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, soft_kl


@LOSSES.register("logit_kd")
class LogitKD(LossTerm):
    """Logits KD (SAKD eq. 7 = Hinton et al. 2015): tau^2 * KL(teacher || student) at temperature tau"""

    needs_teacher = True

    def __init__(self, tau: float = 4.0):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        return soft_kl(inputs.student_logits, inputs.teacher_logits, self.tau)
