"""Event streams as frames, for every event data set: :class:`EventFrames` integrates each stream
into T frames of two polarity channels (:func:`~sakd.data.events.events_to_frames`, SpikingJelly's
split), resizes them to ``image_size`` and caches them on disk as ``.npy``, keyed by the options,
so only the first epoch decodes events; :func:`framed_bundle` makes a data set's
:class:`~sakd.data.registry.DataBundle` from its files.

Samples are ``[T, 2, H, W]``; batches come time-first, ``[T, B, 2, H, W]``, the layout the spiking
models take (one frame per timestep). An ANN twin reads the same batch as T images and averages
its logits over them (see :mod:`sakd.models.base`), so teacher and student see the same data.
A data set is one function from its root to its labelled recordings, made a builder by
:func:`event_dataset` (the framing options every event data set takes).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import v2

from sakd.data.events import READERS, SPLITS, EventFileError, events_to_frames, read_events
from sakd.data.registry import DataBundle
from sakd.errors import ConfigError, DatasetNotFoundError

CACHE_VERSION = 2  # 2: SpikingJelly's frame split (remainder in the last frame)


def file_number(path: Path) -> tuple:
    """A sort key: the last number in the file's name, then the name."""
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def event_files(folder: Path, what: str) -> list[Path]:
    """The event files of one class folder, sorted by their number; none is an error naming it."""
    files = sorted((p for p in folder.iterdir() if p.suffix in READERS), key=file_number)
    if not files:
        raise DatasetNotFoundError(f"{what} class folder {folder} holds no event files ({sorted(READERS)})")
    return files


class EventFrames(Dataset):
    """Framed event streams with an on-disk cache of the resized frames."""

    def __init__(self, items, root: Path, cache_dir: Path, frames: int, split_by: str, image_size: int,
                 sensor: tuple[int, int], transform=None, reader=None):
        self.items, self.root, self.cache_dir = items, root, cache_dir
        self.reader = reader if reader is not None else read_events  # a data set's own, else by file type
        self.frames, self.split_by, self.image_size, self.transform = frames, split_by, image_size, transform
        self.sensor = sensor  # (height, width) of the camera

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
        events = self.reader(path)
        try:
            frames = torch.from_numpy(events_to_frames(events, self.frames, self.split_by, *self.sensor))
        except EventFileError as exc:  # events outside the sensor: the file is named
            raise EventFileError(f"{path}: {exc}") from None
        if (self.image_size, self.image_size) != self.sensor:
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


def framed_bundle(train_items, test_items, *, root: Path, num_classes: int, sensor: tuple[int, int], frames: int,
                  split_by: str, image_size: int, crop_padding: int, augment: bool, cache_dir: str | None,
                  reader=None, flip: float = 0.0, rotation: float = 0.0, erasing: float = 0.0) -> DataBundle:
    """The data set of framed event files (``(path, label)`` lists, read by ``reader``): frames
    cached under ``root/.sakd_frames`` (or ``cache_dir``) by their options. Training augments the
    frames of a sample alike (one draw for all of them, from the sample's seeded generator, so a
    resumed run draws the same): a random crop (``crop_padding`` pixels of padding), and, as the
    event-data papers do (NDA, Li et al. 2022), a horizontal flip at odds ``flip``, a rotation by
    up to ``rotation`` degrees either way and a random erasing (cutout) at odds ``erasing``; all
    three are off unless a data.options turns them on (a flip changes what a gesture means)."""
    if split_by not in SPLITS:
        raise ConfigError(f"data.options.split_by must be one of {SPLITS}, got {split_by!r}")
    if frames < 1:
        raise ConfigError(f"data.options.frames must be at least 1, got {frames}")
    if image_size < 1:
        raise ConfigError(f"data.options.image_size must be at least 1, got {image_size}")
    cache = (Path(cache_dir).expanduser() if cache_dir
             else root / ".sakd_frames" / f"v{CACHE_VERSION}" / f"T{frames}-{split_by}-{image_size}px")
    for name, value, top in (("flip", flip, 1.0), ("erasing", erasing, 1.0), ("rotation", rotation, 180.0)):
        if not 0 <= value <= top:
            raise ConfigError(f"data.options.{name} must lie in [0, {top:g}], got {value}")
    steps = [v2.RandomCrop(image_size, padding=crop_padding)] if crop_padding else []
    steps += [v2.RandomHorizontalFlip(flip)] if flip else []
    steps += [v2.RandomRotation(rotation)] if rotation else []
    steps += [v2.RandomErasing(erasing)] if erasing else []
    crop = v2.Compose(steps) if augment and steps else None
    common = dict(root=root, cache_dir=cache, frames=frames, split_by=split_by, image_size=image_size, sensor=sensor,
                  reader=reader)
    return DataBundle(
        train=EventFrames(train_items, transform=crop, **common),
        test=EventFrames(test_items, **common),
        num_classes=num_classes, in_channels=2, image_size=image_size, frames=frames,
        collate_fn=time_first_collate,
    )


@dataclass(frozen=True)
class EventItems:
    """An event data set's recordings: ``(path, label)`` lists and the number of classes."""

    train: list
    test: list
    num_classes: int


def event_dataset(*, sensor: tuple[int, int], image_size: int, crop_padding: int, frames: int = 4,
                  reader: Callable | None = None):
    """Decorator: a function ``root -> EventItems`` (where a data set's labelled recordings are)
    becomes its builder, ``(root, download=False, augment=True, **options)``, taking the options
    every event data set takes (``data.options``: ``frames``, ``split_by``, ``image_size``,
    ``crop_padding``, ``cache_dir``, ``flip``, ``rotation``, ``erasing``; see
    :func:`framed_bundle`), with this data set's defaults and its sensor (and reader)."""
    defaults = dict(frames=frames, split_by="number", image_size=image_size, crop_padding=crop_padding,
                    cache_dir=None, flip=0.0, rotation=0.0, erasing=0.0)

    def make(find: Callable[[Path], EventItems]):
        @functools.wraps(find)
        def build(root: str, download: bool = False, augment: bool = True, **options) -> DataBundle:
            base = Path(root).expanduser()
            items = find(base)
            return framed_bundle(items.train, items.test, root=base, num_classes=items.num_classes, sensor=sensor,
                                 augment=augment, reader=reader, **{**defaults, **options})

        given = [inspect.Parameter("root", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str),
                 inspect.Parameter("download", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False),
                 inspect.Parameter("augment", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=True)]
        options = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
        # the options build_dataset checks a config's data.options against
        build.__signature__ = inspect.Signature(given + options, return_annotation=DataBundle)
        return build

    return make
