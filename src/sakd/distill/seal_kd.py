"""SeAl-KD: selective alignment distillation of an SNN from its ANN teacher (Sun, Duan, Huang,
Zhang, Smith, Gong, Kuhlmann 2026, "Not all timesteps matter equally", arXiv 2605.14252),
written from the authors' code (KaiSUN1/SeAl: ``model/layer.py``, ``experiment/cifar/main.py``).

Two parts, both at every timestep and both at τ = 3 with τ²:

* **ELA**, error-aware logit alignment (``seal_kd``'s ``ela`` weight α): per sample and timestep,
  where the student's class ``w = argmax z_t`` is not the label ``y``, the student's logit of ``w``
  is replaced by (a copy of) its logit of ``y`` and the teacher's logits of ``y`` and ``w`` both by
  the smaller of the two; then KD ``τ² · KL(p_τ(teacher) ‖ p_τ(student))``, batch mean,
  averaged over T. Where the student is right it is plain per-timestep KD. (As in the code, the
  replaced logit gets no gradient, and the lowered teacher target can pull ``z_t[y]`` down; the
  cross-entropy corrects it.) Reads the labels' classes: not with mixup.
* **STA**, similarity-aware temporal alignment (``sta`` weight β; ``seal_sta`` alone, no teacher):
  each timestep ``i`` learns from a mix of the other timesteps' logits, ``Σ_{j≠i} w_ij z_j``
  (detached), ``w_ij = softmax_j(c_j · cos(z_i, z_j))`` with ``c_j = 1 - H(softmax z_j) / ln K``
  the confidence of timestep ``j``; KD at τ = 3 over all T·B rows.

The authors' loss is ``(1/T) Σ_t CE(z_t, y) + 0.6 · ELA + 0.15 · STA`` (README, CIFAR): the
per-timestep CE is ``timestep_ce`` (recipe ``cifar100/resnet19_seal_kd``). With T = 1, STA is 0.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, soft_kl


def error_aware_alignment(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ELA's aligned ``(student, teacher)`` logits ``[N, K]`` for labels ``y`` ``[N]``."""
    w = s.detach().argmax(-1)
    wrong = (w != y).unsqueeze(-1)
    at_w, at_y = F.one_hot(w, s.shape[-1]).bool() & wrong, F.one_hot(y, s.shape[-1]).bool() & wrong
    s_y = s.gather(-1, y.unsqueeze(-1))
    s_aligned = torch.where(at_w, s_y, s)
    low = torch.minimum(t.gather(-1, y.unsqueeze(-1)), t.gather(-1, w.unsqueeze(-1)))
    t_aligned = torch.where(at_w | at_y, low, t)
    return s_aligned, t_aligned.detach()


def temporal_alignment_targets(z: torch.Tensor) -> torch.Tensor:
    """STA's teacher of each timestep, ``[T, B, K]``: the similarity- and confidence-weighted mix
    of the other timesteps' logits (detached)."""
    z = z.detach()
    steps, classes = z.shape[0], z.shape[-1]
    probs = F.softmax(z, -1)
    entropy = -(probs * torch.log(probs + 1e-8)).sum(-1)
    confidence = (math.log(classes) - entropy) / math.log(classes)  # [T, B]
    unit = F.normalize(z, dim=-1)
    cos = torch.einsum("ibk,jbk->ijb", unit, unit)  # [T_i, T_j, B]
    scores = confidence.unsqueeze(0) * cos  # the confidence of the teaching timestep j
    scores = scores.masked_fill(torch.eye(steps, dtype=torch.bool, device=z.device).unsqueeze(-1), float("-inf"))
    weights = F.softmax(scores, dim=1)
    return torch.einsum("ijb,jbk->ibk", weights, z)


def sta_loss(z: torch.Tensor, tau: float) -> torch.Tensor:
    if z.shape[0] < 2:
        return z.new_zeros(())
    return soft_kl(z, temporal_alignment_targets(z), tau)


def ela_loss(z: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    steps = z.shape[0]
    s, t = error_aware_alignment(z.flatten(0, 1), teacher.repeat(steps, 1), y.repeat(steps))
    return soft_kl(s, t, tau)  # the batch mean of every timestep's KD = their mean over T


def _check_tau(tau: float) -> float:
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    return float(tau)


@LOSSES.register("seal_kd")
class SelectiveAlignmentKD(LossTerm):
    """SeAl-KD (arXiv 2605.14252): error-aware logit alignment to the ANN + similarity-aware alignment over time"""

    needs_teacher = True
    hard_labels = True
    across_time = True

    def __init__(self, ela: float = 0.6, sta: float = 0.15, tau: float = 3.0):
        super().__init__()
        if ela < 0 or sta < 0:
            raise ValueError(f"ela and sta weights must be >= 0, got {ela}, {sta}")
        self.ela, self.sta, self.tau = float(ela), float(sta), _check_tau(tau)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        z = inputs.timestep_logits()
        total = self.ela * ela_loss(z, inputs.teacher_logits, inputs.target, self.tau)
        return total + self.sta * sta_loss(z, self.tau) if self.sta else total


@LOSSES.register("seal_sta")
class SimilarityAwareTemporalAlignment(LossTerm):
    """SeAl-KD's STA alone (arXiv 2605.14252): each timestep learns a similarity-weighted mix of the rest, no teacher"""

    across_time = True

    def __init__(self, tau: float = 3.0):
        super().__init__()
        self.tau = _check_tau(tau)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        return sta_loss(inputs.timestep_logits(), self.tau)
