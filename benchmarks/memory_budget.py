"""``run.memory_budget``: the SAKD step's time and peak from the least budget it fits to the
budget of its fastest step, with the plan chosen at each (blocks held as fast, held as lean, run
again), side by side with ``run.memory=fast`` and ``min`` in one process.

    python benchmarks/memory_budget.py                      # ResNet-19 x1/4, B=8, T=4 (2-core VM: ~1 min)
    python benchmarks/memory_budget.py --widths 0.25 1.0    # and full width (~10 min more)

Every peak here is :class:`~sakd.training.memory.StepPeaks`' (on CPU torch's profiler: the bytes
of the tensors alive at the step's peak, the models' and the optimizer's included), the measure
the plan is made and checked with; ``suite.py``'s figure 8 measures the process's resident memory
instead, so the two are not compared. The budgets are the least step's peak (every block run
again), the ANN step's on B images where it is above that, and four more up to the fastest
step's (every block held as fast), each planned afresh. Times are medians of interleaved steps,
against the fast step's in the same rounds. Writes ``benchmarks/results/memory_budget-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import suite  # noqa: E402

from sakd.neurons import NeuronSpec  # noqa: E402
from sakd.training.memory import MemoryBudget, StepPeaks, resident_bytes  # noqa: E402
from sakd.training.memory.budget import NOISE, TRIES, size_text  # noqa: E402


def resident(step, device):
    modules = [m for m in (step.model, step.teacher) if m is not None]
    return lambda: resident_bytes(device, modules, step.optimizer)


def peak(step, device) -> int:
    """One step's peak (after a first step, which makes the optimizer's state, measured as well so
    that the profiler counts the second's frees of what the first left)."""
    with StepPeaks(device, resident(step, device)()):
        step()
    with StepPeaks(device, resident(step, device)()) as meter:
        step()
    return meter.peak


def planned(s: suite.Setup, budget: int, device, log) -> tuple:
    """A SAKD step under ``budget``: its plan made and checked (the steps that measure it)."""
    holder = {}
    step = s.step(s.student(), True, "min", plan=(plan := MemoryBudget(budget, device, lambda: holder["r"](), log)))
    holder["r"] = resident(step, device)
    for _ in range(2 + TRIES + 1):  # warm-up, measure, then a check per plan and the every-block-again one
        step()
        if plan.state == "planned":
            return step, plan
    raise RuntimeError("the plan was not settled")


def one_width(width: float, batch: int, device, warmup: int, repeats: int) -> dict:
    torch.manual_seed(0)
    s = suite.Setup(width, batch, device, None, NeuronSpec())
    fast, least_mode = s.step(s.student(), True, "fast"), s.step(s.student(), True, "min")  # min: planned
    peaks = {"ann_B": peak(s.ann_step("B"), device), "fast": peak(fast, device), "min": peak(least_mode, device)}
    print(f"width {width}: peaks {', '.join(f'{k} {size_text(v)}' for k, v in peaks.items())}")
    _, roomy = planned(s, 2**50, device, print)  # measures the least step, plans every block fast
    least, fastest = roomy.least, roomy.measured
    budgets = sorted({least, *([peaks["ann_B"]] if peaks["ann_B"] > least else []),
                      *(int(least + f * (fastest - least)) for f in (0.25, 0.5, 0.75, 1.0))})
    rows = []
    for budget in budgets:
        step, plan = planned(s, budget, device, print)
        sec = suite.interleaved({"fast": fast, "budget": step}, device, warmup, repeats)
        rows.append({"budget": budget, "choices": plan.choices, "estimate": plan.predicted, "measured": plan.measured,
                     "tries": plan.tries, "fits": plan.measured <= budget + NOISE,
                     "time_vs_fast": sec["budget"] / sec["fast"], "vs_ann_B": budget / peaks["ann_B"],
                     "vs_fast_peak": budget / peaks["fast"]})
        print(f"width {width}, budget {size_text(budget)} ({budget / peaks['ann_B']:.2f}x the ANN step's): "
              f"{plan.choices}, measured {size_text(plan.measured)}, time {rows[-1]['time_vs_fast']:.3f}x fast")
    min_time = suite.interleaved({"fast": fast, "min": least_mode}, device, warmup, repeats)
    return {"width": width, "peaks": peaks, "least": least, "fastest": fastest,
            "min_time_vs_fast": min_time["min"] / min_time["fast"], "budgets": rows,
            "all_fit": all(r["fits"] for r in rows)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory_budget-cpu.json"))
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    result = {"batch": args.batch, "timesteps": suite.T, "repeats": args.repeats,
              "measure": "StepPeaks (torch profiler)", "machine": suite.machine(device),
              "widths": [one_width(w, args.batch, device, args.warmup, args.repeats) for w in args.widths]}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
