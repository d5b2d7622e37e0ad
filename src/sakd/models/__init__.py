"""ANN/SNN twin models, built by name from a registry."""

from sakd.models.base import TapPoint, TwinModel
from sakd.models.registry import MODEL_SOURCES, MODELS, ModelSpec, create_model, list_models
from sakd.models.taps import FeatureExtractor
from sakd.registry import import_submodules

__all__ = [
    "MODELS",
    "MODEL_SOURCES",
    "ModelSpec",
    "create_model",
    "list_models",
    "FeatureExtractor",
    "TapPoint",
    "TwinModel",
]

import_submodules(__name__, __path__)  # every file registers its parts
