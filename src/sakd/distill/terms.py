"""Loss terms as registered parts: the objective is a weighted sum of them.

``distill.alpha/beta/gamma/tau`` are the shorthand for SAKD's own terms (``ce``, ``feature_kd``,
``logit_kd``, paper eq. 5); ``distill.terms`` adds any registered term beside them, options
written flat or under ``options``::

    distill:
      terms: [{name: dkd, weight: 1, tau: 4, beta: 8}, {name: fitnet, weight: 100, taps: [1]}]

A term is a :class:`LossTerm` registered with ``@LOSSES.register("name")`` in its own file of this
package (``sakd losses`` lists them). It reads what it needs from :class:`TermInputs` and returns
a scalar; ``needs_teacher`` and ``needs_features`` say what the trainer must provide (a term that
needs features gets the taps of ``distill.features``, every epoch; ``taps`` options pick among
them). A term whose constructor takes ``student_channels``/``teacher_channels`` receives the
channels of those taps (to build its own regressors, say); its parameters train with the student.
One that takes ``teacher_head`` receives the teacher's classifier as a function, pooled last
feature ``[B, C]`` -> logits ``[B, K]`` (the teacher's :meth:`forward_head`; its weights stay
frozen, gradients pass through it to what it is given), for methods that read the teacher's
class weights or run the student's feature through the teacher's classifier.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sakd.errors import ConfigError
from sakd.registry import Registry

LOSSES: Registry = Registry("loss term", keys=("distill.terms.name",), listed=("losses",), training_only=True,
                            heading="loss terms (distill.terms)")
CHANNEL_ARGS = ("student_channels", "teacher_channels")  # given by the objective, not by the config
GIVEN_ARGS = (*CHANNEL_ARGS, "teacher_head")


@dataclass
class TermInputs:
    """What a training step offers every term.

    ``student_timestep_logits`` is ``[T, B, K]`` (its mean over time is ``student_logits``; an ANN
    gives ``T = 1``); student features are ``[T, B, C, H, W]``, an ANN teacher's ``[B, C, H, W]``;
    ``epoch`` counts from 0 (for terms with a warm-up). ``target`` holds class indices ``[B]``, or,
    in the epochs ``data.mixup`` / ``data.cutmix`` mix the batch, per-class probabilities
    ``[B, K]`` (``F.cross_entropy`` reads both); a term that needs the indices sets
    ``hard_labels = True`` and is refused with mixup."""

    student_logits: torch.Tensor
    target: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    student_features: list[torch.Tensor] | None = None
    teacher_features: list[torch.Tensor] | None = None
    student_timestep_logits: torch.Tensor | None = None
    epoch: int = 0

    def timestep_logits(self) -> torch.Tensor:
        t = self.student_timestep_logits
        return self.student_logits.unsqueeze(0) if t is None else t


class LossTerm(nn.Module):
    """Base of every registered loss term."""

    needs_teacher: bool = False
    needs_features: bool = False
    hard_labels: bool = False  # reads the label's class, not a distribution (refused with data.mixup)
    across_time: bool = False  # compares timesteps with each other (refused with run.bptt=sltt)
    # reads the student's features at every timestep; False: only through their mean over time
    # (time_mean), so the taps can hand over that mean, taken as each layer runs (sakd.models.taps)
    feature_timesteps: bool = True

    def forward(self, inputs: TermInputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def term_options(name: str) -> dict[str, inspect.Parameter]:
    """The options a registered term's config may set (its constructor's arguments)."""
    params = inspect.signature(LOSSES.get(name)).parameters
    return {k: p for k, p in params.items() if k not in GIVEN_ARGS and p.kind is not p.VAR_KEYWORD}


def check_options(name: str, options: dict) -> None:
    """One clear error for an option the term does not have."""
    known = term_options(name)
    for key in options:
        if key not in known:
            raise ConfigError(f"loss term {name!r} has no option {key!r}; its options: {', '.join(known) or 'none'}")


def build_term(name: str, options: dict, student_channels=(), teacher_channels=(), teacher_head=None) -> LossTerm:
    """The registered term ``name`` with its ``options`` (and the taps' channels, or the teacher's
    classifier, if it takes them)."""
    check_options(name, options)
    cls = LOSSES.get(name)
    takes = inspect.signature(cls).parameters
    given = dict(options)
    for key, channels in zip(CHANNEL_ARGS, (student_channels, teacher_channels)):
        if key in takes:
            given[key] = list(channels)
    if "teacher_head" in takes:
        if teacher_head is None:
            raise ConfigError(f"loss term {name!r} runs the teacher's classifier, but the teacher has none sakd can "
                              "call (a model with forward_head, as sakd's ResNets have)")
        given["teacher_head"] = teacher_head
    try:
        return cls(**given)
    except (TypeError, ValueError) as exc:  # a term says what is wrong with an option's value
        raise ConfigError(f"loss term {name!r}: {exc}") from None


# -- helpers shared by the terms --------------------------------------------------------------------
def time_mean(f: torch.Tensor) -> torch.Tensor:
    """A feature averaged over time (paper eq. 8): ``[T, B, C, H, W] -> [B, C, H, W]``."""
    return f.mean(0) if f.dim() == 5 else f


def pick_taps(term: str, taps: list[int] | None, count: int, default: list[int]) -> list[int]:
    """Indices into the ``count`` taps of ``distill.features`` (negative ones count from the end)."""
    chosen = default if taps is None else list(taps)
    if count == 0:
        raise ConfigError(f"loss term {term!r} reads features, but the model has no feature taps")
    if not chosen or any(not -count <= i < count for i in chosen):
        raise ConfigError(f"loss term {term!r}: taps {chosen} out of range for the {count} taps of distill.features")
    return [i % count for i in chosen]


def check_head_input(term: LossTerm, head, teacher_feature: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    """The teacher's classifier on its tap's spatial mean gives its logits, else the tap is not what
    the classifier reads (``distill.features.position: before``, a tap before the last stage) and
    the term would read the wrong vector: one line (a term checks its first batch)."""
    with torch.no_grad():
        got = head(teacher_feature.float().mean((2, 3)).to(teacher_feature.dtype)).float()
    want = teacher_logits.float()
    if not torch.allclose(got, want, rtol=1e-2, atol=1e-2 * want.abs().max().item() + 1e-4):
        raise ConfigError(f"loss term {type(term).__name__}: the teacher's classifier does not read the chosen tap "
                          "(its spatial mean does not give the teacher's logits); use the last tap of "
                          "distill.features with position: after")


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """``τ² · KL(softmax(teacher/τ) ‖ softmax(student/τ))``: summed over the classes (last dim),
    averaged over every other position (the batch, and the time steps of ``[T, B, K]``)."""
    log_ps = F.log_softmax(student / tau, dim=-1).flatten(0, -2)
    log_pt = F.log_softmax(teacher / tau, dim=-1).flatten(0, -2)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * tau * tau


@LOSSES.register("ce")
class CrossEntropy(LossTerm):
    """Cross-entropy of the student's logits and the labels (SAKD's alpha term; class indices, or
    per-class probabilities under ``data.mixup``)"""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        return F.cross_entropy(inputs.student_logits, inputs.target, label_smoothing=self.label_smoothing)
