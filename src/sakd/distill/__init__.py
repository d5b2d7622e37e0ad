"""Knowledge distillation from an ANN teacher to an SNN student (paper §3.2, §3.4)."""

from sakd.distill.losses import DISTANCES, logits_kd
from sakd.distill.objective import LossTerms, SAKDLoss
from sakd.distill.transforms import TRANSFORMS, make_transform
from sakd.registry import import_submodules

__all__ = ["SAKDLoss", "LossTerms", "logits_kd", "make_transform", "DISTANCES", "TRANSFORMS"]

import_submodules(__name__, __path__)  # every file registers its parts
