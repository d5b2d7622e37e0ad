"""N-Caltech101 (Orchard et al. 2015): Caltech101's images seen by an ATIS camera moved in three
saccades, up to 240x180 pixels.

``data.root`` is the folder the release unpacks into: one folder per class of ATIS ``.bin`` files
(``Caltech101/<class>/image_0001.bin``; ``data.root`` may be that ``Caltech101`` folder or the one
that holds it). Every class folder found is a class, sorted by name (the release's 101 categories,
and ``BACKGROUND_Google`` where it is present, as SpikingJelly and tonic count it). The release has
no split: sakd's is fixed, stratified and seeded: in each class, the files sorted by name are
shuffled by a generator seeded with (0, the class's index) and the first fifth (at least one) is the test set, the rest
the training set (80/20). Each recording becomes ``frames`` frames of two polarity channels on a
180x240 sensor (:mod:`sakd.data.event_frames`, cached), resized to ``image_size`` x ``image_size``
(48; the aspect ratio is not kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sakd.data.event_frames import EventItems, event_dataset, event_files
from sakd.data.registry import DATASETS
from sakd.errors import DatasetNotFoundError

SENSOR = (180, 240)  # (height, width), as SpikingJelly frames it
SPLIT_SEED = 0
TEST_SHARE = 0.2


def class_folders(root: Path) -> list[Path]:
    """The class folders under ``root`` (or under ``root/Caltech101``), sorted by name."""
    if (root / "Caltech101").is_dir():
        root = root / "Caltech101"
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name) \
        if root.is_dir() else []
    if not folders:
        raise DatasetNotFoundError(f"N-Caltech101 not found at {root}: expected {root}/<class>/*.bin (the release "
                                   "unpacked: Caltech101/<class>/image_0001.bin)")
    return folders


def split_items(folders: list[Path]) -> tuple[list, list]:
    """``(path, label)`` lists: per class, a seeded fifth (at least one file) tests, the rest trains."""
    train, test = [], []
    for label, folder in enumerate(folders):
        files = sorted(event_files(folder, "N-Caltech101"), key=lambda p: p.name)
        order = np.random.default_rng([SPLIT_SEED, label]).permutation(len(files))
        n_test = max(1, round(len(files) * TEST_SHARE))
        test += [(files[i], label) for i in sorted(order[:n_test])]
        train += [(files[i], label) for i in sorted(order[n_test:])]
    return train, test


@DATASETS.register("n_caltech101")
@event_dataset(sensor=SENSOR, image_size=48, crop_padding=4)
def n_caltech101(root: Path) -> EventItems:
    """N-Caltech101 events (<class>/*.bin ATIS files) as T frames, 48x48, cached; a fixed seeded 80/20 split"""
    folders = class_folders(root)
    return EventItems(*split_items(folders), len(folders))
