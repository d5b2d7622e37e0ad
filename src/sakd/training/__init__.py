"""Training, evaluation and configuration."""

from sakd.training.config import Config, load_config
from sakd.training.evaluate import evaluate
from sakd.training.trainer import Trainer, train
from sakd.registry import import_submodules

__all__ = ["Config", "load_config", "evaluate", "Trainer", "train"]

import_submodules(__name__, __path__)  # every file registers its parts
