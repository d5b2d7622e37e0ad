"""The embedded default data set: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes).

It ships inside scikit-learn, so it needs no download. Images are scaled to ``image_size`` (16 by
default) with bilinear interpolation and standardised; the train/test split is fixed and
stratified (80/20, seed 0), so every run sees the same test set. Training augmentation shifts an
image by up to one original pixel.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.transforms import v2

from sakd.data.registry import DATASETS, DataBundle
from sakd.data.tensor_dataset import ImageTensorDataset

SPLIT_SEED = 0
TEST_FRACTION = 0.2


@DATASETS.register("digits")
def digits(root: str, download: bool = False, augment: bool = True, image_size: int = 16) -> DataBundle:
    """scikit-learn's embedded 8x8 digits (no download), scaled to image_size, fixed 80/20 split"""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    images = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(raw.target)
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    idx_train, idx_test = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=TEST_FRACTION,
        stratify=labels.numpy(),
        random_state=SPLIT_SEED,
    )
    train_x = images[idx_train]
    mean, std = train_x.mean(), train_x.std()
    images = (images - mean) / std
    shift = max(1, image_size // 8)
    train_tf = v2.RandomCrop(image_size, padding=shift) if augment else None
    return DataBundle(
        train=ImageTensorDataset(images[idx_train], labels[idx_train], train_tf),
        test=ImageTensorDataset(images[idx_test], labels[idx_test]),
        num_classes=10,
        in_channels=1,
        image_size=image_size,
    )
