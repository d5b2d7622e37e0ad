"""Exact resume from any step: loader workers with real augmentation, kill -9 mid-epoch, SIGTERM.

Each run is a real `sakd train` process (2 data-loader workers, digits with random-crop
augmentation, step checkpoints every 5 steps); an interrupted-and-resumed run must end with the
metrics and weights of an uninterrupted one, bit for bit. The process helpers are the ones of
``benchmarks/preemption.py``, which measures the same thing at a larger scale.
"""

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from sakd.data import build_dataset
from sakd.data.seeded import SeededSamples
from sakd.models.checkpoint import load_checkpoint
from sakd.training.distributed import DistContext, GlobalBatchSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import preemption  # noqa: E402

RUN = preemption.run_args(epochs=2, timesteps=2) + ["data.train_subset=640"]  # 20 steps an epoch


def _assert_same_run(a: Path, b: Path) -> None:
    assert preemption.epoch_numbers(a) == preemption.epoch_numbers(b)
    assert preemption.same_weights(a, b)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = preemption.start(RUN, out, "full")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out / "full"


def test_augmentation_depends_on_seed_epoch_and_sample_not_on_workers():
    data = build_dataset("digits", root="data", augment=True)
    batches = {}
    for workers in (0, 2):
        sampler = GlobalBatchSampler(len(data.train), 64, seed=3, ctx=DistContext())
        sampler.set_epoch(1)
        loader = DataLoader(SeededSamples(data.train, 3), batch_sampler=sampler, num_workers=workers)
        batches[workers] = [x for x, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2], strict=True))
    sampler.set_epoch(1, start_step=4)  # a mid-epoch start replays the same later batches
    assert torch.equal(next(iter(DataLoader(SeededSamples(data.train, 3), batch_sampler=sampler)))[0], batches[0][4])
    plain = torch.stack([data.train[i][0] for i in range(64)])
    shifted = torch.stack([SeededSamples(data.train, 3)[(1, i)][0] for i in range(64)])
    assert not torch.equal(plain, shifted)  # the augmentation is real: crops move the digits


def test_kill_9_mid_epoch_with_workers_then_resume_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    proc = preemption.start(RUN, tmp_path, "killed")
    ckpt = preemption.freeze_mid_epoch(proc, tmp_path / "killed" / "last.pt")
    preemption.kill(proc)
    proc.communicate(timeout=60)
    assert ckpt["step"] % 5 == 0 and ckpt["partial"]["n"] == 32 * ckpt["step"]
    preemption.resume(tmp_path / "killed")
    _assert_same_run(tmp_path / "killed", uninterrupted)


def test_sigterm_finishes_the_step_checkpoints_and_exits_75_then_resume_equals_the_uninterrupted_run(
        tmp_path, uninterrupted):
    proc = preemption.start(RUN, tmp_path, "term")
    saved, exited, message = preemption.sigterm_mid_epoch(proc, tmp_path / "term" / "last.pt")
    assert proc.returncode == 75, message
    assert message.startswith("sakd train: error: preempted by SIGTERM at step ")
    assert f"resume with: sakd train --resume {tmp_path / 'term'}" in message
    ckpt = load_checkpoint(tmp_path / "term" / "last.pt")
    assert ckpt["step"] > 0 and f"step {ckpt['step']}/" in message
    assert not list((tmp_path / "term").glob(".*.tmp"))  # no half-written file left
    preemption.resume(tmp_path / "term")
    _assert_same_run(tmp_path / "term", uninterrupted)
