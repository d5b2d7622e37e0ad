"""Exact resume from any step: loader workers with real augmentation, kill -9 mid-epoch, SIGTERM.

Each run is a real `sakd train` process (2 data-loader workers, digits with random-crop
augmentation, step checkpoints every 5 steps); an interrupted-and-resumed run must end with the
metrics and weights of an uninterrupted one, bit for bit.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from sakd.data import build_dataset
from sakd.data.seeded import SeededSamples
from sakd.training.checkpoint import load_checkpoint
from sakd.training.distributed import DistContext, GlobalBatchSampler

RUN = ["--config", "quickstart/snn", "model.timesteps=2", "data.num_workers=2", "optim.epochs=2",
       "run.checkpoint_every=5", "run.device=cpu", "run.progress=false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(out: Path, name: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sakd", "train", *RUN, f"run.output_dir={out}", f"run.name={name}", *extra]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _resume(run_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sakd", "train", "--resume", str(run_dir)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _stop_mid_epoch(proc: subprocess.Popen, last: Path) -> dict:
    """Freeze the run as soon as its last.pt is a mid-epoch checkpoint; return that checkpoint."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            os.killpg(proc.pid, signal.SIGSTOP)
            ckpt = load_checkpoint(last)
            if ckpt["step"] > 0:
                return ckpt
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    _kill(proc)
    raise AssertionError(f"no mid-epoch checkpoint appeared: {proc.communicate()}")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _numbers(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]


def _assert_same_run(a: Path, b: Path) -> None:
    assert _numbers(a) == _numbers(b)
    wa, wb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    for part in ("model", "objective"):
        assert wa[part].keys() == wb[part].keys()
        for k, v in wa[part].items():
            assert torch.equal(v, wb[part][k]), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _start(out, "full")
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
    proc = _start(tmp_path, "killed")
    ckpt = _stop_mid_epoch(proc, tmp_path / "killed" / "last.pt")
    _kill(proc)
    proc.communicate(timeout=60)
    assert ckpt["step"] % 5 == 0 and ckpt["partial"]["n"] == 32 * ckpt["step"]
    _resume(tmp_path / "killed")
    _assert_same_run(tmp_path / "killed", uninterrupted)


def test_sigterm_finishes_the_step_checkpoints_and_exits_75_then_resume_equals_the_uninterrupted_run(
        tmp_path, uninterrupted):
    proc = _start(tmp_path, "term")
    before = _stop_mid_epoch(proc, tmp_path / "term" / "last.pt")
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, loader workers included, as SLURM does
    os.killpg(proc.pid, signal.SIGCONT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        _kill(proc)
    assert proc.returncode == 75, err
    message = err.strip().splitlines()[-1]
    assert message.startswith("sakd train: error: preempted by SIGTERM at step ")
    assert f"resume with: sakd train --resume {tmp_path / 'term'}" in message
    ckpt = load_checkpoint(tmp_path / "term" / "last.pt")
    assert 0 < ckpt["step"] and (ckpt["epoch"], ckpt["step"]) > (before["epoch"], before["step"])
    assert f"step {ckpt['step']}/" in message
    assert not list((tmp_path / "term").glob(".*.tmp"))  # no half-written file left
    _resume(tmp_path / "term")
    _assert_same_run(tmp_path / "term", uninterrupted)
