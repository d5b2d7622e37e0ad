"""A fixed, stratified validation hold-out carved from a training set (``data.val_fraction``).

The split depends on the labels and the fraction only (seed 0, every run alike), so runs of
different seeds, methods or models select their checkpoints on the same held-out images and never
look at the test set to do so.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from sakd.errors import ConfigError

SPLIT_SEED = 0


def sample_labels(dataset: Dataset) -> np.ndarray:
    """Every sample's class, read from the data set's label list where it keeps one (torchvision's
    ``targets``, ``labels``, or ``(path, label)`` ``items``), else by loading each sample."""
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr)).astype(np.int64)
    if hasattr(dataset, "items"):
        return np.asarray([label for _, label in dataset.items], dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def stratified_holdout(labels: np.ndarray, fraction: float) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)``: ``fraction`` of each class held out (at least one sample per class)."""
    from sklearn.model_selection import train_test_split

    try:
        train, val = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels,
                                      random_state=SPLIT_SEED)
    except ValueError as exc:
        raise ConfigError(f"data.val_fraction={fraction} cannot be split by class from "
                          f"{len(labels)} training samples: {exc}") from None
    return sorted(train.tolist()), sorted(val.tolist())
