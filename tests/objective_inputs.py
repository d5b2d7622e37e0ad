"""The objective's loss values for every packaged recipe on fixed tensors.

``tests/data/objective_values.json`` holds the values of the code at commit "Record every recipe's
objective values" (4c94cf8, before SAKD's terms moved onto the loss-term registry): this file, run
there with its tensors and objective in float64 (``python tests/objective_inputs.py``), wrote them.
``tests/test_kd_methods.py`` checks that today's objective gives the same values to 1e-12. Float64,
because float32 values change in their last bits between PyTorch releases (reductions re-ordered).
"""

import json
from pathlib import Path

import torch

from sakd.distill import Objective
from sakd.training.config import load_config, packaged_configs

CHANNELS = [4, 6, 8]  # student and teacher channels of three taps
RECORD = Path(__file__).parent / "data" / "objective_values.json"


def recipe_inputs(taps: int):
    g = torch.Generator().manual_seed(1)
    f64 = torch.float64
    logits, target = torch.randn(5, 10, generator=g, dtype=f64), torch.randint(0, 10, (5,), generator=g)
    t_logits = torch.randn(5, 10, generator=g, dtype=f64)
    fs = [torch.randn(4, 5, c, 3, 3, generator=g, dtype=f64) for c in CHANNELS][:taps]
    ft = [torch.randn(5, c, 3, 3, generator=g, dtype=f64) for c in CHANNELS][:taps]
    return logits, target, t_logits, fs, ft


def recipe_values() -> dict:
    """{recipe: {epoch: {"total": ..., term: ...}}} at epoch 0 and at each schedule point, the
    objective built as a run builds it (``distill.term_specs()``)."""
    out = {}
    for name in packaged_configs():
        d = load_config(name).distill
        if not (d.beta or d.gamma or d.beta_schedule):
            continue
        torch.manual_seed(0)  # the feature transforms' initialisation
        loss = Objective(d.term_specs(), CHANNELS, CHANNELS).double()
        points = {epoch for t in d.term_specs() for epoch, _, _ in t.schedule.points}
        values = {}
        for epoch in sorted({0, *points}):
            r = loss(*recipe_inputs(len(CHANNELS)), epoch=epoch)
            values[str(epoch)] = {"total": r.total.item(), **{k: v.item() for k, v in r.terms.items()}}
        out[name] = values
    return out


if __name__ == "__main__":
    RECORD.write_text(json.dumps(recipe_values(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD}")
