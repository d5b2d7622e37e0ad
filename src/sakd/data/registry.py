"""Data-set registry: ``build_dataset("cifar10", root=..., download=False, augment=True)``, and
``open_data(config.data)`` for a config's data section.

A data set is a function registered with ``@DATASETS.register("name")`` that takes ``root``,
``download``, ``augment`` and its own options (``data.options``) and returns a :class:`DataBundle`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from torch.utils.data import Dataset

from sakd.errors import ConfigError, DatasetNotFoundError
from sakd.registry import Registry


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


DATASETS: Registry[Callable[..., DataBundle]] = Registry("data set", keys=("data.name",), listed=("datasets",),
                                                           heading="data sets (data.name)")


def list_datasets() -> list[str]:
    return DATASETS.names()


def build_dataset(name: str, *, root: str, download: bool = False, augment: bool = True, **options) -> DataBundle:
    """Build a registered data set. ``options`` go to its builder (e.g. digits' ``image_size``)."""
    builder = DATASETS.get(name)
    params = inspect.signature(builder).parameters
    accepted = {p for p in params if not p.startswith("_")} - {"root", "download", "augment"}
    unknown = set(options) - accepted
    if unknown:
        raise ConfigError(
            f"data set {name!r} takes no option(s) {sorted(unknown)}; its options: {sorted(accepted) or 'none'}"
        )
    return builder(root=root, download=download, augment=augment, **options)


def open_data(data_cfg, *, augment: bool | None = None, download: bool | None = None) -> DataBundle:
    """The data set a config's ``data`` section names (its ``augment`` and ``download`` unless
    given here): the one place a run, ``sakd eval``, export and the NAS search open their data.
    ``data.root`` is read from the current folder where it is relative (a run records it absolute:
    :func:`sakd.training.assemble.checked`); a data set not found there says so."""
    root = Path(data_cfg.root).expanduser()
    try:
        return build_dataset(data_cfg.name, root=str(root.absolute()),
                             download=data_cfg.download if download is None else download,
                             augment=data_cfg.augment if augment is None else augment, **data_cfg.options)
    except DatasetNotFoundError as exc:
        if root.is_absolute():
            raise
        raise DatasetNotFoundError(f"{exc} (data.root={data_cfg.root!r} is relative, so it was looked for under the "
                                   f"current folder {Path.cwd()}; give data.root=/the/absolute/path)") from None
