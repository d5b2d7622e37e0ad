"""``run.memory_budget``: the step's peak measured on the CPU (torch's profiler), a plan per block
(fast, lean, run again) that fits the budget by measurement, exact whatever it chooses, and a
budget that cannot be met refused with one line."""

import copy

import pytest
import torch

from conftest import fast_config
from sakd.distill import SAKDLoss
from sakd.errors import ConfigError
from sakd.models import create_model
from sakd.training import Trainer
from sakd.training.config import parse_size
from sakd.training.memory import MemoryBudget, StepPeaks, resident_bytes
from sakd.training.memory.budget import NOISE, BlockCost, estimate, held, plan
from test_memory import sakd_step_at

MiB = 2**20


def test_the_cpu_meter_sees_a_transient_in_its_segment_on_top_of_what_was_resident():
    x = torch.ones(MiB // 4)  # 1 MiB, alive before: only resident counts it
    with StepPeaks(torch.device("cpu"), resident=x.nbytes) as meter:
        y = x * 2  # 1 MiB, kept
        meter.mark()
        big = torch.empty(4 * MiB, dtype=torch.uint8)  # 4 MiB, freed within the segment
        del big
        meter.mark()
    assert y.nbytes == MiB
    first, second, third = meter.segments
    assert first == pytest.approx(2 * MiB, abs=64 * 1024)
    assert second == pytest.approx(6 * MiB, abs=64 * 1024)  # the transient on the two alive
    assert third == pytest.approx(2 * MiB, abs=64 * 1024) and meter.peak == second
    model = torch.nn.Linear(256, 256)
    model(torch.ones(1, 256)).sum().backward()
    opt = torch.optim.SGD(model.parameters(), momentum=0.9)
    opt.step()
    params = sum(p.numel() for p in model.parameters()) * 4
    assert resident_bytes(torch.device("cpu"), [model], opt) == 3 * params  # weights, gradients, momentum


def test_sizes_parse_as_a_devices_memory_is_counted():
    assert parse_size("16GiB") == parse_size("16G") == parse_size("16 gb") == 16 * 2**30
    assert parse_size("800MiB") == 800 * MiB and parse_size("1.5k") == 1536 and parse_size(4096) == 4096
    assert parse_size(None) is None
    for bad in ("16 pages", "-1G", "0", "0.5"):
        with pytest.raises(ConfigError, match="not a memory size"):
            parse_size(bad)


def test_the_plan_is_greedy_in_time_per_byte_and_its_estimate_adds_held_blocks_where_they_are_alive():
    costs = [BlockCost(lean=40, fast=100, seconds=1.0), BlockCost(lean=10, fast=30, seconds=1.0)]
    segments = [(None, 50), (("in", 0), 100), (("after", 0), 60), (("in", 1), 80), (("after", 1), 70),
                (("in", 1), 90), (("in", 0), 120)]
    assert estimate(["again", "again"], costs, segments) == 120
    # block 0 held lean: alive after its forward (60 + 40), through block 1 (80 + 40, 90 + 40, 70 + 40)
    assert estimate(["lean", "again"], costs, segments) == 130
    # held fast: its 100 alive through block 1 (90 + 100); its own segments add only what fast keeps
    # beyond lean (running it again made the lean 40): 100 + 60, 120 + 60
    assert estimate(["fast", "again"], costs, segments) == 190
    # the peak is block 0's run again, after block 1's backward: holding block 1 adds nothing to it
    assert plan(costs, segments, 120) == ["again", "fast"]
    assert plan(costs, segments, 10**6) == ["fast", "fast"]
    mid = plan(costs, segments, 150)  # block 1 lean (most time per byte), block 0 lean, block 1 fast
    assert mid == ["lean", "fast"] and estimate(mid, costs, segments) == 150


def test_a_plan_measured_above_its_budget_is_followed_by_one_that_holds_less_not_nothing():
    """run.memory=min's budget is the least step's peak, which every block run again is estimated
    at: a plan measured above it plans again holding fewer bytes (not none), and after TRIES such
    plans every block runs again."""
    costs = [BlockCost(lean=10, fast=30, seconds=1.0), BlockCost(lean=10, fast=30, seconds=2.0),
             BlockCost(lean=10, fast=30, seconds=3.0)]
    segments = [(None, 50), (("in", 0), 100), (("after", 0), 60), (("in", 1), 70), (("after", 1), 60),
                (("in", 2), 60), (("after", 2), 55), (("in", 2), 60), (("in", 1), 70), (("in", 0), 100)]
    assert plan(costs, segments, 100, cap=25) == ["again", "lean", "lean"]  # 20 bytes held: within the cap
    budget = MemoryBudget(None, torch.device("cpu"), lambda: 0, lambda line: None)
    budget.costs, budget.state = costs, "measure"
    budget._first(segments)
    first = list(budget.choices)
    assert budget.budget == budget.least == 100 and held(first, costs) > 0
    budget._check(budget.least + 2 * NOISE)  # measured above the least: plans again, holding less
    second = list(budget.choices)
    assert budget.state == "check" and 0 < held(second, costs) < held(first, costs), (first, second)
    budget._check(budget.least + 2 * NOISE)
    budget._check(budget.least + 2 * NOISE)  # the third plan above it: every block runs again
    assert budget.choices == ["again"] * 3
    budget._check(budget.least)
    assert budget.state == "planned"


def test_any_plan_gives_fasts_gradients_and_batchnorm_statistics():
    """Blocks held as fast, held as lean and run again, side by side in one step (float64)."""
    torch.manual_seed(0)
    snn = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2).double()
    teacher = create_model("resnet_tiny", spiking=False, num_classes=10).double().eval()
    channels = [p.channels for p in snn.tap_points("block")]
    objective = SAKDLoss(channels, channels, alpha=1, beta=10, gamma=1, tau=4).double()
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64) * 2, torch.randint(0, 10, (4,))
    results = {}
    for name, choices in (("fast", None), ("fast, lean, again", ["fast", "lean", "again"]),
                          ("again, fast, lean", ["again", "fast", "lean"])):
        model = copy.deepcopy(snn)
        budget = MemoryBudget(2**40, torch.device("cpu"), lambda: 0)
        budget.choices, budget.state = choices or [], "planned"
        mode = "fast" if choices is None else "min"
        grads, _ = sakd_step_at(model, teacher, objective, x, y, mode, "block", plan=budget)
        results[name] = grads, [b.clone() for b in model.buffers()]
    fast = results.pop("fast")
    assert sum(g.abs().sum() for g in fast[0]) > 0
    for grads, buffers in results.values():
        assert all(torch.equal(a, b) for a, b in zip(fast[0], grads, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(fast[1], buffers, strict=True))


def test_a_budgeted_run_fits_its_budget_by_measurement_and_trains_as_a_fast_one(tmp_path):
    """The least step (every block run again) and the fastest (every block held as fast) are
    measured; a budget between them gets a plan that mixes treatments, whose steps peak within it
    (measured here again), and whose run ends with the weights of a run.memory=fast run, bit for
    bit; so does run.memory=min, planned within the least step's peak. Each epoch checks the plan again."""
    roomy = Trainer(fast_config(tmp_path / "roomy", "run.memory_budget=64GiB", "optim.epochs=1"))
    roomy.fit()
    least, fastest = roomy.budget.least, roomy.budget.measured
    assert roomy.budget.choices == ["fast"] * len(roomy.budget.costs) and least < fastest
    budget = (least + fastest) // 2
    runs = {}
    for name, extra in (("fast", ["run.memory=fast"]), ("budget", [f"run.memory_budget={budget}"]),
                        ("min", ["run.memory=min"])):
        trainer = Trainer(fast_config(tmp_path / name, "optim.epochs=2", *extra))
        trainer.fit()
        runs[name] = trainer
    planned = runs["budget"].budget
    assert planned.state == "planned" and planned.measured <= budget + NOISE
    assert planned.checks >= 2  # checked in its first epoch and again in the second
    assert set(planned.choices) != {"fast"}, planned.choices  # every block fast was measured above it
    least = runs["min"].budget  # run.memory=min: the least step's peak is the budget
    assert least.state == "planned" and not least.stated and least.measured <= least.least + NOISE
    assert least.budget == least.least
    for name in ("budget", "min"):
        for a, b in zip(runs["fast"].parts.model.state_dict().values(), runs[name].parts.model.state_dict().values()):
            assert torch.equal(a, b)
    trainer = runs["budget"]  # one more step, measured by the test
    x, y = next(iter(trainer.parts.train_loader))
    features = trainer.parts.objective.reads_features(0)
    trainer.parts.optimizer.zero_grad(set_to_none=True)
    with StepPeaks(torch.device("cpu"), trainer._resident()) as meter:
        loss, _, _ = trainer.step_loss(x, y, 0, features)
        trainer.backward(loss)
    assert meter.peak <= budget + NOISE


def test_a_budget_it_cannot_meet_and_a_budget_beside_a_mode_are_one_line(tmp_path, capsys):
    from sakd.cli import main

    assert main(["train", "--config", "quickstart/snn", f"run.output_dir={tmp_path}", "run.memory_budget=1MiB",
                 "run.progress=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "run.memory_budget=1.00 MiB is below the least this step needs" in err[-1]
    assert not list(tmp_path.iterdir())  # the run folder it made is gone
    with pytest.raises(ConfigError, match="needs run.memory=auto, not run.memory=min"):
        Trainer(fast_config(tmp_path, "run.memory=min", "run.memory_budget=1GiB"))


def test_every_process_plans_from_the_largest_measurement_any_made(tmp_path):
    """Under torchrun each process measures its own steps; the plan and its checks use the largest
    of each measurement over the processes (``agree``: here another process measures twice as much),
    so that all plan alike, and a budget another process cannot meet stops this one too.
    (tests/test_distributed.py trains two processes under run.memory=min through gloo.)"""
    seen = []

    def twice(values):  # what the other process measured: twice this one's (its first check above the budget)
        seen.append(list(values))
        return [2 * v + (2**20 if len(seen) == 2 else 0) for v in values]

    trainer = Trainer(fast_config(tmp_path / "min", "run.memory=min", "optim.epochs=1"))
    trainer.budget.agree = twice
    trainer.fit()
    budget = trainer.budget
    first, checks = seen[0], seen[1:]  # a check measured above the budget is followed by another
    own = first[:len(budget.segments)]
    assert [peak for _, peak in budget.segments] == [2 * v for v in own] and budget.least == 2 * max(own)
    assert [c.lean for c in budget.costs] == [2 * v for v in first[len(own)::3]]
    assert len(checks) == budget.checks >= 2 and all(len(c) == 1 for c in checks)
    assert budget.measured == 2 * checks[-1][0]
    seen.clear()
    trainer = Trainer(fast_config(tmp_path / "budget", f"run.memory_budget={int(1.5 * max(own))}"))
    trainer.budget.agree = twice
    with pytest.raises(ConfigError, match="below the least this step needs"):
        trainer.fit()
