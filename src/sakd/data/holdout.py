"""Fixed, stratified selections of a data set: a validation hold-out carved from the training set
(``data.val_fraction``) and subsets of the training and test sets (``data.train_subset``,
``data.test_subset``: quick studies on part of a large data set).

Each depends on the labels and the size only (seed 0, every run alike), so runs of different
seeds, methods or models train and select their checkpoints on the same images, and never look at
the test set to select.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset, Subset

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


def stratified_subset(labels: np.ndarray, size: int, key: str) -> list[int]:
    """Indices of ``size`` samples with the classes in the data set's proportions (all if it has
    no more); ``key`` names the setting in errors."""
    from sklearn.model_selection import train_test_split

    if size >= len(labels):
        return list(range(len(labels)))
    try:
        chosen, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=labels,
                                     random_state=SPLIT_SEED)
    except ValueError as exc:
        raise ConfigError(f"{key}={size} cannot be drawn by class from {len(labels)} samples: {exc}") from None
    return sorted(chosen.tolist())


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


def test_split(test: Dataset, test_subset: int | None) -> Dataset:
    """The test images a run evaluates: all, or its fixed stratified ``data.test_subset``."""
    if not test_subset:
        return test
    return Subset(test, stratified_subset(sample_labels(test), test_subset, "data.test_subset"))
