"""Data-set registry: ``build_dataset("cifar10", root=..., download=False, augment=True)``."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Callable

from torch.utils.data import Dataset

from sakd.errors import ConfigError


@dataclass
class DataBundle:
    """Train and test splits plus what a model needs to know about them."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    frames: int | None = None  # event data: timesteps per sample; None for static images
    collate_fn: Callable | None = None  # how samples become a batch (event frames: time-first)


_DATASETS: dict[str, Callable[..., DataBundle]] = {}


def register_dataset(name: str):
    def deco(fn):
        _DATASETS[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def build_dataset(name: str, *, root: str, download: bool = False, augment: bool = True, **options) -> DataBundle:
    """Build a registered data set. ``options`` go to its builder (e.g. digits' ``image_size``)."""
    if name not in _DATASETS:
        close = difflib.get_close_matches(str(name), _DATASETS, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown data set {name!r}.{hint} Known: {', '.join(list_datasets())}")
    builder = _DATASETS[name]
    params = inspect.signature(builder).parameters
    accepted = {p for p in params if not p.startswith("_")} - {"root", "download", "augment"}
    unknown = set(options) - accepted
    if unknown:
        raise ConfigError(
            f"data set {name!r} takes no option(s) {sorted(unknown)}; its options: {sorted(accepted) or 'none'}"
        )
    return builder(root=root, download=download, augment=augment, **options)
