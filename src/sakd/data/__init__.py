"""Data sets by name: the embedded digits, a synthetic set, CIFAR-10/100, ImageNet, image folders and DVS-CIFAR10."""

from sakd.data.registry import DATASETS, DataBundle, build_dataset, list_datasets, open_data
from sakd.registry import import_submodules

__all__ = ["DATASETS", "DataBundle", "build_dataset", "list_datasets", "open_data"]

import_submodules(__name__, __path__)  # every file registers its parts
