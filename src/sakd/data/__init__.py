"""Data sets by name: the embedded digits, a synthetic set, CIFAR-10/100, ImageNet, image folders and DVS-CIFAR10."""

from sakd.data import cifar, digits, dvs_cifar10, imagefolder, synthetic  # noqa: F401  (registers the data sets)
from sakd.data.registry import DATASETS, DataBundle, build_dataset, list_datasets

__all__ = ["DATASETS", "DataBundle", "build_dataset", "list_datasets"]
