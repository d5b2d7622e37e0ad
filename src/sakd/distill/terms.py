"""Loss terms as registered parts, composed beside SAKD's own in ``distill.terms``::

    distill:
      terms: [{name: my_term, weight: 0.5, options: {p: 2}}]

A term is a :class:`LossTerm` registered with ``@LOSSES.register("name")``. It reads what it needs
from :class:`TermInputs` and returns a scalar; ``needs_teacher`` and ``needs_features`` say what
the trainer must provide (a term that needs features gets the taps of ``distill.features``, every
epoch). A term whose constructor takes ``student_channels``/``teacher_channels`` receives the
channels of those taps (to build its own transforms, say); its parameters train with the student.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.registry import Registry

LOSSES: Registry = Registry("loss term")


@dataclass
class TermInputs:
    """What a training step offers every term (features: ``[T, B, C, H, W]`` for the student)."""

    student_logits: torch.Tensor
    target: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    student_features: list[torch.Tensor] | None = None
    teacher_features: list[torch.Tensor] | None = None


class LossTerm(nn.Module):
    """Base of every registered loss term."""

    needs_teacher: bool = False
    needs_features: bool = False

    def forward(self, inputs: TermInputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def build_term(name: str, options: dict, student_channels=(), teacher_channels=()) -> LossTerm:
    """The registered term ``name`` with its ``options`` (and the taps' channels if it takes them)."""
    cls = LOSSES.get(name)
    takes = inspect.signature(cls).parameters
    given = dict(options)
    for key, channels in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
        if key in takes:
            given[key] = list(channels)
    try:
        return cls(**given)
    except TypeError as exc:
        raise ConfigError(f"loss term {name!r}: bad options {options}: {exc}") from None


@LOSSES.register("ce")
class CrossEntropy(LossTerm):
    """Cross-entropy of the student's logits and the labels (SAKD's alpha term, available as a term)"""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        return nn.functional.cross_entropy(inputs.student_logits, inputs.target, label_smoothing=self.label_smoothing)
