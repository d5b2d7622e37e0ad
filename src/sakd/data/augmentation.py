"""The spiking transformers' augmentation: RandAugment and random erasing per sample (a data set's
options), mixup per batch (``data.mixup``), through torchvision's transforms.

* ``randaugment: [N, M]`` (``data.options``): timm's ``rand-mM-nN`` on the image before it becomes
  floats, after the crop and flip, built from torchvision's transforms: N operations, each drawn
  at random and applied with probability 0.5 (timm's ``AugmentOp(prob=0.5)``), at magnitude M of
  10 (torchvision's ``RandAugment`` with 11 magnitude bins: M = 9 is 9/10 of each operation's
  range, 27° of rotation). What stays timm's own: its ``mstd`` (Spikformer's and the Spike-driven
  Transformer's ``mstd0.4`` jitters M by a standard deviation of 0.4), its ``inc1`` operation
  variants and its list of operations (torchvision's has Identity, timm's Invert and SolarizeAdd).
  The policy's draws come from torch's generator, so :mod:`sakd.data.seeded` makes them a
  function of (seed, epoch, sample), as every other augmentation.
* ``random_erasing: p`` (``data.options``): ``RandomErasing(p)`` on the normalised tensor (timm's
  ``reprob``; torchvision erases with zeros, timm's default ``remode=const`` too).
* ``autoaugment: cifar10 | imagenet | svhn`` (``data.options``): torchvision's ``AutoAugment`` with
  that learned policy (Cubuk et al. 2019) on the image after the crop and flip, what it uncovers
  filled grey (128); ``cutout: n``: a square of side ``n`` pixels set to 0 on the normalised
  tensor (DeVries & Taylor 2017: its centre anywhere on the image, the square clipped at the
  border). QCFS's CIFAR recipe uses both, as much of the conversion literature does; its
  ``CIFAR10Policy`` (DeepVoltaire's implementation of the same policy, grey fill too) rotates one
  way only and gives one sub-policy another probability, so the draws are torchvision's, not its.
* ``data.mixup: α`` (> 0): each training micro-batch becomes ``λ x + (1 - λ) x[perm]`` with one
  ``λ ~ Beta(α, α)`` per micro-batch (timm's ``mode=batch``) and its labels the same mixture of
  one-hot vectors; ``data.cutmix: α``: CutMix (a box of the other images pasted in, λ its
  complement's area), at even odds with mixup where both are on (timm's ``switch_prob`` 0.5);
  ``data.mixup_off_epoch``: the first epoch without either. The teacher sees the mixed
  images, the cross-entropy reads the mixed labels (``distill.label_smoothing`` smooths them, as
  timm's mixup does); the draws are the step's (:mod:`sakd.randomness`), so a resumed run mixes
  what the uninterrupted one did. Training accuracy counts the larger share's label.
"""

from __future__ import annotations

import random

import torch
from torch.nn import functional as F
from torchvision.transforms import v2

from sakd.errors import ConfigError
from sakd.randomness import step_generator


def sample_ops(randaugment: list[int] | None, label: str) -> list:
    """The per-sample policy that runs on the image (uint8), after the crop and flip."""
    if randaugment is None:
        return []
    if not (isinstance(randaugment, (list, tuple)) and len(randaugment) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in randaugment)
            and randaugment[1] <= 10):
        raise ConfigError(f"{label}: randaugment must be [num_ops, magnitude] (whole numbers, magnitude 0..10 as "
                          f"timm's), got {randaugment!r}")
    ops, magnitude = randaugment
    return [v2.RandomApply([v2.RandAugment(num_ops=1, magnitude=magnitude, num_magnitude_bins=11)], p=0.5)
            for _ in range(ops)]


AUTOAUGMENT = {"cifar10": v2.AutoAugmentPolicy.CIFAR10, "imagenet": v2.AutoAugmentPolicy.IMAGENET,
               "svhn": v2.AutoAugmentPolicy.SVHN}


def policy_ops(autoaugment: str | None, label: str) -> list:
    """AutoAugment's learned policy on the image (uint8), after the crop and flip."""
    if autoaugment is None:
        return []
    if autoaugment not in AUTOAUGMENT:
        raise ConfigError(f"{label}: autoaugment must be one of {sorted(AUTOAUGMENT)} (a learned policy), "
                          f"got {autoaugment!r}")
    return [v2.AutoAugment(AUTOAUGMENT[autoaugment], fill=128)]


class Cutout:
    """A ``length`` x ``length`` square of zeros on an image tensor ``[..., H, W]``, centred on a
    pixel drawn uniformly (torch's generator), clipped at the border: DeVries & Taylor's Cutout
    with one hole (QCFS's ``Cutout(n_holes=1, length=16)``)."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        out = image.clone()
        out[..., max(cy - half, 0):min(cy + half, h), max(cx - half, 0):min(cx + half, w)] = 0
        return out

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


def tensor_ops(random_erasing: float, label: str, cutout: int = 0) -> list:
    """What runs on the normalised tensor."""
    if (
        isinstance(random_erasing, bool)
        or not isinstance(random_erasing, (int, float))
        or not 0.0 <= random_erasing <= 1.0
    ):
        raise ConfigError(f"{label}: random_erasing is a probability in [0, 1], got {random_erasing!r}")
    if isinstance(cutout, bool) or not isinstance(cutout, int) or cutout < 0:
        raise ConfigError(f"{label}: cutout is a square's side in pixels (a whole number >= 0), got {cutout!r}")
    return ([v2.RandomErasing(random_erasing)] if random_erasing else []) + ([Cutout(cutout)] if cutout else [])


def mix(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float, cutmix: float = 0.0
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (``mixup`` > 0: ``λ x + (1 - λ) x[perm]``) or CutMix (``cutmix`` > 0: a box of
    ``x[perm]`` pasted into ``x``, λ the area kept), one of the two at even odds where both are on
    (timm's ``switch_prob`` 0.5), with ``λ ~ Beta(α, α)`` and the labels ``λ onehot(y) + (1 - λ)
    onehot(y[perm])``; every draw from the open training step's generator. Images ``[B, C, H, W]``
    or frames ``[T, B, C, H, W]``."""
    generator = step_generator("cpu")
    draws = random.Random(int(torch.randint(2**62, (), generator=generator)))
    use_cutmix = cutmix > 0 and (mixup <= 0 or draws.random() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = draws.betavariate(alpha, alpha)
    perm = torch.randperm(y.shape[0], generator=generator).to(y.device)
    dim = 1 if x.dim() == 5 else 0
    other = x.index_select(dim, perm)
    if use_cutmix:  # a box of side sqrt(1 - λ) of the image's, centred anywhere, clipped to the image
        h, w = x.shape[-2:]
        ch, cw = round(h * (1 - lam) ** 0.5), round(w * (1 - lam) ** 0.5)
        cy, cx = draws.randrange(h), draws.randrange(w)
        top, bottom, left, right = (
            max(cy - ch // 2, 0),
            min(cy + ch - ch // 2, h),
            max(cx - cw // 2, 0),
            min(cx + cw - cw // 2, w),
        )
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = other[..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (h * w)  # the area kept, after clipping
    else:
        mixed = lam * x + (1.0 - lam) * other
    onehot = F.one_hot(y, num_classes).to(x.dtype if x.is_floating_point() else torch.float32)
    return mixed, lam * onehot + (1.0 - lam) * onehot[perm]
