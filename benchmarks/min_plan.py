"""``run.memory=min``'s plan, made again and again: which blocks it holds at its first check, and
whether holding them raises the step's true peak, for the ResNet-19 SAKD step (B=8) at T=4 and 8.

    python benchmarks/min_plan.py                   # full width, 3 plans per T (2-core VM: ~5 min)
    python benchmarks/min_plan.py --width 0.25 --repeats 1

Each plan is made as a trainer makes it (``Setup.min_plan``: the first steps measured by torch's
profiler) for a fresh student; then the step's true peak (``suite.peak_mib``: the resident set's
high-water mark, this process run with ``suite.MALLOC_ENV``) is measured with the plan and with
every block run again. Writes ``benchmarks/results/min_plan-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import suite  # noqa: E402

from sakd.neurons import NeuronSpec  # noqa: E402


def plans(width: float, batch: int, timesteps: tuple[int, ...], repeats: int) -> list[dict]:
    device, out = torch.device("cpu"), []
    for t in timesteps:
        for _ in range(repeats):
            s = suite.Setup(width, batch, device, None, NeuronSpec(name="lif"))
            step = s.step(s.student(timesteps=t), True, "min")
            plan = step.plan
            again = suite.Setup(width, batch, device, None, NeuronSpec(name="lif"),
                                plans={key: ["again"] * len(plan.choices) for key in s.plans})
            out.append({"timesteps": t, "choices": plan.choices, "held": sum(c != "again" for c in plan.choices),
                        "checks": plan.checks, "replans": plan.tries,
                        "profiled_least_mib": suite.mib(plan.least), "profiled_measured_mib": suite.mib(plan.measured),
                        "peak_mib": suite.peak_mib(step, device),
                        "peak_every_block_again_mib": suite.peak_mib(
                            again.step(again.student(timesteps=t), True, "min"), device)})
            print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "min_plan-cpu.json"))
    args = parser.parse_args(argv)
    if any(os.environ.get(k) != v for k, v in suite.MALLOC_ENV.items()):  # the true peak needs these malloc settings
        done = subprocess.run([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])],
                              env={**os.environ, **suite.MALLOC_ENV})
        if done.returncode:
            raise SystemExit(done.returncode)
        return json.loads(Path(args.out).read_text())
    result = {"machine": suite.machine(torch.device("cpu")), "width": args.width, "batch": args.batch,
              "plans": plans(args.width, args.batch, tuple(args.timesteps), args.repeats)}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
