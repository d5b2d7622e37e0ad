"""torchrun + DistributedDataParallel on the CPU (gloo): 2 processes against 1, and resume."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sakd.models.checkpoint import load_checkpoint

COMMON = [
    "data.name=synthetic", "data.num_workers=0", "data.batch_size=64", "model.name=resnet_tiny",
    "model.timesteps=2", "optim.lr=0.05", "run.device=cpu", "run.log_interval=2",
    "distill.alpha=1", "distill.beta=1", "distill.gamma=1", "distill.tau=4",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(nproc: int, args: list[str], **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={_free_port()}", "-m", "sakd", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _run(nproc: int, args: list[str]) -> str:
    proc = _launch(nproc, args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _args(out: Path, teacher_ckpt: str) -> list[str]:  # 16 steps an epoch
    return ["--config", "quickstart/sakd", *COMMON, f"distill.teacher.weights={teacher_ckpt}",
            "optim.epochs=2", "data.options.train_size=1024", f"run.output_dir={out}"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, teacher_ckpt) -> Path:
    """One uninterrupted two-process run: the reference of both tests. It runs run.memory=min, whose
    plan each process measures and both make from the largest of each measurement (exact: the
    runs it is compared with keep everything)."""
    out = tmp_path_factory.mktemp("ddp")
    said = _run(2, _args(out, teacher_ckpt) + ["run.name=ddp", "run.memory=min"])
    assert said.count("run.memory=min: ") == 1, said  # the plan, said by rank 0
    return out / "ddp"


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, teacher_ckpt, ddp_run):
    _run(1, _args(tmp_path, teacher_ckpt) + ["run.name=single", "optim.accumulate_steps=2"])  # micro-batch 32 in both
    ddp, single = _records(ddp_run), _records(tmp_path / "single")
    for a, b in zip(ddp, single, strict=True):
        for key in ("train/loss", "train/ce", "train/feature_kd", "train/logit_kd"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
        assert abs(a["train/top1"] - b["train/top1"]) <= 0.5  # one sample in 1024 at most
    # both learn (two epochs of 1024 images are too few to put test accuracy reliably above chance:
    # the distributed run is checked against the single one, learning itself in test_training.py)
    for run in (ddp, single):
        assert run[1]["train/loss"] < run[0]["train/loss"]
    # only rank 0 wrote: one run folder each, one line per epoch
    assert [p.name for p in ddp_run.parent.iterdir()] == ["ddp"] and [p.name for p in tmp_path.iterdir()] == ["single"]
    assert [r["epoch"] for r in ddp] == [1, 2]
    # gradients were synchronised: the transforms (owned by the objective) trained identically
    a, b = load_checkpoint(ddp_run / "last.pt"), load_checkpoint(tmp_path / "single" / "last.pt")
    for k, v in a["objective"].items():
        if v.is_floating_point() and "running" not in k:
            assert torch.allclose(v, b["objective"][k], atol=1e-4), k


def test_two_process_run_resumes_after_being_killed(tmp_path, teacher_ckpt, ddp_run):
    proc = _launch(2, _args(tmp_path, teacher_ckpt) + ["run.name=cut"], start_new_session=True)
    last = tmp_path / "cut" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # torchrun and both ranks, early in epoch 2
    out, _ = proc.communicate(timeout=120)
    ckpt = load_checkpoint(last)
    assert ckpt["epoch"] < 2, out
    # both ranks stopped at the same point (after a step of epoch 2, or at epoch 1's end if the
    # signal came while it was being saved); rank 0 wrote the one checkpoint that says so
    stops = re.findall(r"preempted by .+? at (step \d+/16|the end of the epoch)", out)
    expected = f"step {ckpt['step']}/16" if ckpt["step"] else "the end of the epoch"
    assert stops == [expected, expected], out
    assert sorted(p.name for p in (tmp_path / "cut").iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]

    _run(2, ["--resume", str(tmp_path / "cut")])
    full, cut = _records(ddp_run), _records(tmp_path / "cut")
    assert [r["epoch"] for r in cut] == [1, 2]
    for a, b in zip(full, cut, strict=True):
        for key in ("train/loss", "train/top1", "test/top1", "test/loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
