"""Per-epoch metrics: a JSONL file (one object per epoch), mirrored to the run's loggers (TensorBoard ...)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sakd import runs
from sakd.outputs import append_text, write_bytes
from sakd.training.loggers import LOGGERS


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-k logits, for each k (on the device)."""
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(target[:, None])
    return [hit[:, : min(k, kmax)].any(dim=1).sum() for k in ks]


class MetricsLog:
    """Append epoch records to ``metrics.jsonl`` and send them to each of ``run.loggers``."""

    def __init__(
        self, run_dir: Path, history: list[dict], loggers: list[str] = ("tensorboard",), config: dict | None = None
    ):
        self.path = Path(run_dir) / runs.METRICS
        # rewrite from the checkpoint's history, so a resumed run has no line of a lost epoch
        write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in history).encode("utf-8"), "the metrics")
        self.loggers = []
        try:
            for name in loggers:
                self.loggers.append(LOGGERS.get(name)(Path(run_dir), config or {}, len(history)))
        except BaseException:
            self.close()
            raise

    def log(self, record: dict) -> None:
        append_text(self.path, json.dumps(record) + "\n", "the metrics")
        for logger in self.loggers:
            logger.log(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
        self.loggers = []
