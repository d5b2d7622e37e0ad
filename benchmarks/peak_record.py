"""What is alive at the peak of one training step: every storage an operation makes, recorded with
the operation, its shape and the phase of the step (the student's forward, a block run again in
backward, backward), kept while it lives (a weak reference to the storage), so that the peak's
contents can be read by what made them.

    python benchmarks/peak_record.py              # ResNet-19 x1/4, B=8, T=4: the ANN step on B, min SNN and SAKD steps
    python benchmarks/peak_record.py --width 1.0

The neurons run eagerly (``backend=fused``: a dispatch mode cannot see inside a compiled kernel),
which adds their per-timestep temporaries (``_to_copy``, ``add``, ``mul``, ``rsub`` on one
timestep's elements) that the compiled kernel keeps in registers; those rows are marked. The
record counts the tensors the step makes, not the allocator's blocks: it is the composition of the
peak, and figure 8 of ``suite.py`` its size. Writes ``benchmarks/results/peak_record-cpu.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).parent))
import suite  # noqa: E402

from sakd.neurons import NeuronSpec  # noqa: E402
from sakd.training.memory import units  # noqa: E402

NEURON_TEMPORARIES = {"_to_copy", "add", "mul", "rsub", "sub", "ge", "where"}  # on one timestep's [N] elements


class Record(TorchDispatchMode):
    """Every storage made on the CPU while active and alive, and the live set (and the step's
    phase) at the peak; ``phase`` is set from outside ("start": before the student's forward)."""

    def __init__(self):
        super().__init__()
        self.phase, self.live, self.now, self.peak, self.at_peak, self.peak_phase = "start", {}, 0, 0, {}, None

    def _gone(self, key):
        info = self.live.pop(key, None)
        if info:
            self.now -= info["bytes"]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self.live:
                continue
            self.live[key] = {"bytes": storage.nbytes(), "op": func.overloadpacket.__name__,
                              "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "phase": self.phase}
            self.now += storage.nbytes()
            weakref.finalize(storage, self._gone, key)
            if self.now > self.peak:
                self.peak, self.at_peak, self.peak_phase = self.now, dict(self.live), self.phase
        return out


def record_step(step, model=None) -> dict:
    """The peak of one step (after a first), its phase, and what was alive then, grouped."""
    step()
    rec = Record()
    hooks, run_again = [], units.UnitCall.recompute
    if model is not None:
        hooks = [model.register_forward_pre_hook(lambda *_: setattr(rec, "phase", "forward")),
                 model.register_forward_hook(lambda *_: setattr(rec, "phase", "backward"))]

        def watched(call):
            rec.phase = "run again"
            run_again(call)
            rec.phase = "backward"

        units.UnitCall.recompute = watched
    try:
        with rec:
            step()
    finally:
        units.UnitCall.recompute = run_again
        for h in hooks:
            h.remove()
    groups = collections.defaultdict(int)
    for info in rec.at_peak.values():
        groups[(info["op"], tuple(info["shape"]), info["dtype"], info["phase"])] += info["bytes"]
    mib = 2**20
    rows = [{"mib": n / mib, "op": op, "shape": list(shape), "dtype": dt, "phase": phase,
             "neuron_temporary": op in NEURON_TEMPORARIES and len(shape) == 1}
            for (op, shape, dt, phase), n in sorted(groups.items(), key=lambda kv: -kv[1])]
    temporaries = sum(r["mib"] for r in rows if r["neuron_temporary"])
    return {"peak_mib": rec.peak / mib, "peak_without_neuron_temporaries_mib": rec.peak / mib - temporaries,
            "phase": rec.peak_phase, "alive": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "peak_record-cpu.json"))
    args = parser.parse_args(argv)
    s = suite.Setup(args.width, args.batch, torch.device("cpu"), None, NeuronSpec(backend="fused"))
    steps = {"ann_B": (s.ann_step("B"), None)}
    for name, sakd in (("snn_min", False), ("sakd_min", True)):
        step = s.step(s.student(), sakd, "min")
        steps[name] = (step, step.model)
    result = {"width": args.width, "batch": args.batch, "timesteps": suite.T, "machine": suite.machine(s.device),
              "steps": {name: record_step(step, model) for name, (step, model) in steps.items()}}
    for name, r in result["steps"].items():
        print(f"{name}: peak {r['peak_mib']:.1f} MiB ({r['peak_without_neuron_temporaries_mib']:.1f} without the "
              f"eager neuron's temporaries), in {r['phase']}")
        for row in r["alive"][:12]:
            mark = "  (eager neuron temporary)" if row["neuron_temporary"] else ""
            print(f"  {row['mib']:7.2f} MiB  {row['op']:22s} {str(row['shape']):22s} {row['phase']}{mark}")
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
