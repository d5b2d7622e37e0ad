"""Image folders: ImageNet, or any data set laid out as ``root/train/CLASS/*.jpg`` and
``root/val/CLASS/*.jpg`` (torchvision's ImageFolder layout).

Train: RandomResizedCrop(image_size) + horizontal flip; val: resize to ``resize`` then centre crop
``image_size``; both normalised (ImageNet statistics by default). These are the standard ImageNet
transforms the paper uses (A.1).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.transforms import v2

from sakd.data.registry import DATASETS, DataBundle
from sakd.errors import DatasetNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _transform(train: bool, augment: bool, image_size: int, resize: int, mean, std):
    if train and augment:
        ops = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        ops = [v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.ToImage(), *ops, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def _split(root: Path, name: str, label: str) -> Path:
    path = root / name
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"{label}: no folder {path}. Expected {root}/train/<class>/<image> and "
            f"{root}/val/<class>/<image> (ImageFolder layout); set data.root to the folder holding them"
        )
    return path


@DATASETS.register("imagefolder")
def imagefolder(root: str, download: bool = False, augment: bool = True, image_size: int = 224,
                resize: int | None = None, mean: list = IMAGENET_MEAN, std: list = IMAGENET_STD,
                train_split: str = "train", val_split: str = "val", _label: str = "imagefolder") -> DataBundle:
    """Your own images: data.root/train/<class>/* and data.root/val/<class>/*, ImageNet transforms"""
    base = Path(root).expanduser()
    resize = resize or round(image_size * 256 / 224)
    train_dir, val_dir = _split(base, train_split, _label), _split(base, val_split, _label)
    train = datasets.ImageFolder(str(train_dir), transform=_transform(True, augment, image_size, resize, mean, std))
    val = datasets.ImageFolder(str(val_dir), transform=_transform(False, augment, image_size, resize, mean, std))
    if train.classes != val.classes:
        missing = sorted(set(train.classes) ^ set(val.classes))
        raise DatasetNotFoundError(f"{_label}: train and val class folders differ ({missing[:5]} ...) under {base}")
    return DataBundle(train, val, num_classes=len(train.classes), in_channels=3, image_size=image_size)


@DATASETS.register("imagenet")
def imagenet(root: str, download: bool = False, augment: bool = True, image_size: int = 224,
             resize: int = 256) -> DataBundle:
    """ILSVRC-2012 from data.root/train and data.root/val (val sorted into class folders)"""
    return imagefolder(root, download, augment, image_size, resize, _label="imagenet")
