"""DVS128 Gesture (Amir et al. 2017, "A low power, fully event-based gesture recognition system"):
11 hand and arm gestures of 29 people under 3 lightings, a DVS128 camera, 128x128 pixels.

``data.root`` is the folder tonic's release unpacks into: ``ibmGestureTrain/`` and
``ibmGestureTest/`` (the release's own split: users 1-23 train, 24-29 test), each
``userNN_<lighting>/<label>.npy``, one recording of one gesture per file, the label (0-10) its
name: arrays ``[N, 4]`` of x, y, polarity and the time in milliseconds, which the reader makes
microseconds as tonic does (:func:`read_gesture_npy`). The original AEDAT 3.1 release (whole
sessions plus CSV labels to cut them by) is not read: convert it with tonic or SpikingJelly. Each
recording becomes ``frames`` frames of two polarity channels (:mod:`sakd.data.event_frames`,
SpikingJelly's split, cached), at ``image_size`` (128, the sensor's; another size is a bilinear
resize).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sakd.data.event_frames import EventItems, event_dataset
from sakd.data.events import EventFileError, load_array, warn_if_unordered
from sakd.data.registry import DATASETS
from sakd.errors import DatasetNotFoundError

CLASSES = ("hand clap", "right hand wave", "left hand wave", "right arm clockwise", "right arm counter-clockwise",
           "left arm clockwise", "left arm counter-clockwise", "arm roll", "air drums", "air guitar", "other")
SENSOR = (128, 128)
SPLITS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}


def read_gesture_npy(path: str | Path) -> dict[str, np.ndarray]:
    """One recording of tonic's release: ``[N, 4]`` (x, y, p, t in ms) -> events with t in us."""
    path = Path(path)
    array = load_array(path)
    if array.ndim != 2 or array.shape[1] != 4:
        raise EventFileError(f"{path}: expected an array [N, 4] of x, y, p, t (tonic's DVS-Gesture release), got "
                             f"shape {array.shape}")
    t = np.rint(array[:, 3].astype(np.float64) * 1000).astype(np.int64)
    warn_if_unordered(path, t)
    return {"t": t, "x": array[:, 0].astype(np.int64), "y": array[:, 1].astype(np.int64),
            "p": array[:, 2].astype(np.int64)}


def split_items(root: Path, split: str) -> list[tuple[Path, int]]:
    """``(path, label)`` of every recording of ``root/ibmGesture<Train|Test>``."""
    folder = root / SPLITS[split]
    files = sorted(folder.glob("*/*.npy")) if folder.is_dir() else []
    if not files:
        raise DatasetNotFoundError(
            f"DVS-Gesture not found at {root}: expected {folder}/userNN_<lighting>/<label>.npy (tonic's release "
            "unpacked: ibmGestureTrain/ and ibmGestureTest/)")
    items = []
    for f in files:
        if not f.stem.isdigit() or not 0 <= int(f.stem) < len(CLASSES):
            raise DatasetNotFoundError(f"{f}: a DVS-Gesture recording is named by its label, 0.npy to "
                                       f"{len(CLASSES) - 1}.npy")
        items.append((f, int(f.stem)))
    return items


@DATASETS.register("dvs_gesture")
@event_dataset(sensor=SENSOR, image_size=128, crop_padding=4, frames=16, reader=read_gesture_npy)
def dvs_gesture(root: Path) -> EventItems:
    """IBM DVS128 Gesture (tonic's ibmGestureTrain/ and ibmGestureTest/ .npy) as T frames, 128x128, cached"""
    return EventItems(split_items(root, "train"), split_items(root, "test"), len(CLASSES))
