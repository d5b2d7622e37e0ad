"""N-MNIST (Orchard et al. 2015, "Converting static image datasets to spiking neuromorphic datasets
using saccades"): MNIST digits seen by an ATIS camera moved in three saccades, 34x34 pixels.

``data.root`` is the folder the release unpacks into: ``Train/<digit>/*.bin`` and
``Test/<digit>/*.bin`` (digits 0-9; the release's own split, 60000 / 10000 recordings), ATIS
``.bin`` files (:func:`~sakd.data.events.read_atis_bin`; pre-converted ``.npz``/``.npy`` event
files are read too). Each recording becomes ``frames`` frames of two polarity channels
(:mod:`sakd.data.event_frames`: SpikingJelly's split, cached on disk), at ``image_size`` (34: the
sensor's own size; another size is a bilinear resize).
"""

from __future__ import annotations

from pathlib import Path

from sakd.data.event_frames import EventItems, event_dataset, event_files
from sakd.data.registry import DATASETS
from sakd.errors import DatasetNotFoundError

CLASSES = tuple(str(d) for d in range(10))
SENSOR = (34, 34)  # (height, width)


def split_items(root: Path, split: str) -> list[tuple[Path, int]]:
    """``(path, label)`` of every recording of ``root/split`` (``Train`` or ``Test``)."""
    folder = root / split
    missing = [c for c in CLASSES if not (folder / c).is_dir()]
    if not folder.is_dir() or missing:
        raise DatasetNotFoundError(
            f"N-MNIST not found at {root}: expected {root}/Train/<digit>/*.bin and {root}/Test/<digit>/*.bin "
            f"(the release unpacked; digits 0-9)" + (f"; {folder} lacks {missing}" if folder.is_dir() else ""))
    return [(f, label) for label, c in enumerate(CLASSES) for f in event_files(folder / c, "N-MNIST")]


@DATASETS.register("n_mnist")
@event_dataset(sensor=SENSOR, image_size=34, crop_padding=2)
def n_mnist(root: Path) -> EventItems:
    """N-MNIST events (Train/ and Test/ ATIS .bin files) as T frames, 34x34, cached; the release's split"""
    return EventItems(split_items(root, "Train"), split_items(root, "Test"), len(CLASSES))
