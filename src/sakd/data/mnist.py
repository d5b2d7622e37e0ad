"""MNIST, Fashion-MNIST and KMNIST: 28x28 grey images in 10 classes, 60,000 train / 10,000 test.

The four idx files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or ``.gz``) are read from
``data.root`` itself or from torchvision's layout ``data.root/<MNIST|FashionMNIST|KMNIST>/raw``;
``data.download=true`` fetches them with torchvision (needs internet). Debian's
``dataset-fashion-mnist`` package installs Fashion-MNIST's files in
``/usr/share/datasets/fashion-mnist``: ``data.name=fashion_mnist data.root=/usr/share/datasets/fashion-mnist``.

Images are standardised with the data set's usual mean and standard deviation (of its training
images) and optionally resized (``image_size``, bilinear); training augmentation shifts an image
by up to 2 pixels (random crop with zero padding). No flips: they change digits and characters.
One input channel: every model's stem takes ``in_channels`` from the data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch
from torch.nn import functional as F
from torchvision import datasets
from torchvision.transforms import v2

from sakd.data.registry import DATASETS, DataBundle
from sakd.data.tensor_dataset import ImageTensorDataset
from sakd.errors import DatasetNotFoundError

# torchvision's reader class (its folder name) and the usual normalisation of each data set
KINDS = {
    "mnist": (datasets.MNIST, (0.1307, 0.3081)),
    "fashion_mnist": (datasets.FashionMNIST, (0.2860, 0.3530)),
    "kmnist": (datasets.KMNIST, (0.1918, 0.3483)),
}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_TYPES = {0x08: torch.uint8}  # the idx type code of unsigned bytes, the only one these files use


def read_idx(path: Path) -> torch.Tensor:
    """An idx file (LeCun's format: 2 zero bytes, a type code, the number of dimensions, the
    big-endian 32-bit size of each, then the data), plain or gzip-compressed."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES:
        raise DatasetNotFoundError(f"{path} is not an idx file of unsigned bytes")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(data[3])]
    offset = 4 + 4 * len(dims)
    if len(data) - offset != torch.Size(dims).numel():
        raise DatasetNotFoundError(f"{path} is truncated: its header says {dims}")
    return torch.frombuffer(bytearray(data[offset:]), dtype=IDX_TYPES[data[2]]).view(dims)


def _find(root: Path, folder: str, stem: str) -> Path | None:
    for place in (root, root / folder / "raw"):
        for name in (stem, stem + ".gz"):
            if (place / name).is_file():
                return place / name
    return None


def _mnist_like(name: str, root: str, download: bool, augment: bool, image_size: int) -> DataBundle:
    cls, (mean, std) = KINDS[name]
    base = Path(root).expanduser()
    folder = cls.__name__
    if download:
        for train in (True, False):
            cls(str(base), train=train, download=True)
    found = {stem: _find(base, folder, stem) for pair in FILES.values() for stem in pair}
    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        raise DatasetNotFoundError(
            f"{name} not found: no {', '.join(missing)} (plain or .gz) in {base} or {base / folder / 'raw'}. "
            f"Set data.root to the folder holding the idx files, or data.download=true to fetch them (needs internet)."
        )
    splits = {}
    for split, (images_file, labels_file) in FILES.items():
        images, labels = read_idx(found[images_file]), read_idx(found[labels_file])
        if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
            raise DatasetNotFoundError(
                f"{name}: {found[images_file]} holds {tuple(images.shape)} and "
                f"{found[labels_file]} {tuple(labels.shape)}; expected [N, H, W] images and N labels"
            )
        x = images.unsqueeze(1).float().div_(255.0)
        if image_size != x.shape[-1]:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        splits[split] = ((x - mean) / std, labels.long())
    train_tf = v2.RandomCrop(image_size, padding=2) if augment else None
    return DataBundle(
        train=ImageTensorDataset(*splits["train"], train_tf),
        test=ImageTensorDataset(*splits["test"]),
        num_classes=10, in_channels=1, image_size=image_size,
    )


@DATASETS.register("mnist")
def mnist(root: str, download: bool = False, augment: bool = True, image_size: int = 28) -> DataBundle:
    """MNIST handwritten digits, 28x28 grey, from data.root's idx files (plain or .gz); shift by 2"""
    return _mnist_like("mnist", root, download, augment, image_size)


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: str, download: bool = False, augment: bool = True, image_size: int = 28) -> DataBundle:
    """Fashion-MNIST clothing images, 28x28 grey, data.root's idx files (Debian: /usr/share/datasets/fashion-mnist)"""
    return _mnist_like("fashion_mnist", root, download, augment, image_size)


@DATASETS.register("kmnist")
def kmnist(root: str, download: bool = False, augment: bool = True, image_size: int = 28) -> DataBundle:
    """Kuzushiji-MNIST cursive Japanese characters, 28x28 grey, from data.root's idx files"""
    return _mnist_like("kmnist", root, download, augment, image_size)
