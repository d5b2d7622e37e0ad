"""Head-tail-aware KL: logits distillation whose forward and reverse KL are weighed, per sample,
by where the student is furthest from the teacher (arXiv 2504.20445, "HTA-KL", ANN -> SNN).

The paper's method section and code were not available here; its abstract describes AKL's scheme
(Wu et al. 2024, "Rethinking Kullback-Leibler divergence in knowledge distillation for large
language models"). The head/tail rule follows the AKL authors' ``get_ratio`` (wutaiqiang/LLM_KD_AKL,
``AKL.py``) step for step: sort the teacher's probabilities p in descending order; the *head* is the prefix whose
cumulative teacher mass stays at or below μ (the top-1 class always in it), the *tail* the rest;
with the gaps ``e_k = |p_k - q_k|`` (q the student's, detached) ``w_F = Σ_head e / Σ e`` and
``w_R = 1 - w_F``; the loss is ``τ² · mean_b [w_F · KL(p ‖ q) + w_R · KL(q ‖ p)]``, both KLs
over all classes. Forward KL fits the head (the teacher's likely classes), reverse KL the tail.
Where this differs from ``get_ratio``: AKL (an LLM method) has no temperature, so its ratios come
from plain softmax; here p and q are at the term's τ, as its KLs are (HTA-KL's own choice could not
be read); and a row where p equals q exactly gets the weights (0, 0) where ``get_ratio`` divides 0
by 0. Choices left open by what could be read: μ (AKL's 0.5), τ (4, with sakd's τ² convention),
and where it applies: the SNN's mean-over-time logits (``per_timestep: false``, as the SNN KD
baselines the paper compares with) or each timestep's, averaged.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs


def head_tail_weights(p: torch.Tensor, q: torch.Tensor, mu: float) -> tuple[torch.Tensor, torch.Tensor]:
    """AKL's per-row weights ``(w_F, w_R)`` of teacher probabilities ``p`` and student ``q`` (detached)."""
    sorted_p, order = p.sort(dim=-1, descending=True)
    gap = (sorted_p - q.detach().gather(-1, order)).abs()
    tail = sorted_p.cumsum(-1) > mu
    tail[..., 0] = False  # the teacher's top-1 class is always in the head
    head_gap, tail_gap = gap.masked_fill(tail, 0).sum(-1), gap.masked_fill(~tail, 0).sum(-1)
    total = (head_gap + tail_gap).clamp_min(torch.finfo(p.dtype).tiny)
    return head_gap / total, tail_gap / total


def hta_kl(student: torch.Tensor, teacher: torch.Tensor, tau: float, mu: float) -> torch.Tensor:
    """``τ² · mean [w_F · KL(p ‖ q) + w_R · KL(q ‖ p)]`` over every row of ``[..., K]`` logits."""
    log_q, log_p = F.log_softmax(student / tau, -1), F.log_softmax(teacher / tau, -1)
    p, q = log_p.exp(), log_q.exp()
    w_f, w_r = head_tail_weights(p, q, mu)
    forward_kl = (p * (log_p - log_q)).sum(-1)
    reverse_kl = (q * (log_q - log_p)).sum(-1)
    return (w_f * forward_kl + w_r * reverse_kl).mean() * tau * tau


@LOSSES.register("hta_kl")
class HeadTailAwareKL(LossTerm):
    """Head-tail-aware KL (arXiv 2504.20445, AKL's weighting): forward KL on the head, reverse KL on the tail"""

    needs_teacher = True

    def __init__(self, tau: float = 4.0, mu: float = 0.5, per_timestep: bool = False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if not 0 < mu < 1:
            raise ValueError(f"mu must be in (0, 1), got {mu}")
        self.tau, self.mu, self.per_timestep = float(tau), float(mu), bool(per_timestep)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        t = inputs.teacher_logits
        if self.per_timestep:
            z = inputs.timestep_logits()
            return hta_kl(z, t.unsqueeze(0).expand_as(z), self.tau, self.mu)
        return hta_kl(inputs.student_logits, t, self.tau, self.mu)
