"""The training objective: a weighted sum of registered loss terms (:mod:`sakd.distill.terms`).

SAKD's objective (paper eq. 5), ``L = α·CE + β·L_feaKD + γ·L_logKD``, is the shorthand: α, β, γ
weigh the terms ``ce``, ``feature_kd`` and ``logit_kd``; further terms (Hinton KD, FitNet, AT,
DKD, BKD, per-timestep and temporal self-distillation ...) come in ``terms``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sakd.distill.terms import TermInputs, build_term
from sakd.errors import ConfigError

SHORTHAND = ("ce", "feature_kd", "logit_kd")  # the terms weighted by alpha, beta, gamma


@dataclass
class LossTerms:
    """The total loss and its (unweighted) terms, detached, for logging."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class SAKDLoss(nn.Module):
    """Cross-entropy, feature and logits distillation, and any further registered terms.

    The terms' parameters (SAKD's feature transforms, FitNet's regressors ...) belong to this
    module: optimise them together with the student's and leave them out of the exported student.
    The teacher's features and logits are detached here (no gradient reaches a teacher, whoever
    calls). A zero weight skips its term.

    Args:
        student_channels, teacher_channels: channels at each tap, in order; give them whenever a
            term reads features at some epoch.
        alpha, beta, gamma: weights of ``ce``, ``feature_kd`` and ``logit_kd``.
        tau: the temperature of ``logit_kd``.
        transform, distance, feature_weights, reduce: the options of ``feature_kd`` (see
            :class:`~sakd.distill.feature_kd.FeatureKD`). With ``reduce="sum"`` β weighs 33 block
            taps of ResNet-101 (50 of ResNet-152) 8-12x more than 4 stage taps; ``"mean"`` keeps
            one β for both.
        feature_kd: build ``feature_kd`` even though ``beta`` is 0 (a β schedule turns it on later);
            default: ``beta > 0``.
        terms: further registered loss terms, each ``{"name": ..., "weight": ..., "options": {...}}``.
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
        feature_kd: bool | None = None,
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
        feature_kd = bool(beta) if feature_kd is None else feature_kd
        shorthand = []
        if alpha:
            shorthand.append({"name": "ce", "weight": alpha})
        if feature_kd:
            shorthand.append({"name": "feature_kd", "weight": beta, "options": dict(
                transform=transform, distance=distance, weights=feature_weights, reduce=reduce)})
        if gamma:
            shorthand.append({"name": "logit_kd", "weight": gamma, "options": {"tau": tau}})
        names = [t["name"] for t in shorthand] + [t["name"] for t in terms]
        clash = next((n for n in names if names.count(n) > 1), None)
        if clash:
            raise ConfigError(f"distill.terms: {clash!r} appears twice (or is already the alpha/beta/gamma term)")
        self.terms = nn.ModuleDict({t["name"]: build_term(t["name"], t.get("options", {}), student_channels,
                                                          teacher_channels) for t in [*shorthand, *terms]})
        self.weights = {t["name"]: float(t["weight"]) for t in [*shorthand, *terms]}
        self.register_load_state_dict_pre_hook(_from_version_1)

    @property
    def transforms(self) -> nn.ModuleList:
        """SAKD's feature transforms (empty without feature KD)."""
        return self.terms["feature_kd"].transforms if "feature_kd" in self.terms else nn.ModuleList()

    @property
    def needs_teacher(self) -> bool:
        return any(t.needs_teacher for t in self.terms.values())

    def forward(
        self,
        student_logits: torch.Tensor,
        target: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_feats: list[torch.Tensor] | None = None,
        teacher_feats: list[torch.Tensor] | None = None,
        beta: float | None = None,
        *,
        timestep_logits: torch.Tensor | None = None,
        epoch: int = 0,
    ) -> LossTerms:
        """``beta`` overrides ``feature_kd``'s weight for this call (a β schedule; 0 skips the
        term); ``timestep_logits`` ``[T, B, K]`` are the student's logits per timestep."""
        if beta and "feature_kd" not in self.terms:
            raise ConfigError("beta > 0 but this objective was built without feature KD (no feature taps)")
        if teacher_logits is not None:
            teacher_logits = teacher_logits.detach()
        if teacher_feats is not None:
            teacher_feats = [f.detach() for f in teacher_feats]
        inputs = TermInputs(student_logits, target, teacher_logits, student_feats, teacher_feats, timestep_logits, epoch)
        total = student_logits.new_zeros(())
        values: dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            weight = beta if name == "feature_kd" and beta is not None else self.weights[name]
            if not weight:
                continue
            if term.needs_features and student_feats is None:
                raise ConfigError(f"loss term {name!r} reads features, but this step has no feature taps")
            value = term(inputs)
            total = total + weight * value
            values[name] = value.detach()
        return LossTerms(total, values)


def _from_version_1(module, state_dict, prefix, *args) -> None:
    """Objective state dicts of checkpoints written before the terms were registered parts kept
    SAKD's transforms under ``transforms.`` and added terms under ``extra.``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        if rest.startswith("transforms."):
            state_dict[prefix + "terms.feature_kd." + rest] = state_dict.pop(key)
        elif rest.startswith("extra."):
            state_dict[prefix + "terms." + rest[len("extra."):]] = state_dict.pop(key)
