"""The benchmark suite runs end to end at toy sizes and reports every figure consistently."""

import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import suite  # noqa: E402


def test_suite_reports_all_six_figures(tmp_path):
    out = tmp_path / "suite.json"
    result = suite.main(["--device", "cpu", "--widths", "0.0625", "--batch", "2", "--repeats", "1",
                         "--warmup", "1", "--neuron-shape", "4", "2", "8", "4", "4", "--no-peer",
                         "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))  # the file round-trips
    (w,) = result["widths"]
    for key in ("limit_ratio", "sakd_overhead"):
        assert math.isfinite(w[key]) and w[key] > 0
    assert "peer" not in w and result["spikingjelly_missing"] == "skipped (--no-peer)"
    mib = [w["memory_vs_T"]["mib"][t]["saved_mib"] for t in ("1", "2", "4", "8")]
    assert mib == sorted(mib) and mib[0] < mib[-1]  # a step keeps more for BPTT as T grows
    assert w["memory_vs_T"]["slope_mib_per_step"] > 0
    assert all(v > 0 for v in w["inference_images_per_s"].values())
    n = result["neuron"]
    assert all(n["same_spikes_as_reference"].values())
    # the fast LIF keeps only its input for the backward pass; the autograd loop keeps more
    x_mib = 4 * 2 * 8 * 4 * 4 * 4 / 2**20
    assert math.isclose(n["saved_mib"]["sakd_fused"], x_mib)
    assert n["saved_mib"]["pytorch_loop"] > 2 * x_mib


def test_saved_for_backward_counts_distinct_storages_once():
    x = torch.randn(1000, requires_grad=True)
    with suite.saved_for_backward(set()) as saved:
        y = (x * x).sum()  # x saved twice by one mul: counted once
    y.backward()
    assert sum(saved.values()) == x.untyped_storage().nbytes()
