"""Per-epoch metrics: a JSONL file (one object per epoch) and TensorBoard scalars."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from sakd import runs


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-k logits, for each k (on the device)."""
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(target[:, None])
    return [hit[:, : min(k, kmax)].any(dim=1).sum() for k in ks]


class MetricsLog:
    """Append epoch records to ``metrics.jsonl`` and mirror the numbers to TensorBoard."""

    def __init__(self, run_dir: Path, history: list[dict], tensorboard: bool = True):
        self.path = Path(run_dir) / runs.METRICS
        # rewrite from the checkpoint's history, so a resumed run has no line of a lost epoch
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
        tmp.replace(self.path)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / runs.TENSORBOARD), purge_step=len(history) + 1)

    def log(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = record["epoch"]
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
