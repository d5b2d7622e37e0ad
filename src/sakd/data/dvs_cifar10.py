"""DVS-CIFAR10 (CIFAR10-DVS): event streams as spiking frames, as in the paper's A.1.

Layout read from ``data.root``: one folder per class (``airplane/ ... truck/``) of event files,
as distributed (``cifar10_airplane_0.aedat`` ...) or pre-converted (``.npz`` / ``.npy``). Each
stream is integrated into ``frames`` frames (T=4; split by event count or by time) with two
polarity channels, resized 128x128 -> ``image_size`` (48), and cached on disk as ``.npy`` so only
the first epoch decodes events. Training adds a random crop (``crop_padding`` pixels of padding,
the same crop for every frame of a sample). The split is fixed: in each class, files sorted by
their number, the first tenth is the test set and the rest the training set (9:1).

Samples are ``[T, 2, H, W]``; batches come time-first, ``[T, B, 2, H, W]``, the layout the
spiking models take (one frame per timestep). An ANN twin reads the same batch as T images and
averages its logits over them (see :mod:`sakd.models.base`), so teacher and student see the same
data and their weights and taps still align.
"""

from __future__ import annotations

from pathlib import Path

from sakd.data.event_frames import EventItems, event_dataset, event_files
from sakd.data.registry import DATASETS
from sakd.errors import DatasetNotFoundError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SENSOR = 128


def discover(root: Path, classes=CLASSES) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"DVS-CIFAR10 not found: no folder {root}. Expected {root}/<class>/<file>.aedat (the "
            f"original release, one folder per class: {', '.join(classes)}) or .npz/.npy event files"
        )
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"DVS-CIFAR10 at {root} lacks the class folder(s) {missing}")
    return {c: event_files(root / c, "DVS-CIFAR10") for c in classes}


def split_files(found: dict[str, list[Path]]) -> tuple[list, list]:
    """``(path, label)`` lists: per class, the first tenth (at least one file) tests, the rest trains."""
    train, test = [], []
    for label, files in enumerate(found.values()):
        n_test = max(1, round(len(files) / 10))
        test += [(f, label) for f in files[:n_test]]
        train += [(f, label) for f in files[n_test:]]
    return train, test


@DATASETS.register("dvs_cifar10")
@event_dataset(sensor=(SENSOR, SENSOR), image_size=48, crop_padding=4)
def dvs_cifar10(root: Path) -> EventItems:
    """CIFAR10-DVS events (AEDAT 2.0 or npz/npy) as T frames, 48x48, cached; 9:1 split"""
    return EventItems(*split_files(discover(root)), len(CLASSES))
