"""sakd: train spiking neural networks by distilling an ANN teacher of the same architecture.

The main entry points::

    from sakd import create_model, FeatureExtractor, SAKDLoss, LIF, load_config, train, Trainer
"""

from sakd.version import __version__  # noqa: E402
from sakd import nas  # noqa: E402,F401  (registers the supernet model)
from sakd.distill import SAKDLoss  # noqa: E402
from sakd.models import FeatureExtractor, create_model, list_models  # noqa: E402
from sakd.neurons import LIF  # noqa: E402
from sakd.training import Trainer, evaluate, load_config, train  # noqa: E402

__all__ = [
    "LIF", "create_model", "list_models", "FeatureExtractor", "SAKDLoss",
    "load_config", "train", "Trainer", "evaluate", "__version__",
]
