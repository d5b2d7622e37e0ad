"""One term of an objective, typed: a registered loss term's name, its options and its weight over
the epochs. A config's ``distill`` section becomes a list of them when it is loaded
(:meth:`~sakd.training.config.DistillConfig.term_specs`: the α/β/γ shorthand first, then
``distill.terms``), and the :class:`~sakd.distill.objective.Objective` is built from them: one path
from the config to the terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sakd.distill.schedule import WeightPoint, WeightSchedule
from sakd.distill.terms import LOSSES, LossTerm, check_options
from sakd.errors import ConfigError


@dataclass(frozen=True)
class TermSpec:
    """A loss term as the objective builds it. ``key``: where a config sets it (for messages)."""

    name: str
    schedule: WeightSchedule
    options: dict = field(default_factory=dict)
    key: str = "distill.terms"

    @classmethod
    def of(cls, name: str, weight: float = 1.0, options: dict | None = None, schedule: Sequence[WeightPoint] = (),
           key: str = "distill.terms") -> TermSpec:
        """A checked spec: the term is registered, its options are its own, its schedule is sound."""
        options = dict(options or {})
        check_options(name, options)
        try:
            return cls(name, WeightSchedule.of(float(weight), schedule), options, key)
        except ValueError as exc:
            raise ConfigError(f"loss term {name!r}: {exc}") from None

    @property
    def weight(self) -> float:
        """The weight at epoch 0 (before any point of the schedule)."""
        return self.schedule.weight

    @property
    def part(self) -> type[LossTerm]:
        """The registered class."""
        return LOSSES.get(self.name)

    @property
    def where(self) -> str:
        """Where a config sets it, for a message: ``distill.beta``, ``distill.terms dkd``."""
        return self.key if self.key != "distill.terms" else f"distill.terms {self.name}"


def weighed(terms: Sequence[TermSpec]) -> list[TermSpec]:
    """The terms weighed at some epoch (the objective builds those), each name once: a name given
    twice (in ``distill.terms`` and as the α/β/γ shorthand, or twice in the list) is one line."""
    on = [t for t in terms if t.schedule.ever_on]
    names = [t.name for t in on]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"distill.terms: {', '.join(map(repr, twice))} appears twice (or is already the "
                          "alpha/beta/gamma term)")
    return on
