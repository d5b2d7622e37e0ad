"""Knowledge distillation from an ANN teacher to an SNN student (paper §3.2, §3.4): the objective
and its registered loss terms (``sakd losses`` lists them)."""

from sakd.distill.distances import DISTANCES
from sakd.distill.objective import Objective, ObjectiveValue, SAKDLoss, shorthand_terms
from sakd.distill.schedule import WeightPoint, WeightSchedule
from sakd.distill.spec import TermSpec
from sakd.distill.terms import LOSSES, LossTerm, TermInputs, soft_kl
from sakd.distill.transforms import TRANSFORMS, make_transform
from sakd.registry import import_submodules

__all__ = [
    "SAKDLoss",
    "Objective",
    "ObjectiveValue",
    "TermSpec",
    "WeightPoint",
    "WeightSchedule",
    "shorthand_terms",
    "LOSSES",
    "LossTerm",
    "TermInputs",
    "soft_kl",
    "make_transform",
    "TRANSFORMS",
    "DISTANCES",
]

import_submodules(__name__, __path__)  # every file registers its parts
