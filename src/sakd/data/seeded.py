"""Training samples whose random augmentation depends on (seed, epoch, sample) alone.

A data loader's workers each own a random generator, seeded by the loader's base seed and the
worker's number; after a resume, or with another ``num_workers``, or split over more processes,
a sample lands on another worker at another point of its stream and gets another random crop.
:class:`SeededSamples` instead draws each sample's augmentation from generators seeded by
``(seed, epoch, index)`` (torch's CPU generator, which torchvision's transforms use, and Python's
``random``; both restored afterwards), so a sample's augmentation is the same whichever process or
worker loads it and whenever. A custom data set that draws from NumPy's global generator should
draw from torch's instead (re-seeding NumPy's legacy generator costs ~70 us a sample).

Its keys are ``(epoch, index)`` pairs: :class:`~sakd.training.distributed.GlobalBatchSampler`
yields them, so the epoch travels with every index to persistent workers.
"""

from __future__ import annotations

import contextlib
import random

import torch
from torch.utils.data import Dataset

from sakd.randomness import mixed_seed


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixed from the three numbers (no two triples share a stream in practice)."""
    return mixed_seed(seed, epoch, index)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch's CPU generator and ``random`` (~2 and ~15 us, not torch.manual_seed's ~100 us
    of seeding every accelerator backend); restore both afterwards."""
    generator, py = torch.default_generator, random.getstate()
    state = generator.get_state()
    generator.manual_seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)
        random.setstate(py)


class SeededSamples(Dataset):
    """``dataset[index]`` under :func:`seeded` ``(sample_seed(seed, epoch, index))``."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with seeded(sample_seed(self.seed, epoch, index)):
            return self.dataset[index]
