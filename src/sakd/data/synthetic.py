"""A synthetic image-classification set for tests: class prototypes plus noise, made from a seed.

Each class is a fixed random smooth pattern; a sample is its class pattern, randomly scaled, plus
Gaussian noise. It is learnable in a few epochs, so a working model beats chance quickly and a
broken one does not.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.data.registry import DATASETS, DataBundle
from sakd.data.tensor_dataset import ImageTensorDataset


def make_synthetic(n: int, num_classes: int, channels: int, size: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, channels, 4, 4, generator=torch.Generator().manual_seed(1234))
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    scale = 0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    images = prototypes[labels] * scale + noise * torch.randn(n, channels, size, size, generator=g)
    return images, labels


@DATASETS.register("synthetic")
def synthetic(
    root: str,
    download: bool = False,
    augment: bool = True,
    num_classes: int = 10,
    channels: int = 3,
    image_size: int = 16,
    train_size: int = 512,
    test_size: int = 256,
    noise: float = 1.0,
) -> DataBundle:
    """Class prototypes plus noise, made from a seed: a learnable set for tests"""
    train = make_synthetic(train_size, num_classes, channels, image_size, noise, seed=0)
    test = make_synthetic(test_size, num_classes, channels, image_size, noise, seed=1)
    return DataBundle(
        train=ImageTensorDataset(*train),
        test=ImageTensorDataset(*test),
        num_classes=num_classes,
        in_channels=channels,
        image_size=image_size,
    )
