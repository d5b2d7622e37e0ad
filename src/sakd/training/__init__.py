"""Training, evaluation and configuration."""

from sakd.training.config import Config, load_config
from sakd.training.evaluate import evaluate
from sakd.training.trainer import Trainer, train

__all__ = ["Config", "load_config", "evaluate", "Trainer", "train"]
