"""Image folders: your own images, or ImageNet, laid out as ``root/train/CLASS/*.jpg`` and
``root/val/CLASS/*.jpg`` (torchvision's ImageFolder layout; any format Pillow reads).

Options (``data.options``):

* ``image_size``: the side of the square the model sees. ``auto`` (the default for
  ``imagefolder``): the shorter side of the first training image, at most 224, so small images
  (CIFAR-like 32x32) are never upscaled (each epoch 8-40x slower at 224) and large photos take
  ImageNet's 224. ``imagenet`` defaults to 224.
* ``augment_style``: ``auto`` (``small`` up to 64 pixels, else ``imagenet``), ``small`` (the CIFAR
  recipe: resize the shorter side to ``image_size``, random crop with ``image_size // 8`` pixels of
  zero padding, horizontal flip) or ``imagenet`` (RandomResizedCrop + flip, the paper's A.1).
* ``resize``: the shorter side evaluation images are resized to before the centre crop of
  ``image_size`` (default: ``image_size`` for ``small``, ``image_size · 256/224`` for ``imagenet``).
* ``mean``, ``std``: normalisation (default ImageNet's statistics); ``train_split``, ``val_split``:
  the folder names (``train``, ``val``).
* ``randaugment: [N, M]``, ``random_erasing: p``: the spiking transformers' policy
  (:mod:`sakd.data.augmentation`), on training images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

from sakd.data.augmentation import sample_ops, tensor_ops
from sakd.data.registry import DATASETS, DataBundle
from sakd.errors import ConfigError, DatasetNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LARGEST_AUTO = 224  # auto image_size: the images' own size, at most ImageNet's
SMALL = 64  # auto augment_style: the CIFAR recipe up to this size


def _transform(train: bool, augment: bool, style: str, image_size: int, resize: int, mean, std,
               policy: list = (), erase: list = ()):
    if train and augment and style == "imagenet":
        ops = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip(), *policy]
    elif train and augment:
        ops = [v2.Resize(image_size, antialias=True), v2.RandomCrop(image_size, padding=image_size // 8),
               v2.RandomHorizontalFlip(), *policy]
    else:
        ops = [v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)]
    erase = list(erase) if train and augment else []
    return v2.Compose([v2.ToImage(), *ops, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), *erase])


def _split(root: Path, name: str, label: str) -> Path:
    path = root / name
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"{label}: no folder {path}. Expected {root}/train/<class>/<image> and "
            f"{root}/val/<class>/<image> (ImageFolder layout); set data.root to the folder holding them"
        )
    return path


def _own_size(folder: datasets.ImageFolder) -> int:
    """The shorter side of the first image, at most :data:`LARGEST_AUTO`."""
    with Image.open(folder.samples[0][0]) as image:
        return min(LARGEST_AUTO, *image.size)


@DATASETS.register("imagefolder")
def imagefolder(root: str, download: bool = False, augment: bool = True, image_size: int | str = "auto",
                resize: int | None = None, augment_style: str = "auto", mean: list = IMAGENET_MEAN,
                std: list = IMAGENET_STD, train_split: str = "train", val_split: str = "val",
                randaugment: list | None = None, random_erasing: float = 0.0, _label: str = "imagefolder") -> DataBundle:
    """Your own images: data.root/train/<class>/* and data.root/val/<class>/*, at their own size"""
    if augment_style not in ("auto", "small", "imagenet"):
        raise ConfigError(f"{_label}: augment_style must be auto, small or imagenet, got {augment_style!r}")
    if image_size != "auto" and not (isinstance(image_size, int) and image_size > 0):
        raise ConfigError(f"{_label}: image_size must be auto or a positive whole number, got {image_size!r}")
    policy, erase = sample_ops(randaugment, _label), tensor_ops(random_erasing, _label)
    base = Path(root).expanduser()
    train_dir, val_dir = _split(base, train_split, _label), _split(base, val_split, _label)
    train, val = datasets.ImageFolder(str(train_dir)), datasets.ImageFolder(str(val_dir))
    if train.classes != val.classes:
        missing = sorted(set(train.classes) ^ set(val.classes))
        raise DatasetNotFoundError(f"{_label}: train and val class folders differ ({missing[:5]} ...) under {base}")
    size = _own_size(train) if image_size == "auto" else image_size
    style = augment_style if augment_style != "auto" else ("small" if size <= SMALL else "imagenet")
    resize = resize or (size if style == "small" else round(size * 256 / 224))
    train.transform = _transform(True, augment, style, size, resize, mean, std, policy, erase)
    val.transform = _transform(False, augment, style, size, resize, mean, std)
    return DataBundle(train, val, num_classes=len(train.classes), in_channels=3, image_size=size)


@DATASETS.register("imagenet")
def imagenet(root: str, download: bool = False, augment: bool = True, image_size: int = 224,
             resize: int = 256, randaugment: list | None = None, random_erasing: float = 0.0) -> DataBundle:
    """ILSVRC-2012 from data.root/train and data.root/val (val sorted into class folders)"""
    return imagefolder(root, download, augment, image_size, resize, augment_style="imagenet",
                       randaugment=randaugment, random_erasing=random_erasing, _label="imagenet")
