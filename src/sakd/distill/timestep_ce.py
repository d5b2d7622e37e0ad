"""Cross-entropy at every timestep: ``(1/T) Σ_t CE(z_t, y)``, where SAKD's ``ce`` reads the
mean over time ``CE((1/T) Σ_t z_t, y)``.

The classification term of the full-range-timestep methods: Yu et al. (2025, ICML), "Efficient
logit-based knowledge distillation of deep spiking neural networks for full-range timestep
deployment" (their TWCE; also TET's CE without its MSE, Deng et al. 2022), which SeAl-KD (Sun et
al. 2026) and MEOM (ICLR 2026) keep. Every timestep's own logits must classify, so a prefix of
the timesteps does too (``sakd eval --timesteps``). Label smoothing and soft labels (mixup) as
``ce``. Per timestep, so it runs under ``run.bptt=sltt`` as well.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sakd.distill.terms import LOSSES, LossTerm, TermInputs


@LOSSES.register("timestep_ce")
class TimestepCrossEntropy(LossTerm):
    """Cross-entropy of every timestep's logits, averaged over T (Yu et al. 2025's TWCE)"""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        z = inputs.timestep_logits()  # [T, B, K]
        y = inputs.target.unsqueeze(0).expand(z.shape[0], *inputs.target.shape)
        return F.cross_entropy(z.flatten(0, 1), y.flatten(0, 1), label_smoothing=self.label_smoothing)
