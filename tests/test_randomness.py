"""Random draws inside training steps (:mod:`sakd.randomness`): a function of the step's place in
the run, so a run with a random loss term (BKD's channel mask) interrupted mid-epoch or at an
epoch's end, with 0 or 2 loader workers, resumes to the uninterrupted run's weights bit for bit."""

import os
from pathlib import Path

import pytest
import torch

from conftest import fast_config
from sakd.errors import Preempted
from sakd.randomness import step_draws, step_generator
from sakd.training import Trainer


def test_step_generators_follow_the_steps_place_and_leave_the_global_generator_alone():
    assert step_generator() is None  # outside a step: torch's global generator
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with step_draws(1, 2, 3, 0, 0):
        g = step_generator("cpu")
        assert step_generator("cpu") is g  # one stream per micro-batch
        a = torch.rand(5, generator=g), torch.rand(5, generator=g)
    with step_draws(1, 2, 3, 0, 0):
        b = torch.rand(5, generator=step_generator()), torch.rand(5, generator=step_generator())
    with step_draws(1, 2, 3, 1, 0):
        other_micro = torch.rand(5, generator=step_generator())
    with step_draws(1, 2, 3, 0, 1):
        other_rank = torch.rand(5, generator=step_generator())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], other_micro) and not torch.equal(a[0], other_rank)
    assert torch.equal(torch.get_rng_state(), before)
    assert step_generator() is None


def bkd_config(root, teacher_ckpt, workers):
    return fast_config(root, f"distill.teacher.weights={teacher_ckpt}", "distill.gamma=1",
                       "distill.terms=[{name: bkd, weight: 1.0}]", f"data.num_workers={workers}",
                       "data.train_subset=192", "optim.epochs=2", "run.name=run")


def final_weights(trainer):
    return [
        t.clone() for t in [*trainer.parts.model.state_dict().values(), *trainer.parts.objective.state_dict().values()]
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, teacher_ckpt):
    runs = {}
    for workers in (0, 2):
        trainer = Trainer(bkd_config(tmp_path_factory.mktemp(f"full{workers}"), teacher_ckpt, workers))
        trainer.fit()
        runs[workers] = final_weights(trainer), [r["train/loss"] for r in trainer.history]
    return runs


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop_after", [1, 3], ids=["mid-epoch", "epoch-end"])  # 3 steps an epoch
def test_a_run_with_a_random_term_resumes_to_the_same_weights(tmp_path, teacher_ckpt, uninterrupted, workers,
                                                              stop_after):
    trainer = Trainer(bkd_config(tmp_path, teacher_ckpt, workers))
    assert trainer.parts.train_loader.batch_sampler.steps == 3

    def on_step(epoch, step):  # a SIGTERM during the step: it finishes, last.pt is written, the run stops
        if (epoch, step) == (0, stop_after - 1):
            trainer.keeper.signals.request("SIGTERM")

    trainer.on_step = on_step
    with pytest.raises(Preempted, match="end of the epoch" if stop_after == 3 else "preempted"):
        trainer.fit()
    assert trainer.epoch == (1 if stop_after == 3 else 0)
    resumed = Trainer.from_checkpoint(trainer.run_dir)
    resumed.fit()
    weights, losses = uninterrupted[workers]
    assert [r["train/loss"] for r in resumed.history] == losses
    assert all(torch.equal(a, b) for a, b in zip(final_weights(resumed), weights, strict=True))


DRAWS = '''
import os

import torch

from sakd.distill.terms import LOSSES, LossTerm
from sakd.randomness import step_generator


@LOSSES.register("draw_recorder")
class DrawRecorder(LossTerm):
    """noise from torch's global generator (source: global) or the step's (source: step), each draw recorded"""

    def __init__(self, source="global", record=""):
        super().__init__()
        self.source, self.record = source, record

    def forward(self, out):
        logits = out.student_logits
        generator = step_generator(logits.device) if self.source == "step" else None
        noise = torch.rand(logits.shape, device=logits.device, generator=generator)
        if self.record:
            with open(f"{self.record}.{os.environ.get('RANK', '0')}", "a") as f:
                f.write(f"{noise.flatten()[0].item()!r}\\n")
        return (logits * noise).mean()
'''


def test_what_the_global_generator_would_break_as_contributing_says(tmp_path, monkeypatch):
    """CONTRIBUTING's sentence: a term drawing from torch's global generator resumes exactly too
    (the checkpoint keeps its state), but under torchrun every process draws the same numbers (the
    step's generator draws apart on each rank: the first test of this file)."""
    import subprocess
    import sys

    from test_distributed import COMMON, _free_port

    (tmp_path / "sakd_draws.py").write_text(DRAWS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import sakd_draws  # noqa: F401  (registers the term here too)

    term = "distill.terms=[{name: draw_recorder, weight: 1.0, source: global}]"
    runs = []
    for stop in (False, True):
        trainer = Trainer(fast_config(tmp_path / f"resume{stop}", term, "data.train_subset=192", "optim.epochs=2",
                                      "run.loggers=[]"))
        if stop:
            trainer.on_step = lambda e, s, t=trainer: (e, s) == (0, 0) and t.keeper.signals.request("SIGTERM")
            with pytest.raises(Preempted):
                trainer.fit()
            trainer = Trainer.from_checkpoint(trainer.run_dir)
        trainer.fit()
        runs.append(final_weights(trainer))
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))  # resumed exactly

    contributing = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    assert "torch's global generator would resume exactly too" in " ".join(contributing.split())
    # two processes under torchrun (the step's generator draws apart on each rank: the first test above)
    record = tmp_path / "draws"
    args = [
        "--config",
        "quickstart/snn",
        *COMMON,
        "optim.epochs=1",
        "data.options.train_size=256",
        f"run.output_dir={tmp_path / 'ddp'}",
        "run.name=global",
        "run.loggers=[]",
        "distill.beta=0",
        "distill.gamma=0",
        f"distill.terms=[{{name: draw_recorder, weight: 1.0, source: global, record: {record}}}]",
        "--plugin",
        "sakd_draws",
    ]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={_free_port()}", "-m", "sakd", "train", *args],
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rank0, rank1 = (Path(f"{record}.{r}").read_text().split() for r in (0, 1))
    assert len(rank0) == len(rank1) == 4  # 256 images, 32 per process and step
    assert rank0 == rank1  # every process drew the same numbers
