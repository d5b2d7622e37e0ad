"""ANN/SNN twin models, built by name from a registry."""

from sakd.models import resnet, sew_resnet, vgg  # noqa: F401  (registers the models)
from sakd.models.base import TapPoint, TwinModel
from sakd.models.registry import MODELS, create_model, list_models
from sakd.models.taps import FeatureExtractor

__all__ = ["MODELS", "create_model", "list_models", "FeatureExtractor", "TapPoint", "TwinModel"]
