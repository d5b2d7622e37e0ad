"""Stopping and resuming a real training process: time from SIGTERM to exit, and exactness.

Three `sakd train` processes of one config (digits, the quickstart's SNN, 2 data-loader workers
with random-crop augmentation, a checkpoint every 5 steps):

* ``full``: uninterrupted;
* ``sigterm``: SIGTERM to the whole process group (loader workers too, as SLURM sends it) in the
  middle of an epoch; the seconds until the process has exited are measured; then ``--resume``;
* ``kill``: SIGKILL in the middle of an epoch (no warning at all); then ``--resume`` from the last
  step checkpoint.

The resumed runs' epoch metrics (timings aside) and final weights are compared with the
uninterrupted run's, exactly.

    python benchmarks/preemption.py                 # ~2 min on 2 CPU cores
    python benchmarks/preemption.py --epochs 2 --timesteps 2

Prints a table and writes ``benchmarks/results/preemption-cpu.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sakd.models.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_args(epochs: int, timesteps: int, workers: int = 2, every: int = 5) -> list[str]:
    return ["--config", "quickstart/snn", f"model.timesteps={timesteps}", f"data.num_workers={workers}",
            f"optim.epochs={epochs}", f"run.checkpoint_every={every}", "run.device=cpu", "run.progress=false"]


def start(args: list[str], out: Path, name: str) -> subprocess.Popen:
    """A `sakd train` process in its own process group (so a signal can reach its workers too)."""
    cmd = [sys.executable, "-m", "sakd", "train", *args, f"run.output_dir={out}", f"run.name={name}"]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def resume(run_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sakd", "train", "--resume", str(run_dir)], env=ENV,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"resume of {run_dir} failed:\n{done.stderr}")


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def freeze_mid_epoch(proc: subprocess.Popen, last: Path, timeout: float = 240) -> dict:
    """Stop (SIGSTOP) the run as soon as its last.pt is a mid-epoch checkpoint; return that
    checkpoint. The caller continues it (SIGCONT) or kills it."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            os.killpg(proc.pid, signal.SIGSTOP)
            ckpt = load_checkpoint(last)
            if ckpt["step"] > 0:
                return ckpt
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    kill(proc)
    raise RuntimeError(f"no mid-epoch checkpoint appeared in {last.parent}: {proc.communicate()}")


def epoch_numbers(run_dir: Path) -> list[dict]:
    """The run's epoch records without their timings."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    return all(wa[part].keys() == wb[part].keys() and all(torch.equal(v, wb[part][k]) for k, v in wa[part].items())
               for part in ("model", "objective"))


def sigterm_mid_epoch(proc: subprocess.Popen, last: Path) -> tuple[float, float, str]:
    """SIGTERM the frozen run's whole group and let it go on. Returns the seconds until its
    checkpoint was on disk and until the process had exited, and its last error line."""
    freeze_mid_epoch(proc, last)
    sent = time.time()
    os.killpg(proc.pid, signal.SIGTERM)
    os.killpg(proc.pid, signal.SIGCONT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        kill(proc)
    exited = time.time()
    return last.stat().st_mtime - sent, exited - sent, (err.strip().splitlines() or [""])[-1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "preemption-cpu.json"))
    args = parser.parse_args(argv)
    common = run_args(args.epochs, args.timesteps)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        full = start(common, out, "full")
        _, err = full.communicate(timeout=1200)
        if full.returncode:
            raise RuntimeError(err)
        full_s = time.perf_counter() - t0

        proc = start(common, out, "sigterm")
        saved_s, stop_s, message = sigterm_mid_epoch(proc, out / "sigterm" / "last.pt")
        stopped = load_checkpoint(out / "sigterm" / "last.pt")
        status = proc.returncode
        resume(out / "sigterm")

        proc = start(common, out, "kill")
        killed = freeze_mid_epoch(proc, out / "kill" / "last.pt")
        kill(proc)
        proc.communicate(timeout=60)
        resume(out / "kill")

        reference = epoch_numbers(out / "full")
        result = {
            "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor(),
                        "threads": torch.get_num_threads()},
            "config": common, "uninterrupted_s": full_s,
            "uninterrupted": reference,
            "sigterm": {"seconds_to_checkpoint": saved_s, "seconds_to_exit": stop_s, "exit_status": status,
                        "message": message,
                        "stopped_at": {"epoch": stopped["epoch"] + 1, "step": stopped["step"]},
                        "same_metrics": epoch_numbers(out / "sigterm") == reference,
                        "same_weights": same_weights(out / "sigterm", out / "full"),
                        "resumed": epoch_numbers(out / "sigterm")},
            "kill": {"resumed_from": {"epoch": killed["epoch"] + 1, "step": killed["step"]},
                     "same_metrics": epoch_numbers(out / "kill") == reference,
                     "same_weights": same_weights(out / "kill", out / "full")},
        }
    print(f"uninterrupted: {args.epochs} epochs in {full_s:.1f} s; final test top-1 {reference[-1]['test/top1']:.2f}%, "
          f"train loss {reference[-1]['train/loss']:.6f}")
    s, k = result["sigterm"], result["kill"]
    print(f"SIGTERM in epoch {s['stopped_at']['epoch']}: checkpoint on disk {s['seconds_to_checkpoint']:.2f} s later, "
          f"process exited after {s['seconds_to_exit']:.2f} s with status {s['exit_status']} (stopped after step "
          f"{s['stopped_at']['step']}); resumed run: final test top-1 "
          f"{s['resumed'][-1]['test/top1']:.2f}%, train loss {s['resumed'][-1]['train/loss']:.6f}; "
          f"same metrics {s['same_metrics']}, same weights {s['same_weights']}")
    print(f"kill -9 in epoch {k['resumed_from']['epoch']}, resumed from step {k['resumed_from']['step']}: "
          f"same metrics {k['same_metrics']}, same weights {k['same_weights']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
