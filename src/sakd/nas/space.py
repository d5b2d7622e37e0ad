"""Search spaces of ResNets of BasicBlocks: choices of channels and depth per stage (paper Table 1).

A space is data: ``{"stem_width": 64, "stages": [{"channels": [...], "depths": [...]}, ...],
"reference": {"channels": [...], "depths": [...]}}``. ``reference`` is the teacher's own
architecture (the red line of the paper's Figure 3), if it lies in the space.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sakd.errors import ConfigError

# Table 1: four stages of BasicBlocks, 3 x 4 x 3 x 4 x 3 x 7 x 3 x 4 = 36,288 subnets; the teacher
# is ResNet-34 (64/128/256/512 channels, 3/4/6/3 blocks).
PAPER_SPACE = {
    "stem_width": 64,
    "stages": [
        {"channels": [48, 64, 80], "depths": [2, 3, 4, 5]},
        {"channels": [96, 128, 160], "depths": [2, 3, 4, 5]},
        {"channels": [192, 256, 320], "depths": [2, 3, 4, 5, 6, 7, 8]},
        {"channels": [384, 512, 640], "depths": [2, 3, 4, 5]},
    ],
    "reference": {"channels": [64, 128, 256, 512], "depths": [3, 4, 6, 3]},
}


@dataclass(frozen=True)
class Arch:
    """One subnet: output channels and number of blocks of every stage."""

    channels: tuple[int, ...]
    depths: tuple[int, ...]

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        return cls(tuple(int(c) for c in d["channels"]), tuple(int(k) for k in d["depths"]))

    def to_dict(self) -> dict:
        return {"channels": list(self.channels), "depths": list(self.depths)}

    def __str__(self) -> str:
        return f"channels {list(self.channels)} depths {list(self.depths)}"


class SearchSpace:
    def __init__(self, stages: list[dict], stem_width: int = 64, reference: dict | None = None):
        if not stages:
            raise ConfigError("a search space needs at least one stage")
        for i, st in enumerate(stages):
            if set(st) != {"channels", "depths"} or not st["channels"] or not st["depths"]:
                raise ConfigError(
                    f"search-space stage {i + 1} must give non-empty 'channels' and 'depths' lists, got {st}"
                )
            if min(st["depths"]) < 1 or min(st["channels"]) < 1:
                raise ConfigError(f"search-space stage {i + 1}: channels and depths must be positive")
        self.channels = [sorted(int(c) for c in st["channels"]) for st in stages]
        self.depths = [sorted(int(d) for d in st["depths"]) for st in stages]
        self.stem_width = int(stem_width)
        self.reference = Arch.from_dict(reference) if reference else None
        if self.reference is not None and not self.contains(self.reference):
            raise ConfigError(f"the reference architecture ({self.reference}) is not in the search space")

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        unknown = set(d) - {"stages", "stem_width", "reference"}
        if unknown:
            raise ConfigError(f"unknown search-space key(s) {sorted(unknown)}; known: stages, stem_width, reference")
        return cls(d["stages"], d.get("stem_width", 64), d.get("reference"))

    def to_dict(self) -> dict:
        out = {"stem_width": self.stem_width,
               "stages": [{"channels": c, "depths": d} for c, d in zip(self.channels, self.depths)]}
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        return out

    @property
    def num_stages(self) -> int:
        return len(self.channels)

    @property
    def size(self) -> int:
        return math.prod(len(c) * len(d) for c, d in zip(self.channels, self.depths))

    def largest(self) -> Arch:
        return Arch(tuple(c[-1] for c in self.channels), tuple(d[-1] for d in self.depths))

    def smallest(self) -> Arch:
        return Arch(tuple(c[0] for c in self.channels), tuple(d[0] for d in self.depths))

    def sample(self, rng: random.Random) -> Arch:
        """A subnet drawn uniformly from the space."""
        return Arch(tuple(rng.choice(c) for c in self.channels), tuple(rng.choice(d) for d in self.depths))

    def contains(self, arch: Arch) -> bool:
        return (len(arch.channels) == len(arch.depths) == self.num_stages
                and all(c in cs for c, cs in zip(arch.channels, self.channels))
                and all(d in ds for d, ds in zip(arch.depths, self.depths)))

    def check(self, arch: Arch) -> Arch:
        if not self.contains(arch):
            raise ConfigError(f"subnet {arch} is not in the search space {self.to_dict()['stages']}")
        return arch
