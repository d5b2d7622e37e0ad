"""The benchmark suite runs end to end at toy sizes and reports every figure consistently."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sakd.neurons import NEURONS, NeuronSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import suite  # noqa: E402


def test_suite_reports_every_figure(tmp_path):
    neuron = ["--neuron", "plif", "--reset", "soft"]  # the student's neuron carries through every figure
    out = tmp_path / "suite.json"
    result = suite.main(["--device", "cpu", "--widths", "0.0625", "--batch", "2", "--repeats", "1",
                         "--warmup", "1", "--neuron-shape", "4", "2", "8", "4", "4", "--no-peer",
                         "--networks", "torchvision_resnet18", "plain_cnn", "--out", str(out), *neuron])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))  # the file round-trips
    (w,) = result["widths"]
    for key in ("limit_ratio", "sakd_overhead"):
        assert math.isfinite(w[key]) and w[key] > 0
    assert "peer" not in w and result["spikingjelly_missing"] == "skipped (--no-peer)"
    mib = [w["memory_vs_T"]["mib"][t]["saved_mib"] for t in ("1", "2", "4", "8")]
    assert mib == sorted(mib) and mib[0] < mib[-1]  # a step keeps more for BPTT as T grows
    assert w["memory_vs_T"]["slope_mib_per_step"] > 0
    assert all(v > 0 for v in w["inference_images_per_s"].values())
    lean = w["lean"]  # spikes packed: less kept than the fast step, bits less than bytes
    assert lean["bits_memory_ratio"] < lean["uint8_memory_ratio"] < 1 and lean["bits_time_ratio"] > 0
    assert lean["bits_vs_ann_B"] < lean["fast_vs_ann_B"]
    assert lean["bits_only_memory_ratio"] > lean["bits_memory_ratio"]  # making neuron inputs again saves more
    assert w["min"]["memory_ratio"] < lean["bits_memory_ratio"] and w["min"]["time_ratio"] > 0  # min keeps least
    kept = w["modes_vs_T"]["mib"]  # figure 9: what each mode keeps at T = 1, 2, 4, 8
    assert set(kept) == {"fast", "lean", "min"} and all(list(by) == ["1", "2", "4", "8"] for by in kept.values())
    assert all(kept["min"][t] < kept["lean"][t] < kept["fast"][t] for t in ("2", "4", "8"))
    peak = w["peak"]  # figure 8: every step measured at B and 2B, the largest batch from the fit
    assert list(peak["peak_mib"]) == ["2", "4"] and all(set(p) == {"ann_B", "sakd", "sakd_lean", "sakd_min"}
                                                           for p in peak["peak_mib"].values())
    assert set(peak["vs_T"]["peak_mib"]) == {"fast", "lean", "min", "sltt"} and peak["fast_vs_min"] > 0
    for phases in peak["min_phases"].values():  # where a min step peaks: its forward, a block run again, backward
        assert list(phases["peak_mib"]) == ["before the forward", "forward", "run again", "backward"]
        assert max(phases["peak_mib"].values()) > 0 and 0 < phases["run_again"] < phases["blocks"]
    goals = {g["goal"]: g for g in result["goals"]}  # every goal as {goal, value, target, met}
    assert {"limit_ratio", "lean_vs_ann", "min_peak_vs_ann_peak", "fast_peak_vs_min_peak", "min_time",
            "sltt_peak_T8_vs_T2", "sltt_time"} <= set(goals)
    assert all(g["met"] == (g["value"] >= g["target"] if g["better"] == "higher" else g["value"] <= g["target"])
               for g in result["goals"])
    budget = peak["budget_gib"] * 1024
    for fit in peak["fit"].values():
        b = fit["largest_batch"]
        assert fit["fixed_mib"] + fit["per_image_mib"] * b <= budget < fit["fixed_mib"] + fit["per_image_mib"] * (b + 1)
    # figure 10: another network's row, through the graph twin (a plain one names no blocks for min)
    resnet, plain = result["networks"]
    assert resnet["model"] == "torchvision:resnet18" and resnet["peak"]["least"] == "sakd_min"
    assert resnet["min_time"] > 0
    assert plain["peak"]["least"] == "sakd_lean" and "min_time" not in plain and plain["limit_ratio"] > 0
    assert set(resnet["peak"]["least_T"]) == {"1", "4", "8"} and resnet["peak"]["least_largest_batch"] > 0
    assert {g["goal"] for g in result["goals"] if "torchvision_resnet18" in g["where"]} == {
        "limit_ratio", "lean_time", "min_time", "min_peak_vs_ann_peak", "fast_peak_vs_min_peak"}
    n = result["neuron"]
    assert n["neuron"] == result["student_neuron"]["name"] == neuron[1]
    assert n["ms"]["relu"] > 0 and set(n["ms"]) == set(result["neuron_call"]["ms"])  # ReLU beside the neuron
    assert result["neuron_call"]["shape"] == [4, 2, 1, 2, 2] and all(
        result["neuron_call"]["same_spikes_as_reference"].values()
    )


@pytest.mark.parametrize("spec", [NeuronSpec(name="lif"), NeuronSpec(name="plif", reset="soft")], ids=lambda s: s.name)
def test_neuron_figure_keeps_only_the_fused_neurons_input(spec):
    n = suite.bench_neuron(torch.device("cpu"), None, spec, 1, 1, (4, 2, 8, 4, 4))
    assert all(n["same_spikes_as_reference"].values())
    # the fused neuron keeps only its input (PLIF: and its 0-dim leak) for the backward pass;
    # the autograd loop keeps more
    x_mib = 4 * 2 * 8 * 4 * 4 * 4 / 2**20
    assert x_mib <= n["saved_mib"]["sakd_fused"] <= x_mib + 16 / 2**20
    assert n["saved_mib"]["pytorch_loop"] > 1.5 * x_mib  # LIF: V per step; PLIF soft: λ·V (from step 2) and H - V_th


def test_saved_for_backward_counts_distinct_storages_once():
    x = torch.randn(1000, requires_grad=True)
    with suite.saved_for_backward(set()) as saved:
        y = (x * x).sum()  # x saved twice by one mul: counted once
    y.backward()
    assert sum(saved.values()) == x.untyped_storage().nbytes()


def test_spikingjelly_memopt_rows_checkpoint_the_share_of_blocks_each_budget_names():
    """Figure 8's memopt rows: ResNet-19's 8 blocks, every one, 6 and 4 of them checkpointed (the
    largest activations first), each step running."""
    sj, missing = suite.spikingjelly()
    if sj is None:
        pytest.skip(f"SpikingJelly: {missing}")
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper  # memopt's

    from sakd.models.resnet import BasicBlock

    s = suite.Setup(0.0625, 2, torch.device("cpu"), sj, NeuronSpec(name="lif"))
    counts = {}
    for budget in suite.MEMOPT_BUDGETS:
        model = s.memopt_student(budget)
        wrapped = [m._checkpoint_wrapped_module for m in model.modules() if isinstance(m, CheckpointWrapper)]
        counts[budget] = len(wrapped)
        assert all(isinstance(m, BasicBlock) for m in wrapped)
    assert counts == {"memory": 8, "balanced": 6, "speed": 4}
    for step in suite.memopt_steps(s).values():
        step()


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("name", sorted(n for n, node in suite.SJ_NODES.items() if node))
def test_spikingjelly_peer_computes_the_same_neuron(name, reset):
    """The peer rows compare like with like: SpikingJelly's node set up by the suite gives our
    reference neuron's spikes and input gradients (an independent implementation of eq. 1-4)."""
    sj, missing = suite.spikingjelly()
    if sj is None:
        pytest.skip(f"SpikingJelly: {missing}")
    spec = NeuronSpec(name=name, reset=reset, decay=0.25, threshold=0.75, backend="reference")
    assert suite.peer_missing(spec) is None
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 40, dtype=torch.float64) + 0.4).requires_grad_()
    g = torch.randn_like(x)
    ours, peer = spec.build().double(), suite.sj_node(sj, spec).double()
    out_ours, out_peer = ours(x), peer(x)
    assert torch.equal(out_ours, out_peer) and 0 < out_ours.mean() < 1
    (grad_ours,) = torch.autograd.grad(out_ours, x, g)
    (grad_peer,) = torch.autograd.grad(out_peer, x, g)
    torch.testing.assert_close(grad_ours, grad_peer)


def test_a_neuron_without_a_spikingjelly_counterpart_skips_the_peer_with_the_reason():
    packaged = {n for n in NEURONS.names() if NEURONS.get(n).__module__.startswith("sakd.")}
    assert packaged <= set(suite.SJ_NODES)  # every neuron sakd ships has its peer row
    assert "surrogate 'sigmoid'" in suite.peer_missing(NeuronSpec(surrogate="sigmoid"))
    assert suite.peer_missing(NeuronSpec(name="lif", decay=1.0)) is not None
    assert "the converter's scaler -> IFNode -> scaler" in suite.peer_missing(NeuronSpec(name="qcfs"))


def test_kd_methods_table_runs_resumes_and_reports_every_method(tmp_path):
    import kd_methods

    args = ["--quick", "--epochs", "1", "--methods", "dkd", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "kd.json"), "--set", "model.timesteps=2"]
    result = kd_methods.main(args)
    assert set(result["methods"]) == {"snn", "dkd"}  # the SNN baseline always runs
    snn, dkd = result["methods"]["snn"], result["methods"]["dkd"]
    assert snn["step_time_ratio"] == 1.0 and dkd["step_time_ratio"] > 0
    for row in (snn, dkd):
        assert 10.0 < row["best_top1"]["mean"] <= 100.0 and row["last_top1"]["mean"] <= row["best_top1"]["mean"]
        assert 0 < row["firing_rate"]["mean"] < 1
    assert len(result["markdown"].splitlines()) == 2 + 1 + 2  # header, rule, teacher, two methods
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    again = kd_methods.main(args)  # every cell is in the JSON: nothing trains again
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs
    assert again["cells"] == result["cells"]


def test_claims_quick_runs_every_cell_and_judges_every_claim(tmp_path):
    """The study's smoke test on MNIST-style files the test writes (random images: the verdicts
    themselves mean nothing here; the full study's are in the README)."""
    import claims
    from conftest import fake_mnist

    fake_mnist(tmp_path / "data", gz=True, n_train=120, n_test=60)
    out = tmp_path / "claims.json"
    args = [
        "--quick",
        "--root",
        str(tmp_path / "data"),
        "--image-size",
        "8",
        "--train-subset",
        "100",
        "--small-subset",
        "50",
        "--test-subset",
        "50",
        "--batch",
        "25",
        "--val-fraction",
        "0.2",
        "--model",
        "resnet_tiny",
        "--deep",
        "resnet_tiny",
        "--set",
        "model.timesteps=2",
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(out),
    ]
    result = claims.main(args)
    assert set(result["claims"]) == set("abcdef")
    # one seed: no comparison has a margin, and cells near chance did not train: never a verdict
    assert all(c["verdict"] == "not distinguishable" or c["verdict"].startswith("did not train")
               for c in result["claims"].values()), result["claims"]
    assert "val-selected top-1" in result["markdown"] and "chosen on test" in result["markdown"]
    assert set(result["rows"]) == {"ann", "deep_ann", *claims.students()}
    assert out.with_suffix(".png").stat().st_size > 0 and "| (f)" in out.with_suffix(".md").read_text()
    assert len(result["cells"]) == 3 + len(claims.students())  # three ANNs (one seed), every student
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    claims.main(args)  # resumed: nothing trains again
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs


def small_study(tmp_path, out) -> list[str]:
    """The options of a study's smoke test on the MNIST-style files under tmp_path/data."""
    return ["--root", str(tmp_path / "data"), "--image-size", "8", "--train-subset", "50", "--test-subset", "30",
            "--batch", "25", "--val-fraction", "0.2", "--set", "model.timesteps=2", "--runs", str(tmp_path / "runs"),
            "--out", str(out)]


def test_any_network_quick_trains_ann_snn_and_sakd_of_a_network_from_elsewhere(tmp_path):
    """The any-network study's smoke test, on MNIST-style files the test writes and a module of
    the tests (random images: the numbers mean nothing; the recorded study's are in the docs)."""
    import any_network
    from conftest import fake_mnist

    fake_mnist(tmp_path / "data", gz=True, n_train=60, n_test=30)
    out = tmp_path / "any.json"
    args = ["--quick", "--models", "python:test_graph_twins:user_net", *small_study(tmp_path, out)]
    result = any_network.main(args)
    assert sorted(result["cells"]) == [
        f"python_test_graph_twins_user_net/{m}/seed0" for m in ("ann", "sakd", "sakd_ce", "snn")
    ]
    row = result["rows"]["python:test_graph_twins:user_net"]
    assert row["sakd_vs_snn"]["sign"] == row["sakd_ce_vs_snn"]["sign"] == 0  # one seed: never a verdict
    assert "| python:test_graph_twins:user_net |" in out.with_suffix(".md").read_text()
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    any_network.main(args)  # resumed: nothing trains again
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs


def test_claims_need_a_margin_and_a_trained_cell():
    """The rule on made-up seeds: a difference with every seed on one side and a mean beyond its
    standard error counts; 0.15 points inside the spread does not; a cell at chance gives no verdict."""
    import claims

    def row(*values):
        return {"last": {"mean": sum(values) / len(values), "values": list(values)}}

    base = {k: row(70.0, 71.0, 72.0) for k in ["ann", "deep_ann", "snn", *claims.students()]}
    base["ann"] = base["deep_ann"] = row(77.0, 77.5, 76.5)
    base["snn"] = row(64.0, 62.0, 66.0)
    base["deep_snn"] = row(10.0, 10.0, 10.0)
    base["transform_none"] = row(70.2, 70.5, 71.9)  # 0.15 below on average, one seed above: no margin
    base["beta_1000"] = {"last": {"mean": None, "values": [None, None, None]}}
    base["logits_only"] = row(52.0, 53.0, 54.0)
    v = claims.verdicts(base, chance=10.0)
    assert v["a"]["verdict"] == "reproduced" and v["a"]["sakd_minus_snn"]["sign"] == 1
    assert v["d"]["verdict"] == "not distinguishable"
    assert v["e"]["verdict"] == "reproduced"  # β=100 beats 0, β=1000 diverges in every seed
    assert v["b"]["verdict"] == "reproduced"  # the deep SNN at chance alone, its SAKD twin at 71
    base["deep_sakd"] = base["deep_sakd_mean"] = row(10.5, 10.0, 10.2)
    assert claims.verdicts(base, 10.0)["b"]["verdict"] == "did not train (deep_sakd)"


def test_a_study_records_a_diverged_run_and_leaves_it_out_of_the_mean(tmp_path):
    from conftest import fast_config
    from study import Study, mean_std, pm

    study = Study(tmp_path / "study.json", {"case": 1})
    cell = study.run("unstable", fast_config(tmp_path, "optim.lr=1e12", "optim.epochs=1", "model.spiking=false"))
    assert cell["diverged"].startswith("the loss became NaN/Inf")
    again = Study(tmp_path / "study.json", {"case": 1})
    assert again.cells == {"unstable": cell}  # kept in the file: not trained again
    assert Study(tmp_path / "study.json", {"case": 2}).cells == {}  # other settings start afresh
    stat = mean_std([70.0, None, 72.0])
    assert (stat["mean"], stat["diverged"]) == (71.0, 1) and pm(stat) == "71.00 ± 1.41 (1/3 diverged)"
    assert pm(mean_std([None, None])) == "diverged (2/2)"


def test_analyze_speed_quick_records_every_figure(tmp_path):
    import analyze_speed

    out = tmp_path / "speed.json"
    assert analyze_speed.main(["--quick", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["images"] == 64 and r["analyze_s"] > 0 and r["eval_s"] > 0 and r["counting_overhead"] > 0
    assert r["ann_macs_per_image"] > 0 and r["dense_forward_bound_s"] > 0 and r["goal_met"] == (r["analyze_s"] < 60)


def test_nir_consumers_compare_each_consumer_or_say_why_not():
    pytest.importorskip("nir")
    import nir_consumers

    rows = nir_consumers.compare(nir_consumers.trained_looking("resnet_tiny"), torch.randn(2, 3, 16, 16) * 2,
                                 list(nir_consumers.CONSUMERS))
    assert rows["sakd"]["neuron_layers"] == 7 and 0 < rows["sakd"]["firing_rate"] < 1
    for name in nir_consumers.CONSUMERS:
        row = rows[name]
        if not row["installed"]:
            assert row["error"]  # the import error, verbatim
        elif row.get("runs_the_graph", True) and row["imported"]:
            assert set(row["layers"]) and row["output_max_abs_diff"] >= 0
        else:
            assert row["error"]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the CPU peak reads Linux's /proc")
def test_the_cpu_peak_measure_sees_what_a_step_holds_at_once():
    """Figure 8's CPU measure, in a process with the suite's malloc settings: a step that holds
    64 MiB and then 32 MiB more at once peaks at 96 MiB (within 1 MiB), whatever it held before or
    frees after."""
    code = (
        "import sys, torch; sys.path.insert(0, 'benchmarks'); import suite\n"
        "keep = torch.ones(2**22)\n"  # 16 MiB alive before the step: not counted
        "def step():\n"
        "    a = torch.ones(2**24)\n"  # 64 MiB
        "    b = torch.ones(2**23)\n"  # 32 MiB more
        "    del a, b\n"
        "    torch.ones(2**22)\n"  # 16 MiB after the peak
        "print(suite.peak_mib(step, torch.device('cpu')))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, **suite.MALLOC_ENV},
                          capture_output=True, text=True, check=True)
    peak = float(done.stdout.strip().splitlines()[-1])
    assert 95 <= peak < 100  # 96 MiB, within the resident set's own small moves


def test_sltt_study_quick_trains_full_and_sltt_with_and_without_sakd(tmp_path):
    """The SLTT accuracy study's smoke test on MNIST-style files the test writes (random images:
    the numbers mean nothing; the recorded study's are in the docs)."""
    import sltt_accuracy
    from conftest import fake_mnist

    fake_mnist(tmp_path / "data", gz=True, n_train=60, n_test=30)
    out = tmp_path / "sltt.json"
    result = sltt_accuracy.main(["--quick", *small_study(tmp_path, out)])
    assert sorted(result["cells"]) == [f"resnet_tiny/{m}/seed0" for m in
                                       ("ann", "sakd_full", "sakd_sltt", "snn_full", "snn_sltt")]
    row = result["rows"]["resnet_tiny"]
    assert row["snn_sltt_vs_full"]["sign"] == row["sakd_sltt_vs_full"]["sign"] == 0  # one seed: never a verdict
    assert row["time_s"]["snn_sltt"]["mean"] > 0 and "| resnet_tiny |" in out.with_suffix(".md").read_text()


def test_kd_methods_tuned_gives_every_method_the_same_trials_then_seeds_its_best(tmp_path):
    import kd_methods

    args = ["--quick", "--tuned", "--trials", "1", "--methods", "strong2weak", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "kd.json"), "--set", "model.timesteps=2"]
    result = kd_methods.main(args)
    row = result["methods"]["strong2weak"]
    assert set(result["methods"]) == {"snn", "strong2weak"} and result["settings"]["trials"] == 1
    study = row["tuned"]["study"]
    assert study["trials"] == 1 and study["space"] == "strong2weak"
    tuned_run = json.loads((Path(study["folder"]) / "tune.json").read_text())
    assert tuned_run["best"]["score"] == study["best"]["score"]  # scored on validation, by sakd tune
    assert all(f"run.seed={kd_methods.TUNING_SEED}" in tuned_run["overrides"] for _ in [0])  # not a reported seed
    for which in ("default", "tuned"):  # the test top-1 of the epoch validation selects, for both settings
        assert 0 < row[which]["selected_top1"]["mean"] <= 100
    assert row["default"]["vs"][0]["delta"] == pytest.approx(
        row["default"]["selected_top1"]["mean"] - result["methods"]["snn"]["default"]["selected_top1"]["mean"])
    assert (tmp_path / "kd.md").read_text().startswith("| method |") and (tmp_path / "kd.png").stat().st_size > 0
    cells = dict(result["cells"])
    assert kd_methods.main(args)["cells"] == cells  # every cell recorded: nothing trains again


def test_conversion_study_quick_converts_trains_and_names_a_leader_at_each_t(tmp_path):
    """The conversion table's smoke test (digits, 1 seed, T = 1 and 2, one epoch, 200 images: the
    numbers mean nothing; the recorded study's are in the docs); a second call trains nothing."""
    import conversion

    args = ["--quick", "--out", str(tmp_path / "c.json"), "--runs", str(tmp_path / "runs")]
    result = conversion.main(args)
    methods = ("qcfs", "max", "snn", "sakd", "qcfs_sakd")
    assert {f"{m}/T{t}/seed0" for m in methods for t in (1, 2)} <= set(result["cells"])
    assert set(result["leaders"]) == {"1", "2"} and not any(v["beyond_spread"] for v in result["leaders"].values())
    assert result["pairs"]["2"]["sakd - qcfs"]["sign"] == 0  # one seed: never beyond the spread
    assert (tmp_path / "c.png").is_file() and "| QCFS conversion -> SAKD |" in (tmp_path / "c.md").read_text()
    start = torch.load(result["cells"]["qcfs/T2/seed0"]["run_dir"], weights_only=False)["conversion"]
    assert start["method"] == "qcfs" and start["timesteps"] == 2
    assert conversion.main(args)["cells"] == result["cells"]  # resumed: every cell was in the file


def test_the_peak_record_names_what_is_alive_at_a_steps_peak(tmp_path):
    import peak_record

    result = peak_record.main(["--width", "0.0625", "--batch", "2", "--out", str(tmp_path / "r.json")])
    ann, sakd = result["steps"]["ann_B"], result["steps"]["sakd_min"]
    for r in result["steps"].values():  # what the rows count is the peak
        assert sum(row["mib"] for row in r["alive"]) == pytest.approx(r["peak_mib"], rel=1e-9)
    assert ann["phase"] == "start" and all(row["phase"] == "start" for row in ann["alive"])  # no hooks on the ANN
    assert sakd["phase"] in ("forward", "run again", "backward")
    assert any(row["phase"] == "run again" for row in sakd["alive"])  # a block run again in backward holds memory
    assert 0 < sakd["peak_without_neuron_temporaries_mib"] <= sakd["peak_mib"]


def test_memory_budget_records_a_plan_per_budget_that_fits_it(tmp_path):
    import memory_budget

    out = tmp_path / "budget.json"
    result = memory_budget.main(["--widths", "0.0625", "--batch", "2", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (width,) = result["widths"]
    rows = width["budgets"]
    assert rows[0]["budget"] == width["least"] and rows[-1]["budget"] == width["fastest"] and len(rows) >= 5
    assert width["all_fit"] and all(r["measured"] <= r["budget"] + memory_budget.NOISE and r["time_vs_fast"] > 0
                                    for r in rows)
    held = [sum(c != "again" for c in r["choices"]) for r in rows]
    assert held[0] <= held[-1] == len(rows[-1]["choices"])  # the least budget holds fewest; the fastest's every block


def test_min_plan_records_each_plan_its_checks_and_both_true_peaks():
    import min_plan

    from sakd.training.memory.budget import NOISE

    (row,) = min_plan.plans(0.0625, 2, (2,), 1)
    assert len(row["choices"]) == 8 and row["held"] == sum(c != "again" for c in row["choices"])
    assert row["checks"] >= 1 and row["peak_mib"] >= 0 and row["peak_every_block_again_mib"] >= 0
    # the plan's checked step fits the least step's peak, or the plan runs every block again
    assert row["profiled_measured_mib"] * 2**20 <= row["profiled_least_mib"] * 2**20 + NOISE or row["held"] == 0
