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

import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import v2

from sakd.data.events import READERS, SPLITS, events_to_frames, read_events
from sakd.data.registry import DATASETS, DataBundle
from sakd.errors import ConfigError, DatasetNotFoundError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SENSOR = 128
CACHE_VERSION = 2  # 2: SpikingJelly's frame split (remainder in the last frame)


def _number(path: Path) -> tuple:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def discover(root: Path, classes=CLASSES) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"DVS-CIFAR10 not found: no folder {root}. Expected {root}/<class>/<file>.aedat (the "
            f"original release, one folder per class: {', '.join(classes)}) or .npz/.npy event files"
        )
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"DVS-CIFAR10 at {root} lacks the class folder(s) {missing}")
    found = {}
    for c in classes:
        files = sorted((p for p in (root / c).iterdir() if p.suffix in READERS), key=_number)
        if not files:
            raise DatasetNotFoundError(f"DVS-CIFAR10 class folder {root / c} holds no event files ({sorted(READERS)})")
        found[c] = files
    return found


def split_files(found: dict[str, list[Path]]) -> tuple[list, list]:
    """``(path, label)`` lists: per class, the first tenth (at least one file) tests, the rest trains."""
    train, test = [], []
    for label, files in enumerate(found.values()):
        n_test = max(1, round(len(files) / 10))
        test += [(f, label) for f in files[:n_test]]
        train += [(f, label) for f in files[n_test:]]
    return train, test


class EventFrames(Dataset):
    """Framed event streams with an on-disk cache of the resized frames."""

    def __init__(self, items, root: Path, cache_dir: Path, frames: int, split_by: str, image_size: int,
                 transform=None):
        self.items, self.root, self.cache_dir = items, root, cache_dir
        self.frames, self.split_by, self.image_size, self.transform = frames, split_by, image_size, transform

    def __len__(self) -> int:
        return len(self.items)

    def cache_path(self, path: Path) -> Path:
        return self.cache_dir / path.relative_to(self.root).with_suffix(".npy")

    def load_frames(self, path: Path) -> torch.Tensor:
        cached = self.cache_path(path)
        if cached.is_file():
            frames = self._read_cache(cached)
            if frames is not None:
                return frames
        frames = torch.from_numpy(events_to_frames(read_events(path), self.frames, self.split_by, SENSOR, SENSOR))
        if self.image_size != SENSOR:
            frames = F.interpolate(frames, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npy.tmp")  # atomic: workers may race
        with os.fdopen(fd, "wb") as f:
            np.save(f, frames.numpy())
        os.replace(tmp, cached)
        return frames

    def _read_cache(self, cached: Path) -> torch.Tensor | None:
        """The cached frames, or None (and a warning) if the file is truncated, corrupt or of
        another shape: the caller decodes the events again and rewrites it."""
        expected = (self.frames, 2, self.image_size, self.image_size)
        try:
            array = np.load(cached, allow_pickle=False)
            if array.shape == expected and array.dtype == np.float32 and np.isfinite(array).all():
                return torch.from_numpy(array)
            problem = f"holds {array.dtype} {array.shape}, expected float32 {expected}"
        except (OSError, ValueError, EOFError) as exc:
            problem = f"is unreadable ({exc})"
        warnings.warn(f"frame cache {cached} {problem}; decoding the events again", RuntimeWarning, stacklevel=3)
        return None

    def __getitem__(self, i):
        path, label = self.items[i]
        x = self.load_frames(path)
        return (self.transform(x) if self.transform else x), label


def time_first_collate(batch):
    """Stack ``[T, C, H, W]`` samples into ``[T, B, C, H, W]``."""
    x, y = default_collate(batch)
    return x.transpose(0, 1).contiguous(), y


@DATASETS.register("dvs_cifar10")
def dvs_cifar10(root: str, download: bool = False, augment: bool = True, frames: int = 4,
                split_by: str = "number", image_size: int = 48, crop_padding: int = 4,
                cache_dir: str | None = None) -> DataBundle:
    """CIFAR10-DVS events (AEDAT 2.0 or npz/npy) as T frames, 48x48, cached; 9:1 split"""
    if split_by not in SPLITS:
        raise ConfigError(f"data.options.split_by must be one of {SPLITS}, got {split_by!r}")
    if frames < 1:
        raise ConfigError(f"data.options.frames must be at least 1, got {frames}")
    base = Path(root).expanduser()
    train_items, test_items = split_files(discover(base))
    cache = (Path(cache_dir).expanduser() if cache_dir
             else base / ".sakd_frames" / f"v{CACHE_VERSION}" / f"T{frames}-{split_by}-{image_size}px")
    crop = v2.RandomCrop(image_size, padding=crop_padding) if augment and crop_padding else None
    common = dict(root=base, cache_dir=cache, frames=frames, split_by=split_by, image_size=image_size)
    return DataBundle(
        train=EventFrames(train_items, transform=crop, **common),
        test=EventFrames(test_items, **common),
        num_classes=len(CLASSES), in_channels=2, image_size=image_size, frames=frames,
        collate_fn=time_first_collate,
    )
