import numpy as np
import pytest
import torch
from PIL import Image

from sakd.data import build_dataset
from sakd.errors import ConfigError, DatasetNotFoundError


def test_digits_split_is_fixed_stratified_and_standardised():
    a, b = build_dataset("digits", root="unused"), build_dataset("digits", root="unused", augment=False)
    assert (len(a.train), len(a.test)) == (1437, 360)
    assert torch.equal(a.test.labels, b.test.labels)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    assert abs(b.train.images.mean().item()) < 1e-4 and abs(b.train.images.std().item() - 1) < 1e-3
    assert a.train[0][0].shape == (1, 16, 16) and (a.num_classes, a.in_channels) == (10, 1)


def _image_folder(root, splits=("train", "val"), classes=("cat", "dog"), per_class=3):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_imagefolder_pipeline(tmp_path):
    _image_folder(tmp_path)
    data = build_dataset("imagenet", root=str(tmp_path), image_size=32, resize=36)
    assert data.num_classes == 2 and len(data.train) == 6 and len(data.test) == 6
    x, y = data.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert data.test[0][0].shape == (3, 32, 32)
    assert torch.equal(data.test[0][0], data.test[0][0])  # val transform is deterministic


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"no folder .*/train.*ImageFolder layout"):
        build_dataset("imagenet", root=str(tmp_path))
    _image_folder(tmp_path / "a")
    (tmp_path / "a" / "val" / "dog").rename(tmp_path / "a" / "val" / "wolf")
    with pytest.raises(DatasetNotFoundError, match="train and val class folders differ"):
        build_dataset("imagefolder", root=str(tmp_path / "a"))


def test_unknown_dataset_and_option():
    with pytest.raises(ConfigError, match="unknown data set 'cifar1000'.*cifar100"):
        build_dataset("cifar1000", root=".")
    with pytest.raises(ConfigError, match="takes no option.*'_label'|takes no option"):
        build_dataset("imagenet", root=".", _label="x")
