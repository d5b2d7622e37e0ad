"""Strong2Weak and Weak2Strong: self-distillation between an SNN's own timesteps, no teacher
(arXiv 2510.07924, NeurIPS 2025).

Each timestep's logits ``z_t`` are a sub-model. Every step, the batch-mean confidence of each
timestep, ``con(t) = mean_b max_k softmax(z_t)_k``, names the *strong* timestep (the most
confident) and the *weak* one (the least). ``strong2weak`` distils the strong timestep into the
weak, ``KL(p_τ(z_strong) ‖ p_τ(z_weak))``; ``weak2strong`` the weak into the strong,
``KL(p_τ(z_weak) ‖ p_τ(z_strong))``; at τ = 2 and weight λ = 1 in the paper, beside CE on the mean
logits (sakd's ``ce``). No labels: it runs under mixup. Where each choice comes from:

* **τ² (``tau_squared: true``).** The loss is ``L_S2W = α² · KL(p(t_s) ‖ p(t_w))`` with the
  temperature α = 2 (and ``L_W2S`` the same with the roles swapped), total ``L_CE + λ·L_S2W``,
  λ = 1: so a paper note transcribes the method section. The paper's own equation could not be
  read here (only its abstract and introduction were reachable) and the authors' code is not
  public, so this rests on that transcription; ``tau_squared: false`` gives the plain KL (4x
  smaller at τ = 2), which sakd used before this reading.
* **τ = 2, λ = 1**: the same transcription.
* **The teaching timestep carries no gradient** (``detach``): not stated in what could be read; a
  teacher's side is a target in every KD method the paper builds on.
* The KL is summed over classes and averaged over the batch (``batchmean``).

With T = 1 there is nothing to compare: the term is 0.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs


def strong_and_weak(z: torch.Tensor) -> tuple[int, int]:
    """The most and the least confident timesteps of ``[T, B, K]`` logits (batch-mean max probability)."""
    confidence = F.softmax(z.detach().float(), -1).amax(-1).mean(-1)  # [T]
    return int(confidence.argmax()), int(confidence.argmin())


class TimestepSelfDistillation(LossTerm):
    across_time = True
    strong_teaches: bool

    def __init__(self, tau: float = 2.0, detach: bool = True, tau_squared: bool = True):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau, self.detach, self.tau_squared = float(tau), bool(detach), bool(tau_squared)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        z = inputs.timestep_logits()
        if z.shape[0] < 2:
            return z.new_zeros(())
        strong, weak = strong_and_weak(z)
        teacher, student = (z[strong], z[weak]) if self.strong_teaches else (z[weak], z[strong])
        if self.detach:
            teacher = teacher.detach()
        log_t, log_s = F.log_softmax(teacher / self.tau, -1), F.log_softmax(student / self.tau, -1)
        loss = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
        return loss * self.tau ** 2 if self.tau_squared else loss


@LOSSES.register("strong2weak")
class StrongToWeak(TimestepSelfDistillation):
    """Strong2Weak (arXiv 2510.07924): the most confident timestep teaches the least confident, no teacher"""

    strong_teaches = True


@LOSSES.register("weak2strong")
class WeakToStrong(TimestepSelfDistillation):
    """Weak2Strong (arXiv 2510.07924): the least confident timestep teaches the most confident, no teacher"""

    strong_teaches = False
