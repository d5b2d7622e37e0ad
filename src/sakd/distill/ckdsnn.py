"""CKDSNN: saliency-scaled activation-map distillation (SAMD) and noise-smoothed logits
distillation (NLD) of an SNN from its ANN teacher (arXiv 2511.06902, AAAI 2026), written from
the authors' code (SinoLeu/CKDSNN; the paper's body was not available here).

* **SAMD** (weight ``samd``): on the last stage's feature (``taps``, default the last of
  ``distill.features``), the student's map sums the feature over time and channels, the teacher's
  is its class activation map for the teacher's predicted class, ``ReLU(Σ_c w_c F_t[c])``; each is
  min-max normalised over the whole batch, ``(A - min A) / (max(A - min A) + 1e-3)``, turned into
  a distribution over the H·W positions by ``softmax(map / τ_map)`` (τ_map = 2, +1e-10), and the
  loss is ``KL(teacher ‖ student)``, batch mean, no τ². The class weights ``w`` are the teacher
  classifier's row of that class when the classifier is one linear layer (the authors'); sakd
  computes them as the gradient of that class's logit with respect to the pooled feature, which
  is that row for a linear classifier and Grad-CAM's weights for a deeper one (sakd's ResNet-19
  head, fc1 -> ReLU -> fc2). The teacher map carries no gradient.
* **NLD** (weight ``nld``): the student's softened prediction is mixed with a noisy one,
  ``q = λ·softmax(z_s/τ) + (1-λ)·softmax((μ + ε·σ²)/τ)``, with μ and σ the per-sample mean and
  (unbiased) standard deviation of the student's logits over the classes and ε ~ N(0, 1) drawn
  every step (from :func:`~sakd.randomness.step_generator`: a resumed run draws the same); the
  loss is ``τ² · KL(softmax(z_t/τ) ‖ q)``; λ = 0.9, τ = 2. As in the code σ² (not σ) scales the
  noise and the noisy logits do not contain z_s itself.

Both read the SNN's mean over time. The authors' objective is CE + SAMD + NLD, all at weight 1.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, check_head_input, pick_taps
from sakd.errors import ConfigError
from sakd.randomness import step_generator


def full(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if autocast gave it in half precision (the maps sum thousands of spikes)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def batch_minmax(a: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``(a - min a) / (max(a - min a) + eps)`` over the whole batch (the authors' normalisation)."""
    a = a - a.min()
    return a / (a.max() + eps)


def class_weights(head, pooled: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``∂ head(pooled)[b, classes[b]] / ∂ pooled[b]``, ``[B, C]``: a linear classifier's rows of
    those classes, Grad-CAM's channel weights for a deeper one (no gradient leaves)."""
    with torch.enable_grad():
        x = pooled.detach().requires_grad_()
        (grad,) = torch.autograd.grad(head(x).gather(1, classes[:, None]).sum(), x)
    return grad.detach()


def activation_map_kd(fs: torch.Tensor, ft: torch.Tensor, weights: torch.Tensor, tau: float) -> torch.Tensor:
    """SAMD of student ``[T, B, C, H, W]`` and teacher ``[B, C, H, W]`` features, class weights ``[B, C]``."""
    student = batch_minmax(fs.sum(0).sum(1) if fs.dim() == 5 else fs.sum(1))  # [B, H, W]
    teacher = batch_minmax(torch.relu((ft * weights[:, :, None, None]).sum(1)))
    p_s = F.softmax(student.flatten(1) / tau, 1) + 1e-10
    p_t = F.softmax(teacher.flatten(1) / tau, 1) + 1e-10
    return F.kl_div(p_s.log(), p_t, reduction="batchmean")


def noise_smoothed_kd(zs: torch.Tensor, zt: torch.Tensor, tau: float, clean: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    mu, sd = zs.mean(-1, keepdim=True), zs.std(-1, keepdim=True)
    eps = torch.randn(zs.shape, device=zs.device, dtype=zs.dtype, generator=generator)
    q = clean * F.softmax(zs / tau, -1) + (1 - clean) * F.softmax((mu + eps * sd ** 2) / tau, -1)
    return F.kl_div(q.log(), F.softmax(zt / tau, -1), reduction="batchmean") * tau * tau


@LOSSES.register("ckdsnn")
class CKDSNN(LossTerm):
    """CKDSNN (arXiv 2511.06902): saliency-scaled activation-map KD (the teacher's CAM) + noise-smoothed logits KD"""

    needs_teacher = True
    needs_features = True

    def __init__(self, student_channels: list[int], teacher_channels: list[int], teacher_head, samd: float = 1.0,
                 nld: float = 1.0, tau: float = 2.0, map_tau: float = 2.0, clean_weight: float = 0.9,
                 taps: list[int] | None = None):
        super().__init__()
        if samd < 0 or nld < 0:
            raise ValueError(f"samd and nld weights must be >= 0, got {samd}, {nld}")
        if tau <= 0 or map_tau <= 0:
            raise ValueError(f"tau and map_tau must be > 0, got {tau}, {map_tau}")
        if not 0 <= clean_weight <= 1:
            raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
        (self.tap,) = pick_taps("ckdsnn", taps, len(student_channels), [-1]) if samd else [None]
        self.samd, self.nld, self.tau, self.map_tau, self.clean = (
            float(samd),
            float(nld),
            float(tau),
            float(map_tau),
            float(clean_weight),
        )
        self._head = [teacher_head]  # a plain list: the teacher's classifier is not this term's parameter

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        zs, zt = full(inputs.student_logits), full(inputs.teacher_logits)  # sums of spikes: not in bf16
        total = zs.new_zeros(())
        if self.samd:
            fs, ft = full(inputs.student_features[self.tap]), full(inputs.teacher_features[self.tap])
            check_head_input(self, self._head[0], ft, zt)
            if fs.shape[-2:] != ft.shape[-2:]:
                raise ConfigError(
                    f"ckdsnn: student map {tuple(fs.shape[-2:])} and teacher map {tuple(ft.shape[-2:])} differ"
                )
            weights = class_weights(self._head[0], ft.mean((2, 3)), zt.argmax(-1))
            total = total + self.samd * activation_map_kd(fs, ft, weights, self.map_tau)
        if self.nld:
            total = total + self.nld * noise_smoothed_kd(zs, zt, self.tau, self.clean, step_generator(zs.device))
        return total
