"""The training objective: a weighted sum of registered loss terms (:mod:`sakd.distill.terms`).

SAKD's objective (paper eq. 5), ``L = α·CE + β·L_feaKD + γ·L_logKD``, is a shorthand that becomes
ordinary terms (:func:`shorthand_terms`): α, β, γ weigh ``ce``, ``feature_kd`` and ``logit_kd``;
further terms (Hinton KD, FitNet, AT, DKD, BKD, per-timestep and temporal self-distillation ...)
come in ``terms``. Every term has a weight schedule (:mod:`sakd.distill.schedule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sakd.distill.schedule import WeightPoint
from sakd.distill.spec import TermSpec, weighed
from sakd.distill.terms import TermInputs, build_term
from sakd.errors import ConfigError


def shorthand_terms(alpha: float = 1.0, beta: float = 0.0, gamma: float = 0.0, tau: float = 1.0, *,
                    label_smoothing: float = 0.0, transform: str = "conv", distance: str = "l2",
                    feature_weights: list[float] | None = None, reduce: str = "sum",
                    beta_schedule: Sequence[tuple[int, float]] = ()) -> list[TermSpec]:
    """SAKD's eq. 5 as ordinary terms: α·``ce`` + β·``feature_kd`` + γ·``logit_kd`` (τ its
    temperature; ``label_smoothing`` ``ce``'s); ``beta_schedule``, ``(epoch, β)`` pairs, is
    ``feature_kd``'s weight schedule in steps. The one place where ``distill.alpha/beta/gamma/tau``
    get their meaning."""
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if value < 0:
            raise ConfigError(f"distill.{name} must be >= 0, got {value}")
    if tau <= 0:
        raise ConfigError(f"distill.tau must be > 0, got {tau}")
    steps = [WeightPoint(int(epoch), float(b)) for epoch, b in beta_schedule]
    features = dict(transform=transform, distance=distance, weights=feature_weights, reduce=reduce)
    return [
        TermSpec.of("ce", alpha, {"label_smoothing": label_smoothing} if label_smoothing else {}, key="distill.alpha"),
        TermSpec.of("feature_kd", beta, features, steps, key="distill.beta" if beta else "distill.beta_schedule"),
        TermSpec.of("logit_kd", gamma, {"tau": tau}, key="distill.gamma"),
    ]


def reads_features(terms: Sequence[TermSpec]) -> bool:
    """Whether a term of these, weighed at some epoch, reads the feature taps."""
    return any(t.part.needs_features and t.schedule.ever_on for t in terms)


@dataclass
class ObjectiveValue:
    """The total loss and its (unweighted) terms, detached, for logging."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class Objective(nn.Module):
    """A weighted sum of registered loss terms (:class:`~sakd.distill.spec.TermSpec`), each weighed
    at every epoch by its schedule (:mod:`sakd.distill.schedule`).

    The terms' parameters (SAKD's feature transforms, FitNet's regressors ...) belong to this
    module: optimise them together with the student's and leave them out of the exported student.
    The teacher's features and logits are detached here (no gradient reaches a teacher, whoever
    calls). A term whose weight is 0 at every epoch is not built; one whose weight is 0 in an
    epoch is not computed in it.

    Args:
        terms: the terms, in order.
        student_channels, teacher_channels: channels at each tap, in order; give them whenever a
            term reads features at some epoch.
        teacher_head: the teacher's classifier, pooled feature -> logits (for terms that take it).
    """

    def __init__(self, terms: Sequence[TermSpec], student_channels: Sequence[int] = (),
                 teacher_channels: Sequence[int] = (), teacher_head=None):
        super().__init__()
        built = weighed(terms)
        if not built:
            raise ConfigError("no loss term has a weight above zero at any epoch (alpha, beta and gamma are all "
                              "zero and no distill.terms): there is nothing to optimise")
        if len(student_channels) != len(teacher_channels):
            raise ConfigError(
                f"the student has {len(student_channels)} feature taps and the teacher "
                f"{len(teacher_channels)}; feature distillation pairs them one to one"
            )
        self.schedules = {t.name: t.schedule for t in built}
        self.terms = nn.ModuleDict({t.name: build_term(t.name, t.options, student_channels, teacher_channels,
                                                       teacher_head) for t in built})
        self.register_load_state_dict_pre_hook(_from_version_1)

    def weights(self, epoch: int) -> dict[str, float]:
        """Every term's weight in the 0-based ``epoch``."""
        return {name: s.at(epoch) for name, s in self.schedules.items()}

    def reads_features(self, epoch: int) -> bool:
        """Whether a term weighed in ``epoch`` reads the feature taps."""
        return any(self.terms[n].needs_features for n, w in self.weights(epoch).items() if w)

    def idles_parameters(self, epochs: int) -> bool:
        """Whether a term with parameters has no weight in one of the first ``epochs`` epochs."""
        return any(any(True for _ in self.terms[n].parameters()) and s.ever_off(epochs)
                   for n, s in self.schedules.items())

    def forward(
        self,
        student_logits: torch.Tensor,
        target: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_feats: list[torch.Tensor] | None = None,
        teacher_feats: list[torch.Tensor] | None = None,
        *,
        timestep_logits: torch.Tensor | None = None,
        epoch: int = 0,
    ) -> ObjectiveValue:
        """The objective in the 0-based ``epoch`` (each term at its weight then); ``timestep_logits``
        ``[T, B, K]`` are the student's logits per timestep."""
        if teacher_logits is not None:
            teacher_logits = teacher_logits.detach()
        if teacher_feats is not None:
            teacher_feats = [f.detach() for f in teacher_feats]
        inputs = TermInputs(
            student_logits, target, teacher_logits, student_feats, teacher_feats, timestep_logits, epoch
        )
        total = student_logits.new_zeros(())
        values: dict[str, torch.Tensor] = {}
        for name, weight in self.weights(epoch).items():
            if not weight:
                continue
            term = self.terms[name]
            if term.needs_features and student_feats is None:
                raise ConfigError(f"loss term {name!r} reads features, but this step has no feature taps")
            value = term(inputs)
            total = total + weight * value
            values[name] = value.detach()
        return ObjectiveValue(total, values)


def _from_version_1(module, state_dict, prefix, *args) -> None:
    """Objective state dicts of checkpoints written before the terms were registered parts kept
    SAKD's transforms under ``transforms.`` and added terms under ``extra.``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        if rest.startswith("transforms."):
            state_dict[prefix + "terms.feature_kd." + rest] = state_dict.pop(key)
        elif rest.startswith("extra."):
            state_dict[prefix + "terms." + rest[len("extra."):]] = state_dict.pop(key)


def SAKDLoss(student_channels: Sequence[int] = (), teacher_channels: Sequence[int] = (), *,  # noqa: N802
             terms: Sequence[TermSpec] = (), teacher_head=None, **shorthand) -> Objective:
    """SAKD's objective (eq. 5) by its weights: an :class:`Objective` of :func:`shorthand_terms`
    (``alpha``, ``beta``, ``gamma``, ``tau``, ``label_smoothing``, ``transform``, ``distance``,
    ``feature_weights``, ``reduce``, ``beta_schedule``), followed by ``terms``; with no shorthand
    and no terms, ``ce`` alone. With ``reduce="sum"`` β weighs 33 block taps of ResNet-101 (50 of
    ResNet-152) 8-12x more than 4 stage taps; ``"mean"`` keeps one β for both."""
    paper = shorthand_terms(**shorthand) if shorthand or not terms else []
    return Objective([*paper, *terms], student_channels, teacher_channels, teacher_head)
