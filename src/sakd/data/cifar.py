"""CIFAR-10 / CIFAR-100 through torchvision, with the augmentation of the paper's A.1.

Train: random crop 32 with 4-pixel padding, horizontal flip, normalisation. Test: normalisation.
Options (``data.options``): ``randaugment: [N, M]`` and ``random_erasing: p``, the spiking
transformers' policy; ``autoaugment: cifar10`` and ``cutout: 16``, QCFS's (all in
:mod:`sakd.data.augmentation`); ``crop_padding`` (default 4; 0: no random
crop, the flip only, as the spiking transformers' authors train).
``download`` is off by default: point ``data.root`` at a folder holding ``cifar-10-batches-py``
(or ``cifar-100-python``), or set ``data.download=true`` on a machine with internet.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.transforms import v2

from sakd.data.augmentation import policy_ops, sample_ops, tensor_ops
from sakd.data.registry import DATASETS, DataBundle
from sakd.errors import ConfigError, DatasetNotFoundError

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CLASSES = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}


def _transforms(name: str, train: bool, augment: bool, randaugment=None, random_erasing: float = 0.0,
                crop_padding: int = 4, autoaugment: str | None = None, cutout: int = 0):
    mean, std = STATS[name]
    policy = sample_ops(randaugment, name) + policy_ops(autoaugment, name)
    erase = tensor_ops(random_erasing, name, cutout)
    ops = [v2.ToImage()]
    if train and augment:
        crop = [v2.RandomCrop(32, padding=crop_padding)] if crop_padding else []
        ops += [*crop, v2.RandomHorizontalFlip(), *policy]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops + (erase if train and augment else []))


def _cifar(name: str, root: str, download: bool, augment: bool, randaugment, random_erasing,
           crop_padding, autoaugment, cutout) -> DataBundle:
    # bad options before a missing folder
    sample_ops(randaugment, name), policy_ops(autoaugment, name), tensor_ops(random_erasing, name, cutout)
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
        raise ConfigError(f"{name}: crop_padding must be a whole number >= 0, got {crop_padding!r}")
    folder = Path(root).expanduser() / FOLDERS[name]
    if not download and not folder.is_dir():
        raise DatasetNotFoundError(
            f"{name} not found: expected the folder {folder} (the extracted python version of the "
            f"data set). Set data.root to the folder that holds it, or data.download=true to "
            f"fetch it (needs internet)."
        )
    cls = CLASSES[name]
    try:
        train = cls(
            root,
            train=True,
            download=download,
            transform=_transforms(name, True, augment, randaugment, random_erasing, crop_padding, autoaugment,
                                  cutout),
        )
        test = cls(root, train=False, download=download, transform=_transforms(name, False, augment))
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise DatasetNotFoundError(f"{name} at {folder} is incomplete or corrupted: {exc}") from None
    return DataBundle(train, test, num_classes=len(train.classes), in_channels=3, image_size=32)


@DATASETS.register("cifar10")
def cifar10(root: str, download: bool = False, augment: bool = True, randaugment: list | None = None,
            random_erasing: float = 0.0, crop_padding: int = 4, autoaugment: str | None = None,
            cutout: int = 0) -> DataBundle:
    """CIFAR-10 from data.root/cifar-10-batches-py (torchvision); crop 32 pad 4, flip"""
    return _cifar("cifar10", root, download, augment, randaugment, random_erasing, crop_padding, autoaugment, cutout)


@DATASETS.register("cifar100")
def cifar100(root: str, download: bool = False, augment: bool = True, randaugment: list | None = None,
             random_erasing: float = 0.0, crop_padding: int = 4, autoaugment: str | None = None,
             cutout: int = 0) -> DataBundle:
    """CIFAR-100 from data.root/cifar-100-python (torchvision); crop 32 pad 4, flip"""
    return _cifar("cifar100", root, download, augment, randaugment, random_erasing, crop_padding, autoaugment,
                  cutout)
