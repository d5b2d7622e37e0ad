"""The SAKD objective, paper eq. 5: ``L = α·CE + β·L_feaKD + γ·L_logKD``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sakd.distill.losses import DISTANCES, logits_kd
from sakd.distill.terms import TermInputs, build_term
from sakd.distill.transforms import make_transform
from sakd.errors import ConfigError


@dataclass
class LossTerms:
    """The total loss and its (unweighted) terms, detached, for logging."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class SAKDLoss(nn.Module):
    """Cross-entropy plus feature and logits distillation.

    The feature transforms (one per tap) belong to this module: optimise its parameters together
    with the student's and leave them out of the exported student. The teacher's features and
    logits must come without gradient. A zero coefficient skips its term entirely.

    Args:
        student_channels, teacher_channels: channels at each tap, in order; give them whenever
            feature KD is used at some epoch (one transform is built per tap).
        alpha, beta, gamma: weights of CE, feature KD and logits KD.
        tau: softmax temperature of the logits KD.
        transform: ``"conv"`` (default), ``"none"`` or ``"norm"``.
        distance: ``"l2"`` (default), ``"l1"`` or ``"l2_normalized"``.
        feature_weights: one weight per tap (default: all 1).
        reduce: ``"sum"`` (default: eq. 9 summed over taps, as the official code does) or ``"mean"``
            of the taps' weighted distances. With ``sum``, β weighs 33 block taps of ResNet-101 (50
            of ResNet-152) 8-12x more than 4 stage taps; ``mean`` keeps one β for both.
        terms: further registered loss terms (:mod:`sakd.distill.terms`), each
            ``{"name": ..., "weight": ..., "options": {...}}``, added to the total with their weight.
    """

    def __init__(
        self,
        student_channels: list[int] = (),
        teacher_channels: list[int] = (),
        *,
        alpha: float = 1.0,
        beta: float = 0.0,
        gamma: float = 0.0,
        tau: float = 1.0,
        transform: str = "conv",
        distance: str = "l2",
        feature_weights: list[float] | None = None,
        reduce: str = "sum",
        terms: list[dict] = (),
    ):
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if value < 0:
                raise ConfigError(f"distill.{name} must be >= 0, got {value}")
        if tau <= 0:
            raise ConfigError(f"distill.tau must be > 0, got {tau}")
        if alpha == beta == gamma == 0 and not any(t["weight"] for t in terms):
            raise ConfigError("alpha, beta and gamma are all zero and no distill.terms: there is nothing to optimise")
        if len(student_channels) != len(teacher_channels):
            raise ConfigError(
                f"the student has {len(student_channels)} feature taps and the teacher "
                f"{len(teacher_channels)}; feature distillation pairs them one to one"
            )
        if beta and not student_channels:
            raise ConfigError("feature distillation (beta > 0) needs the channels of each tap")
        self.alpha, self.beta, self.gamma, self.tau = float(alpha), float(beta), float(gamma), float(tau)
        self.distance = DISTANCES.get(distance)
        self.transforms = nn.ModuleList(
            make_transform(transform, cs, ct) for cs, ct in zip(student_channels, teacher_channels)
        )
        weights = list(feature_weights) if feature_weights else [1.0] * len(self.transforms)
        if len(weights) != len(self.transforms):
            raise ConfigError(
                f"distill.features.weights has {len(weights)} entries but there are {len(self.transforms)} feature taps"
            )
        self.feature_weights = weights
        if reduce not in ("sum", "mean"):
            raise ConfigError(f"distill.features.reduce must be 'sum' or 'mean', got {reduce!r}")
        self.reduce = reduce
        names = [t["name"] for t in terms]
        builtin = {"ce": alpha, "feature_kd": beta, "logit_kd": gamma}
        clash = [n for n in names if names.count(n) > 1 or builtin.get(n)]
        if clash:
            raise ConfigError(f"distill.terms: {clash[0]!r} appears twice (or is already the alpha/beta/gamma term)")
        self.extra = nn.ModuleDict({t["name"]: build_term(t["name"], t.get("options", {}), student_channels,
                                                          teacher_channels) for t in terms})
        self.extra_weights = {t["name"]: float(t["weight"]) for t in terms}

    def feature_loss(self, student_feats, teacher_feats) -> torch.Tensor:
        total = 0.0
        for transform, weight, fs, ft in zip(self.transforms, self.feature_weights, student_feats, teacher_feats, strict=True):
            # features shaped [T, B, C, H, W] are averaged over time (eq. 8): the SNN's always,
            # an ANN teacher's when it was given event frames
            fs = fs.mean(0) if fs.dim() == 5 else fs
            ft = ft.mean(0) if ft.dim() == 5 else ft
            if fs.shape[0] != ft.shape[0] or fs.shape[2:] != ft.shape[2:]:
                raise ConfigError(
                    f"student feature {tuple(fs.shape)} and teacher feature {tuple(ft.shape)} "
                    "differ in batch or spatial size; teacher and student taps must align"
                )
            fs, ft = transform(fs, ft)
            total = total + weight * self.distance(fs, ft)
        return total / len(self.transforms) if self.reduce == "mean" else total

    def forward(
        self,
        student_logits: torch.Tensor,
        target: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_feats: list[torch.Tensor] | None = None,
        teacher_feats: list[torch.Tensor] | None = None,
        beta: float | None = None,
    ) -> LossTerms:
        """``beta`` overrides the constructor's for this call (a β schedule); 0 skips the term."""
        beta = self.beta if beta is None else beta
        total = student_logits.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        if self.alpha:
            ce = F.cross_entropy(student_logits, target)
            total = total + self.alpha * ce
            terms["ce"] = ce.detach()
        if beta:
            if not self.transforms:
                raise ConfigError("beta > 0 but this objective was built without feature taps")
            fea = self.feature_loss(student_feats, teacher_feats)
            total = total + beta * fea
            terms["feature_kd"] = fea.detach()
        if self.gamma:
            kd = logits_kd(student_logits, teacher_logits, self.tau)
            total = total + self.gamma * kd
            terms["logit_kd"] = kd.detach()
        if self.extra:
            inputs = TermInputs(student_logits, target, teacher_logits, student_feats, teacher_feats)
            for name, term in self.extra.items():
                value = term(inputs)
                total = total + self.extra_weights[name] * value
                terms[name] = value.detach()
        return LossTerms(total, terms)
