"""MEOM, "Many eyes, one mind": temporal multi-perspective and progressive distillation of an SNN
from its ANN teacher (Sun et al., ICLR 2026). Neither the paper's body nor the authors' code
(KaiSUN1/MEOM) was available here; this term follows the equations of two digests of the paper
and the code it builds on (Yu et al. 2025, SeAl), every open choice stated.

* **TMPD**, temporal multi-perspective distillation (weight ``tmpd``, the paper's 0.5): timestep
  ``t`` sees the teacher through its own fixed random channel mask ``m_t`` on the teacher's pooled
  last feature ``f`` (Bernoulli with ``keep`` = 0.5, drawn once from seed 0 when the term is
  built, and kept: "random, static"; not rescaled by 1/keep, and the same whatever ``run.seed``);
  its teacher is ``ẑ_t = (1 - λ) z_t^A + λ · head(f ⊙ m_t)``
  (λ = 0.5; ``head`` the teacher's classifier), detached, and the loss is
  ``(1/T) Σ_t τ² KL(p_τ(ẑ_t) ‖ p_τ(z_t))`` at τ = 3 (the lineage code's). Open: λ, ``keep``,
  the mask's form; the digests' mask algebra is read as a Hadamard product on the pooled feature.
* **TPD**, temporal progressive distillation (weight ``tpd``, the paper's 0.3): each prefix of the
  timesteps learns from the next, ``(1/(T-1)) Σ_{t<T} CE(softmax_τ(z̄_{≤t+1}), softmax_τ(z̄_{≤t}))``
  with ``z̄_{≤t}`` the mean of the first t timesteps' logits. Its temperature (``tpd_tau``) is
  TMPD's τ by default (``tpd_tau: null``): both digests write the prefixes' distribution as
  ``p̄_{≤t} = softmax_τ(z̄_{≤t})`` with the same τ as TMPD's softmax (the paper's equations 7-12
  could not be read here); a number sets another. The later prefix is not detached
  (``detach_target: false``): a reading of the authors' code (KaiSUN1/MEOM, ``tpd``) reports its
  target computed from the same graph without detaching; the digests state no stop-gradient.
  Without τ² (none is written for TPD). With T = 1 it is 0.

The paper's loss is ``1·(1/T) Σ_t CE(z_t, y) + 0.5·TMPD + 0.3·TPD`` (recipe
``cifar100/resnet19_meom``: ``timestep_ce`` + this term).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, check_head_input, pick_taps, soft_kl


def progressive_loss(z: torch.Tensor, detach_target: bool, tau: float = 1.0) -> torch.Tensor:
    """TPD of ``[T, B, K]`` logits: every prefix mean learns the next one's distribution."""
    steps = z.shape[0]
    if steps < 2:
        return z.new_zeros(())
    prefix = z.cumsum(0) / torch.arange(1, steps + 1, device=z.device, dtype=z.dtype).view(-1, 1, 1) / tau
    target = F.softmax(prefix[1:], -1)
    if detach_target:
        target = target.detach()
    return -(target * F.log_softmax(prefix[:-1], -1)).sum(-1).mean()


@LOSSES.register("meom")
class ManyEyesOneMind(LossTerm):
    """MEOM (ICLR 2026): per-timestep masked teacher views (TMPD) + prefix-to-prefix progressive distillation (TPD)"""

    needs_teacher = True
    needs_features = True
    feature_timesteps = False  # the student's features through time_mean only
    across_time = True

    def __init__(self, student_channels: list[int], teacher_channels: list[int], teacher_head, tmpd: float = 0.5,
                 tpd: float = 0.3, tau: float = 3.0, mix: float = 0.5, keep: float = 0.5, max_timesteps: int = 64,
                 detach_target: bool = False, tpd_tau: float | None = None, taps: list[int] | None = None):
        super().__init__()
        if tmpd < 0 or tpd < 0:
            raise ValueError(f"tmpd and tpd weights must be >= 0, got {tmpd}, {tpd}")
        tpd_tau = tau if tpd_tau is None else tpd_tau  # TMPD's τ, as the digests write TPD's softmax_τ
        if tau <= 0 or tpd_tau <= 0 or not 0 <= mix <= 1 or not 0 < keep <= 1:
            raise ValueError(
                f"need tau, tpd_tau > 0, mix in [0, 1], keep in (0, 1]; got {tau}, {tpd_tau}, {mix}, {keep}"
            )
        self.tpd_tau = float(tpd_tau)
        (self.tap,) = pick_taps("meom", taps, len(teacher_channels), [-1])
        self.tmpd, self.tpd, self.tau, self.mix, self.detach_target = (
            float(tmpd),
            float(tpd),
            float(tau),
            float(mix),
            bool(detach_target),
        )
        g = torch.Generator().manual_seed(0)
        masks = (torch.rand(max_timesteps, teacher_channels[self.tap], generator=g) < keep).float()
        self.register_buffer("masks", masks)  # one static mask per timestep, saved with the objective
        self._head = [teacher_head]  # a plain list: the teacher's classifier is not this term's parameter

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        z = inputs.timestep_logits()  # [T, B, K]
        total = z.new_zeros(())
        if self.tmpd:
            steps = z.shape[0]
            if steps > self.masks.shape[0]:
                raise ValueError(
                    f"meom has masks for {self.masks.shape[0]} timesteps (max_timesteps), the model runs {steps}"
                )
            check_head_input(self, self._head[0], inputs.teacher_features[self.tap], inputs.teacher_logits)
            with torch.no_grad():
                pooled = inputs.teacher_features[self.tap].mean((2, 3))  # [B, C]
                masked = self._head[0](
                    (pooled.unsqueeze(0) * self.masks[:steps, None, :].to(pooled.dtype)).flatten(0, 1)
                )
                views = (1 - self.mix) * inputs.teacher_logits + self.mix * masked.view(
                    steps, *inputs.teacher_logits.shape
                )
            total = total + self.tmpd * soft_kl(z, views, self.tau)
        if self.tpd:
            total = total + self.tpd * progressive_loss(z, self.detach_target, self.tpd_tau)
        return total
