"""The running sums of one training epoch: what its record reports and what a mid-epoch
checkpoint keeps.

Each process sums its micro-batches' loss and loss terms (weighted by their samples), its correct
top-1 and its samples, and remembers the first step whose loss was not finite. :meth:`EpochMeter.summed`
adds them over processes with one all-reduce; that sum is both the partial epoch a checkpoint
keeps (a resumed run starts its meter from it, on rank 0) and what the epoch's record is made of.
"""

from __future__ import annotations

import time

import torch

from sakd.training.distributed import DistContext, all_reduce_min, all_reduce_sum
from sakd.training.metrics import topk_correct


class EpochMeter:
    """The sums of one epoch on this process, from ``partial`` (a checkpoint's, else none)."""

    def __init__(self, device: torch.device, partial: dict | None = None):
        partial = partial or {}
        self.device = device
        self.sums = {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in partial.get("sums", {}).items()}
        self.correct = torch.tensor(partial.get("correct", 0), dtype=torch.long, device=device)
        self.n = partial.get("n", 0)
        self.seconds_before = partial.get("seconds", 0.0)  # training time of the steps before a resume
        self.started = time.perf_counter()
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)  # first step with a non-finite loss

    def add(self, step: int, loss: torch.Tensor, terms: dict, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One micro-batch: its loss, terms and logits (no device sync: every sum stays a tensor)."""
        b = labels.shape[0]
        self.n += b
        loss = loss.detach()
        self.bad_step = torch.where((self.bad_step < 0) & ~torch.isfinite(loss), step, self.bad_step)
        for k, v in {"loss": loss, **terms}.items():
            self.sums[k] = self.sums.get(k, torch.zeros((), dtype=torch.float64, device=self.device)) + v.double() * b
        self.correct += topk_correct(logits.detach(), labels, ks=(1,))[0]

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def mean_loss(self) -> float:
        """This process's mean loss so far (the progress bar's)."""
        return self.sums["loss"].item() / self.n

    def first_bad_step(self, dist: DistContext) -> int | None:
        """The first step whose loss was not finite on any process (every process gets the same
        answer, one all-reduce); None if every loss was finite."""
        never = torch.iinfo(torch.long).max
        first = all_reduce_min(torch.where(self.bad_step >= 0, self.bad_step, never), dist)
        return None if first.item() == never else int(first.item())

    def summed(self, dist: DistContext) -> dict:
        """The sums over every process (one all-reduce): ``{sums, correct, n, seconds}``, what a
        checkpoint keeps of an unfinished epoch."""
        keys = sorted(self.sums)
        totals = all_reduce_sum(
            torch.stack(
                [self.sums[k] for k in keys]
                + [self.correct.double(), torch.tensor(float(self.n), dtype=torch.float64, device=self.device)]
            ),
            dist,
        ).tolist()
        return {"sums": dict(zip(keys, totals[:-2])), "correct": int(totals[-2]), "n": int(totals[-1]),
                "seconds": self.seconds}

    @staticmethod
    def record(summed: dict) -> tuple[dict, dict]:
        """The epoch record's training part and its timing, from :meth:`summed`."""
        n, seconds = float(summed["n"]), summed["seconds"]
        train = {f"train/{k}": v / n for k, v in summed["sums"].items()}
        train["train/top1"] = 100.0 * summed["correct"] / n
        return train, {"time/train_s": seconds, "time/train_samples_per_s": n / seconds}
