"""The architecture study of §3.3: a one-shot spiking supernet distilled from a fixed teacher,
and the search over its subnets."""

from sakd.nas.space import PAPER_SPACE, Arch, SearchSpace
from sakd.nas.supernet import SuperResNet

__all__ = ["PAPER_SPACE", "Arch", "SearchSpace", "SuperResNet"]
