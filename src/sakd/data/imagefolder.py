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
* ``bad_files``: what an image that cannot be read does. ``error`` (the default): one line naming
  the file, before any run folder is made where the check is cheap; ``skip``: a warning naming
  each file, and training goes on without it (at start: a count of the files left out). Where a
  split's files total at most :data:`CHECK_BYTES`, every image is decoded once at start (a
  truncated JPEG shows only when decoded); larger folders (ImageNet) are checked as each image is
  read, where ``skip`` reads the next image in its place.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

from sakd.data.augmentation import sample_ops, tensor_ops
from sakd.data.registry import DATASETS, DataBundle
from sakd.errors import BadDataError, ConfigError, DatasetNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LARGEST_AUTO = 224  # auto image_size: the images' own size, at most ImageNet's
SMALL = 64  # auto augment_style: the CIFAR recipe up to this size
CHECK_BYTES = 256 * 2**20  # a split whose files total at most this is decoded whole at start
BAD_FILES = ("error", "skip")


def _reason(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Images(datasets.ImageFolder):
    """torchvision's ImageFolder of one split, whose unreadable images are named (``bad_files``
    ``error``) or skipped with a warning (``skip``), and whose empty class folders are named with
    the split's path."""

    def __init__(self, root: Path, split: str, label: str, bad_files: str):
        self.split, self.label, self.bad_files = split, label, bad_files
        try:
            super().__init__(str(root))
        except FileNotFoundError as exc:  # "Found no valid file for the classes x"
            raise DatasetNotFoundError(f"{label}: the {split} split {root}: {_reason(exc)}") from None
        self.skipped: list[str] = []

    def check(self) -> None:
        """Decode every image once (where the split is small enough to be cheap): an unreadable one
        is an error naming it, or (``skip``) left out with a warning and a count."""
        total = 0
        for path, _ in self.samples:  # stops at the limit: ImageNet's 1.28 M files are not all looked at
            total += Path(path).stat().st_size
            if total > CHECK_BYTES:
                return
        bad = []
        for path, _ in self.samples:
            try:
                with Image.open(path) as image:
                    image.load()
            except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, named with the file
                bad.append((path, _reason(exc)))
        if not bad:
            return
        if self.bad_files == "error":
            named = "; ".join(f"{p} ({why})" for p, why in bad)
            raise BadDataError(f"{self.label}: {len(bad)} image(s) of the {self.split} split cannot be read: {named}; "
                               "fix or remove them, or set data.options.bad_files=skip to train without them")
        for path, why in bad:
            warnings.warn(f"{path}: cannot read the image ({why}); skipped (data.options.bad_files=skip)",
                          RuntimeWarning, stacklevel=2)
        gone = {p for p, _ in bad}
        self.samples = [s for s in self.samples if s[0] not in gone]
        self.imgs, self.targets = self.samples, [t for _, t in self.samples]
        self.skipped = sorted(gone)
        warnings.warn(f"{self.label}: skipped {len(gone)} of {len(gone) + len(self.samples)} images of the "
                      f"{self.split} split that cannot be read", RuntimeWarning, stacklevel=2)

    def __getitem__(self, index: int):
        for attempt in range(len(self.samples)):
            path, target = self.samples[(index + attempt) % len(self.samples)]
            try:
                sample = self.loader(path)  # only the reading: a transform's own error stays its own
            except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, named with the file
                if self.bad_files == "error":
                    raise BadDataError(f"{path}: cannot read the image ({_reason(exc)}); fix or remove it, or set "
                                       "data.options.bad_files=skip") from None
                warnings.warn(f"{path}: cannot read the image ({_reason(exc)}); the next image read in its place "
                              "(data.options.bad_files=skip)", RuntimeWarning, stacklevel=1)
                continue
            if self.transform is not None:
                sample = self.transform(sample)
            if self.target_transform is not None:
                target = self.target_transform(target)
            return sample, target
        raise BadDataError(f"{self.label}: no image of the {self.split} split can be read")


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
                randaugment: list | None = None, random_erasing: float = 0.0, bad_files: str = "error",
                _label: str = "imagefolder") -> DataBundle:
    """Your own images: data.root/train/<class>/* and data.root/val/<class>/*, at their own size"""
    if augment_style not in ("auto", "small", "imagenet"):
        raise ConfigError(f"{_label}: augment_style must be auto, small or imagenet, got {augment_style!r}")
    if image_size != "auto" and not (isinstance(image_size, int) and image_size > 0):
        raise ConfigError(f"{_label}: image_size must be auto or a positive whole number, got {image_size!r}")
    if bad_files not in BAD_FILES:
        raise ConfigError(f"{_label}: bad_files must be one of {', '.join(BAD_FILES)}, got {bad_files!r}")
    policy, erase = sample_ops(randaugment, _label), tensor_ops(random_erasing, _label)
    base = Path(root).expanduser()
    train_dir, val_dir = _split(base, train_split, _label), _split(base, val_split, _label)
    train, val = Images(train_dir, train_split, _label, bad_files), Images(val_dir, val_split, _label, bad_files)
    train.check()
    val.check()
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
             resize: int = 256, randaugment: list | None = None, random_erasing: float = 0.0,
             bad_files: str = "error") -> DataBundle:
    """ILSVRC-2012 from data.root/train and data.root/val (val sorted into class folders)"""
    return imagefolder(root, download, augment, image_size, resize, augment_style="imagenet",
                       randaugment=randaugment, random_erasing=random_erasing, bad_files=bad_files, _label="imagenet")
