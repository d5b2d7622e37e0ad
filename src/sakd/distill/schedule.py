"""A loss term's weight over the epochs: its ``weight``, changed by the points of its ``schedule``.

Each point ``{epoch: E, weight: W, ramp: R}`` says the weight is ``W`` from epoch ``E`` (0-based)
on; ``ramp`` says how it gets there from the point before (or from the term's own weight at
epoch 0): ``step`` (at ``E`` at once, the paper's ImageNet β: 10, then 0.01 from epoch 10),
``linear`` or ``cosine`` (half a cosine period, flat at both ends), evaluated once per epoch::

    distill:
      terms: [{name: logit_kd, weight: 0, schedule: [{epoch: 5, weight: 1, ramp: linear}]}]

``distill.beta_schedule: [{epoch: E, beta: B}]`` is this with ``step`` points on ``feature_kd``
(it becomes that schedule when the config is loaded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sakd.fields import limited

RAMPS = ("step", "linear", "cosine")


@dataclass
class WeightPoint:
    """A point of a term's weight schedule: the weight ``weight`` from ``epoch`` (0-based) on,
    reached from the point before by ``ramp``."""

    epoch: int = limited(0, ge=0)  # from this epoch (0-based) on
    weight: float = limited(0.0, ge=0.0)  # the term's weight
    ramp: Literal["step", "linear", "cosine"] = "step"  # how it gets there from the point before


@dataclass(frozen=True)
class WeightSchedule:
    """The weight of one term at every epoch."""

    weight: float
    points: tuple[tuple[int, float, str], ...] = ()  # (epoch, weight, ramp), sorted by epoch

    @classmethod
    def of(cls, weight: float, schedule: Sequence[WeightPoint] = ()) -> WeightSchedule:
        """From a term's weight and its schedule's points; raises ``ValueError`` on a bad point."""
        points = []
        for p in schedule:
            epoch, value, ramp = int(p.epoch), float(p.weight), p.ramp
            if epoch < 0 or value < 0 or ramp not in RAMPS:
                raise ValueError(f"a schedule point needs epoch >= 0, weight >= 0 and ramp in {RAMPS}, "
                                 f"got epoch {epoch}, weight {value}, ramp {ramp!r}")
            points.append((epoch, value, ramp))
        points.sort(key=lambda p: p[0])
        epochs = [p[0] for p in points]
        if len(set(epochs)) != len(epochs):
            raise ValueError(f"the schedule names an epoch twice: {epochs}")
        if weight < 0:
            raise ValueError(f"a weight must be >= 0, got {weight}")
        return cls(float(weight), tuple(points))

    def at(self, epoch: int) -> float:
        """The weight in the 0-based ``epoch``."""
        start, value = 0, self.weight
        for e, w, ramp in self.points:
            if epoch >= e:
                start, value = e, w
                continue
            if ramp == "step" or e == start:
                return value
            frac = (epoch - start) / (e - start)
            if ramp == "cosine":
                frac = (1.0 - math.cos(math.pi * frac)) / 2.0
            return value + (w - value) * frac
        return value

    @property
    def ever_on(self) -> bool:
        """Whether some epoch gives the term a weight (a term that never weighs is not built)."""
        return self.weight > 0 or any(w > 0 for _, w, _ in self.points)

    def ever_off(self, epochs: int) -> bool:
        """Whether one of the first ``epochs`` epochs gives the term no weight (its parameters then
        get no gradient in that epoch: DistributedDataParallel must know)."""
        return any(self.at(e) == 0 for e in range(epochs))
