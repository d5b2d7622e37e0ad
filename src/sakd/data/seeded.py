"""Training samples whose random augmentation depends on (seed, epoch, sample) alone.

A data loader's workers each own a random generator, seeded by the loader's base seed and the
worker's number; after a resume, or with another ``num_workers``, or split over more processes,
a sample lands on another worker at another point of its stream and gets another random crop.
:class:`SeededSamples` instead draws each sample's augmentation from a generator seeded by
``(seed, epoch, index)`` (torch's, Python's and NumPy's, restored afterwards), so a sample's
augmentation is the same whichever process or worker loads it and whenever.

Its keys are ``(epoch, index)`` pairs: :class:`~sakd.training.distributed.GlobalBatchSampler`
yields them, so the epoch travels with every index to persistent workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import random

import numpy as np
import torch
from torch.utils.data import Dataset


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixed from the three numbers (no two triples share a stream in practice)."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch's CPU generator, ``random`` and NumPy's global generator; restore them after."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed & 0xFFFF_FFFF)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


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
