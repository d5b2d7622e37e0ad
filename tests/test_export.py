"""``sakd export``: BatchNorm folding keeps every spike; the NIR file round-trips through nir's reader
and an interpreter of NIR's equations written here from the file alone (forward Euler, dt = 1)
reproduces sakd's spikes layer by layer; the ONNX file gives the PyTorch logits in onnxruntime;
what cannot be exported is one clear error, and a failed export keeps an earlier file."""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sakd.cli import main
from sakd.export.graph import run_steps, step_graph
from sakd.neurons import SpikeActivation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from nir_consumers import trained_looking  # noqa: E402  (the benchmark's test models: random BN statistics)


def model_spikes(model, x):
    """Each spiking layer's spikes ``[T, B, ...]`` and the per-timestep logits of the model itself."""
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o.unflatten(0, (model.timesteps, -1))))
             for n, m in model.named_modules() if isinstance(m, SpikeActivation)]
    with torch.no_grad():
        logits = model.forward_timesteps(x)
    for h in hooks:
        h.remove()
    return logits, seen


@pytest.mark.parametrize("name, neuron, options, size", [
    ("resnet_tiny", {}, {}, 16),
    ("resnet_tiny", {"name": "plif", "decay": 0.3}, {}, 16),
    ("resnet_tiny", {"name": "if", "reset": "soft"}, {}, 16),
    ("sew_resnet18", {}, {"connect": "IAND"}, 16),
    ("vgg11", {}, {}, 48),
], ids=["lif", "plif", "if-soft", "sew-iand", "vgg11"])
def test_the_folded_one_step_graph_gives_the_models_spikes(name, neuron, options, size):
    model = trained_looking(name, {"backend": "reference", **neuron}, **options).double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64) * 2
    want_logits, want = model_spikes(model, x)
    gm = step_graph(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gm.modules())  # every BatchNorm folded
    logits, spikes = run_steps(gm, x, model.timesteps, record=True)
    assert {k.removeprefix("model.") for k in spikes} == set(want)
    for k, s in spikes.items():
        assert torch.equal(s, want[k.removeprefix("model.")]), k
    assert torch.allclose(logits, want_logits, atol=1e-12)
    assert 0.02 < float(torch.cat([s.flatten() for s in spikes.values()]).mean()) < 0.9  # the spikes are not trivial


def test_frames_run_one_per_timestep():
    model = trained_looking("resnet_tiny", {"backend": "reference"}).double()
    frames = torch.randn(4, 2, 3, 16, 16, dtype=torch.float64)
    want, _ = model_spikes(model, frames)
    assert torch.allclose(run_steps(step_graph(model), frames, 4), want, atol=1e-12)


# -- NIR ------------------------------------------------------------------------------------------------

def interpret_nir(graph, x, timesteps, dt=1.0):
    """NIR's equations, from the graph alone: the inputs of a node are the sum of its edges; LIF
    ``tau dv/dt = (v_leak - v) + r I`` and IF ``dv/dt = r I`` by forward Euler with step ``dt``, a
    spike where ``v > v_threshold``, then ``v = v_reset``, in float64. Returns each neuron node's
    spikes and the output."""
    preds = defaultdict(list)
    for a, b in graph.edges:
        preds[b].append(a)
    order, done = [], set()
    while len(order) < len(graph.nodes):
        for name in graph.nodes:
            if name not in done and all(p in done for p in preds[name]):
                order.append(name)
                done.add(name)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    state, spikes, outputs = {}, defaultdict(list), []
    for _ in range(timesteps):
        values = {}
        for name in order:
            node, kind = graph.nodes[name], type(graph.nodes[name]).__name__
            i = x if kind == "Input" else sum(values[p] for p in preds[name])
            if kind == "Conv2d":
                out = F.conv2d(i, t(node.weight), t(node.bias), tuple(node.stride), tuple(node.padding),
                               tuple(node.dilation), node.groups)
            elif kind == "Affine":
                out = i @ t(node.weight).T + t(node.bias)
            elif kind == "AvgPool2d":
                out = F.avg_pool2d(i, tuple(node.kernel_size), tuple(node.stride), tuple(node.padding))
            elif kind == "Flatten":
                assert node.start_dim == 0 and node.end_dim == -1
                out = i.flatten(1)
            elif kind in ("LIF", "IF"):
                v = state.get(name, torch.zeros_like(i))
                if kind == "LIF":
                    v = v + (dt / t(node.tau)) * (t(node.v_leak) - v + t(node.r) * i)
                else:
                    v = v + dt * t(node.r) * i
                out = (v > t(node.v_threshold)).to(v.dtype)
                state[name] = torch.where(out > 0, t(getattr(node, "v_reset", 0.0)), v)  # nir < 1.0.5: reset to 0
                spikes[name].append(out)
            elif kind in ("Input", "Output"):
                out = i
            else:
                raise AssertionError(f"no rule for {kind}")
            values[name] = out
        outputs.append(values["output"])
    return {k: torch.stack(v) for k, v in spikes.items()}, torch.stack(outputs)


@pytest.mark.parametrize("name, size, neuron, dt", [
    ("resnet_tiny", 16, "lif", 1.0), ("vgg11", 48, "lif", 1.0), ("resnet_tiny", 16, "lif", 1e-4),
    ("resnet_tiny", 16, "if", 1.0), ("resnet_tiny", 16, "if", 1e-4)])
def test_nir_round_trips_and_nirs_equations_reproduce_the_spikes(tmp_path, name, size, neuron, dt):
    nir = pytest.importorskip("nir")
    from sakd.export.nir_format import to_nir, write_nir

    # float64 throughout: NIR's Euler step v + (v_leak - v + r·I)/tau rounds differently from
    # λ·v + I, and in float32 one membrane in a million can land on the other side of V_th
    model = trained_looking(name, {"name": neuron}).double()
    gm = step_graph(model)
    x = torch.randn(3, 3, size, size, dtype=torch.float64) * 2
    graph = to_nir(gm, x, dt=dt)
    back = nir.read(str(write_nir(graph, tmp_path / "m.nir")))
    assert set(back.nodes) == set(graph.nodes) and sorted(back.edges) == sorted(graph.edges)
    cell = back.nodes[next(k for k, v in back.nodes.items() if type(v).__name__ in ("LIF", "IF"))]
    assert type(cell).__name__ == neuron.upper()
    if neuron == "lif":  # λ = 0.5: tau = dt/(1 - λ), r = 1/(1 - λ)
        assert np.allclose(cell.tau, 2.0 * dt, rtol=1e-15) and np.all(cell.r == 2.0)
    else:  # dv/dt = r·I: r = 1/dt
        assert np.allclose(cell.r, 1.0 / dt, rtol=1e-15)
    assert np.all(cell.v_threshold < 1.0) and np.all(np.nextafter(cell.v_threshold, 2.0) == 1.0)  # V_th = 1
    logits, want = run_steps(gm, x, 4, record=True)
    got, outputs = interpret_nir(back, x, 4, dt=dt)
    assert len(got) == len(want) > 0
    for k, s in want.items():
        node = k.removeprefix("model.").replace(".", "_")
        assert torch.equal(got[node], s), node
    assert torch.allclose(outputs, logits, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nirs_threshold_fires_where_eq_2_does_at_the_threshold_itself(dtype):
    """Eq. 2 fires at H >= V_th, NIR at v > v_threshold: with the exported threshold a membrane
    exactly at V_th fires and the largest number below it does not, in the graph's dtype."""
    from sakd.neurons.base import nir_threshold

    for v_th in (1.0, 0.3, 2.5):
        exported = nir_threshold(v_th, dtype)
        at = np.asarray(v_th, dtype=dtype)
        below = np.nextafter(at, np.asarray(0, dtype=dtype))
        assert exported.dtype == dtype
        assert bool(at > exported) and bool(at >= at)  # fires at V_th, as eq. 2
        assert not bool(below > exported) and not bool(below >= at)  # and not just below it


def test_what_nir_cannot_express_is_named(tmp_path):
    pytest.importorskip("nir")
    from sakd.errors import ConfigError
    from sakd.export.nir_format import to_nir

    cases = [
        (trained_looking("resnet_tiny", stem="imagenet"), "NIR cannot express MaxPool2d"),
        (trained_looking("resnet_tiny", {"reset": "soft"}), "a soft reset (V - V_th) has no NIR form"),
        (trained_looking("sew_resnet18", connect="AND"), "NIR cannot express mul"),
    ]
    for model, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            to_nir(step_graph(model), torch.randn(1, 3, 32, 32))
    with pytest.raises(ConfigError, match=r"AdaptiveAvgPool2d from \(2, 2\) to \(3, 3\)"):
        to_nir(step_graph(trained_looking("vgg11")), torch.randn(1, 3, 32, 32))  # VGG's head grid at 32x32


# -- ONNX -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, options, frames", [
    ("resnet_tiny", {}, False), ("resnet_tiny", {}, True),
    ("resnet_tiny", {"stem": "imagenet"}, False),  # max pooling: ONNX has it, NIR has not
    ("sew_resnet18", {"connect": "AND"}, False),  # products of spikes, likewise
], ids=["images", "frames", "maxpool", "sew-and"])
def test_onnx_gives_the_pytorch_logits_in_onnxruntime(tmp_path, name, options, frames):
    pytest.importorskip("onnxruntime")
    from sakd.export.onnx_format import export_onnx, run_onnx

    model = trained_looking(name, **options)
    x = torch.randn(4, 5, 3, 16, 16) if frames else torch.randn(5, 3, 16, 16) * 2
    path = export_onnx(step_graph(model), x[:, :1] if frames else x[:1], 4, tmp_path / "m.onnx")
    with torch.no_grad():
        want = model(x).numpy()
    got = run_onnx(path, x)  # a batch of 5 through a graph exported with 1: the batch is dynamic
    assert got.shape == (5, 10) and np.abs(got - want).max() < 1e-5


def test_any_neuron_exports_to_onnx_and_nir_names_a_neuron_it_cannot_describe(tmp_path):
    """CONTRIBUTING's example neuron (registered outside the package, no one-step form, no NIR
    description) exports to ONNX, traced over its multi-step forward, and gives the PyTorch logits
    in onnxruntime; given a one-step form, it runs step by step with the model's own spikes and
    exports as the unrolled one-step graph; NIR names what it lacks."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("nir")
    from conftest import contributing_examples
    from sakd.errors import ConfigError
    from sakd.export.nir_format import export_nir
    from sakd.export.onnx_format import export_onnx_file
    from sakd.neurons import NEURONS

    contributing_examples()
    alif = NEURONS.get("alif")
    assert not alif(beta=0.3).has_step

    class SteppedALIF(alif):
        """the guide's ALIF with its one-step form (state: membrane and threshold adaptation)"""

        def step(self, x, state):
            v, a = state if state is not None else (torch.zeros_like(x), torch.zeros_like(x))
            h = self.decay * v + x
            s = (h - self.threshold - a >= 0).to(x.dtype)
            return s, (h * (1 - s), self.decay * a + self.beta * s)

    if "test_stepped_alif" not in NEURONS:
        NEURONS.register("test_stepped_alif")(SteppedALIF)
    x = torch.randn(5, 3, 16, 16) * 2
    for name, graph in (("alif", "multi-step forward traced"), ("test_stepped_alif", "one-step graph unrolled")):
        model = trained_looking("resnet_tiny", {"name": name, "options": {"beta": 0.3}}).float().eval()
        summary = export_onnx_file(model, x[:1], 4, tmp_path / f"{name}.onnx")
        assert summary["graph"] == graph and summary["onnxruntime_max_abs_diff"] < 1e-5, summary
        with pytest.raises(ConfigError, match="no one-step form" if name == "alif" else "no NIR description") as err:
            export_nir(model, x[:1], 4, tmp_path / f"{name}.nir")
        assert type(model.layer1[0].act1.neuron).__name__ in str(err.value)
    want_logits, want = model_spikes(model, x)  # the stepped ALIF: step by step as the model runs
    logits, spikes = run_steps(step_graph(model), x, 4, record=True)
    assert all(torch.equal(s, want[k.removeprefix("model.")]) for k, s in spikes.items())
    assert torch.allclose(logits, want_logits, atol=1e-5)


# -- the command ----------------------------------------------------------------------------------------

def test_export_command_and_its_errors(trio, tmp_path, capsys, monkeypatch):
    pytest.importorskip("nir")
    pytest.importorskip("onnxruntime")
    student = trio["student"]
    summary = tmp_path / "s.json"
    assert main(["export", student, "--format", "nir", "-o", str(tmp_path / "m.nir"), "--json", str(summary)]) == 0
    s = json.loads(summary.read_text())
    assert (
        s["read_back"]
        and s["node_types"]["LIF"] == 7
        and s["node_types"]["Conv2d"] == 9
        and s["input_shape"] == [1, 3, 16, 16]
    )
    assert main(["export", student, "--format", "onnx", "-o", str(tmp_path / "m.onnx"), "--json", str(summary)]) == 0
    s = json.loads(summary.read_text())
    assert s["onnxruntime_max_abs_diff"] < 1e-5 and s["same_prediction"]
    capsys.readouterr()

    def fails(args, message):
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err

    with pytest.raises(SystemExit) as stop:  # argparse's own check, before any work
        main(["export", student, "--format", "nir", "-o", str(tmp_path / "t.nir"), "--input-size", "0", "16"])
    assert stop.value.code == 2 and "argument --input-size: 0 is not positive" in capsys.readouterr().err
    fails(
        [trio["teacher"], "--format", "nir", "-o", str(tmp_path / "t.nir")],
        "holds an ANN (resnet_tiny); sakd export takes a spiking checkpoint",
    )
    fails([student, "--format", "tflite", "-o", str(tmp_path / "t.x")], "unknown export format 'tflite'")
    # a format's options are its exporter's keyword arguments: --option KEY=VALUE (NIR's --dt is one)
    assert main(["export", student, "--format", "nir", "-o", str(tmp_path / "o.nir"), "--option", "dt=0.001",
                 "--json", str(summary)]) == 0
    assert json.loads(summary.read_text())["dt"] == 0.001
    capsys.readouterr()
    fails([student, "--format", "onnx", "-o", str(tmp_path / "o.onnx"), "--dt", "1e-4"],
          "export format 'onnx' takes no option 'dt'; its options: none")
    ckpt = torch.load(f"{student}/last.pt", weights_only=True)
    ckpt["spec"]["neuron"]["reset"] = "soft"
    torch.save(ckpt, tmp_path / "soft.pt")
    (tmp_path / "keep.nir").write_text("an earlier export")
    fails([str(tmp_path / "soft.pt"), "--format", "nir", "-o", str(tmp_path / "keep.nir")], "soft reset")
    assert (tmp_path / "keep.nir").read_text() == "an earlier export"
    monkeypatch.setitem(sys.modules, "nir", None)
    fails(
        [student, "--format", "nir", "-o", str(tmp_path / "x.nir")], 'needs the nir package: pip install "sakd[export]"'
    )
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    fails(
        [student, "--format", "onnx", "-o", str(tmp_path / "x.onnx")],
        'needs onnx and onnxruntime: pip install "sakd[export]"',
    )
