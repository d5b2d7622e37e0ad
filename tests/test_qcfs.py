"""QCFS twins (Bu et al. 2022): the quantisation-clip-floor-shift activation of the ANN twin and the
integrate-and-fire neuron of its SNN twin (soft reset, threshold θ, membrane from θ/2), by hand, in
every backend, and through whole networks, zoo and graph twins alike."""

import pytest
import torch
from torch import nn

from sakd.models import create_model
from sakd.neurons import FiringRateMonitor
from sakd.neurons.qcfs import QCFS, QCFSActivation

X = torch.tensor([0.75, 0.0, 0.3, 1.9, 2.5, -1.0, 1.0, 0.25])


def test_the_activation_by_hand():
    """θ = 2, L = 4: θ·floor(clamp(x/θ, 0, 1)·4 + 0.5)/4, e.g. 0.75 -> floor(1.5 + 0.5)/4·2 = 1."""
    act = QCFSActivation(levels=4, theta=2.0)
    assert act(X).tolist() == [1.0, 0.0, 0.5, 2.0, 2.0, 0.0, 1.0, 0.5]
    x = X.clone().requires_grad_()
    act(x).sum().backward()
    # straight through the floor: dy/dx = 1 inside the clip (0 < x < θ), 0 outside
    assert x.grad.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert act.theta.grad is not None and act.theta.grad != 0


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_a_constant_input_over_t_equal_l_timesteps_gives_the_activation_exactly(backend):
    """0.75 with θ = 2 (0.375 a step, from 0.5): 0.875, 1.25 -> spike, 0.625, 1.0 -> spike: 2
    spikes of 2 in 4 steps = 1.0, the activation's value; and so for every input."""
    neuron = QCFS(levels=4, theta=2.0, backend=backend)
    x = X.expand(4, 1, -1).contiguous()
    out = neuron(x)
    assert out[:, 0, 0].tolist() == [0.0, 2.0, 0.0, 2.0]
    assert torch.equal(out.mean(0)[0], QCFSActivation(4, 2.0)(X))
    state, steps = None, []
    for t in range(4):  # one timestep at a time (export, SLTT): the same spikes
        s, state = neuron.step(x[t], state)
        steps.append(s)
    assert torch.equal(torch.stack(steps), out)
    g = x.clone().requires_grad_()
    neuron(g).sum().backward()  # surrogate gradients reach the input and the threshold
    assert g.grad.abs().sum() > 0 and neuron.theta.grad is not None


def _calibrated(name: str, **kw):
    torch.manual_seed(0)
    neuron = {"name": "qcfs", "backend": "fused", "options": {"levels": 8, "theta": 2.0}}
    ann = create_model(name, spiking=False, num_classes=10, neuron=neuron, **kw)
    with torch.no_grad():
        ann.train()
        for _ in range(3):  # BatchNorm statistics, so the activations reach θ's range
            ann(torch.randn(64, 3, 16, 16))
    return ann.eval(), neuron


@pytest.mark.parametrize("name, kw", [("resnet_tiny", {}),
                                      ("python:sakd.examples.own_cnn:own_cnn", {"widths": [8, 16, 32]})])
def test_a_qcfs_twins_weights_and_thresholds_copy_and_the_snn_approaches_the_ann_as_t_grows(name, kw):
    """The converted SNN's logits come closer to the QCFS ANN's from T = 1 to T = L (8), by half
    at least, and stay closer at 8L; beyond L the SNN tends to the unquantised clip, so the
    difference settles at the ANN's quantisation error rather than vanishing."""
    ann, neuron = _calibrated(name, **kw)
    thetas = [k for k in ann.state_dict() if k.endswith("neuron.theta")]
    assert thetas
    x = torch.randn(16, 3, 16, 16)
    errors = []
    with torch.no_grad():
        reference = ann(x)
        for t in (1, 8, 64):
            snn = create_model(name, spiking=True, num_classes=10, timesteps=t, neuron=neuron, **kw).eval()
            assert set(snn.state_dict()) == set(ann.state_dict())  # θ under the same names in both twins
            snn.load_state_dict(ann.state_dict())
            errors.append(float((snn(x) - reference).abs().mean() / reference.abs().mean()))
    assert errors[1] < 0.5 * errors[0] and errors[2] < errors[0]


def test_the_firing_rate_of_graded_spikes_counts_the_neurons_that_fire():
    neuron = nn.Sequential(QCFS(levels=4, theta=2.0, backend="fused"))
    with FiringRateMonitor(neuron) as monitor:
        neuron(X.expand(4, 1, -1).contiguous())
    # 0.75 fires twice, 1.9 and 2.5 four times, 0.3 once, 1.0 twice, 0.25 once: 14 of 32
    assert monitor.rates()["0"] == pytest.approx(14 / 32)


def _peer_pair(timesteps: int):
    """A small ReLU CNN (no BatchNorm: SpikingJelly folds it, which rounds otherwise) as sakd's
    graph twins: the ANN and its SNN with QCFS neurons from 0 (SpikingJelly's plain IF)."""
    from sakd.models.graph_twin import GraphTwin
    from sakd.neurons import NeuronSpec

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    twin = dict(source="peer", timesteps=timesteps, in_channels=3, num_classes=10, image_size=8)
    ann = GraphTwin(net, spiking=False, neuron=None, **twin).eval()
    snn = GraphTwin(net, spiking=True, neuron=NeuronSpec(name="qcfs", backend="fused", options={"start": 0.0}),
                    **twin).eval()
    return net.eval(), ann, snn


@pytest.mark.parametrize("mode", ["max", "99.9%"])
def test_max_and_percentile_conversion_equal_spikingjellys_converter(mode):
    """SpikingJelly 2.0's ``ann2snn.Converter`` with ``RateCodingRecipe`` (one calibration batch,
    so its running scale is the batch's own): the same thresholds and, over T = 16 timesteps, the
    same mean logits."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import ann2snn, functional
    from torch.utils.data import DataLoader, TensorDataset

    from sakd.training.conversion import convert_model

    net, ann, snn = _peer_pair(16)
    x = torch.rand(32, 3, 8, 8) * 2
    loader = DataLoader(TensorDataset(x, torch.zeros(32)), batch_size=32)
    thresholds = convert_model(ann, snn, loader, None if mode == "max" else 99.9)
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode=mode)
    theirs = ann2snn.Converter(recipe=recipe, device="cpu").convert(net).eval()
    scales = [float(m.scale) for name, m in theirs.named_modules() if name.endswith("scaler1")]  # x λ after IF
    assert sorted(thresholds.values()) == sorted(scales)
    functional.reset_net(theirs)
    with torch.no_grad():
        expected = sum(theirs(x) for _ in range(16)) / 16
        assert torch.allclose(snn(x), expected, atol=1e-6)  # the same spikes; the sums' order rounds


def test_a_qcfs_ann_converts_as_it_is_and_a_relu_ann_by_its_activations_from_the_cli(tmp_path, capsys):
    """`sakd convert` writes an SNN checkpoint that `sakd eval` reads; the hand case: a ReLU site
    whose largest output is 3 gets threshold 3. Bad input is one line, exit 2."""
    import json

    from sakd.cli import main
    from conftest import fast_config
    from sakd.training import train

    relu = train(fast_config(tmp_path, "model.spiking=false", "optim.epochs=1", "run.name=relu"))["run_dir"]
    qcfs = train(fast_config(tmp_path, "model.spiking=false", "optim.epochs=1", "run.name=qcfs",
                             "model.neuron={name: qcfs, options: {levels: 4, theta: 2.0}}"))["run_dir"]
    out = tmp_path / "max.pt"
    assert main(["convert", relu, "--method", "max", "--timesteps", "8", "-o", str(out), "--images", "16",
                 "--json", str(tmp_path / "max.json")]) == 0
    done = json.loads((tmp_path / "max.json").read_text())
    assert done["start"] == 0.0 and done["calibration"] == {"images": 16} and len(done["thresholds"]) == 7
    assert main(["eval", str(out)]) == 0 and "T=8" in capsys.readouterr().out
    # per channel: one threshold per channel, the largest of them the layer's; the checkpoint reads back
    assert main(["convert", relu, "--method", "max", "--per-channel", "--timesteps", "8", "-o",
                 str(tmp_path / "ch.pt"), "--images", "16", "--json", str(tmp_path / "ch.json")]) == 0
    channels = json.loads((tmp_path / "ch.json").read_text())["thresholds"]
    for site, theta in channels.items():
        assert len(theta) > 1 and max(theta) == pytest.approx(done["thresholds"][site], rel=1e-6)
    assert main(["eval", str(tmp_path / "ch.pt")]) == 0 and "T=8" in capsys.readouterr().out
    assert main(["convert", relu, "--method", "percentile", "--per-channel", "--timesteps", "4", "-o",
                 str(tmp_path / "pc.pt"), "--images", "16"]) == 0
    shown = json.loads(capsys.readouterr().out)["thresholds"]  # per channel: each site's range on the screen
    assert all(v["min"] <= v["max"] <= max(channels[k]) and v["channels"] == len(channels[k]) for k, v in shown.items())
    tuned = train(fast_config(tmp_path, "optim.epochs=1", "run.name=tuned", f"model.init={tmp_path / 'ch.pt'}",
                              "model.timesteps=8", "model.neuron={name: qcfs, options: {theta: 1.0, start: 0.0}}"))
    thetas = {k: v for k, v in torch.load(f"{tuned['run_dir']}/last.pt", weights_only=False)["model"].items()
              if k.endswith("theta")}
    start = torch.load(tmp_path / "ch.pt", weights_only=False)["model"]
    assert all(v.shape == start[k].shape and v.numel() > 1 and not torch.equal(v, start[k]) for k, v in thetas.items())
    assert main(["convert", qcfs, "--method", "qcfs", "--timesteps", "4", "-o", str(tmp_path / "q.pt")]) == 0
    ann_state = torch.load(f"{qcfs}/last.pt", weights_only=False)["model"]
    snn_state = torch.load(tmp_path / "q.pt", weights_only=False)["model"]
    assert all(torch.equal(ann_state[k], snn_state[k]) for k in ann_state)  # the QCFS ANN is its SNN's weights
    # conversion-initialised SAKD: the converted SNN as the student's start, the QCFS ANN as its teacher;
    # what the student starts from is kept in the run's checkpoints
    student = train(fast_config(tmp_path, "optim.epochs=1", "run.name=student", f"model.init={tmp_path / 'q.pt'}",
                                f"distill.teacher.weights={qcfs}/last.pt", "distill.gamma=1.0",
                                "model.neuron={name: qcfs, options: {levels: 4, theta: 2.0}}"))["run_dir"]
    start = torch.load(f"{student}/last.pt", weights_only=False)["initialised"]
    assert start["conversion"]["method"] == "qcfs" and start["start"] == 0.5
    assert start["thresholds"] == torch.load(tmp_path / "q.pt", weights_only=False)["conversion"]["thresholds"]
    for args, said in [([relu, "--method", "qcfs"], "is a ReLU ANN"), ([qcfs, "--method", "max"], "with --method qcfs"),
                       ([str(out), "--method", "max"], "holds an SNN"), ([relu, "--method", "max", "--images", "99999"],
                                                                          "--images must lie in"),
                       ([qcfs, "--method", "qcfs", "--per-channel"], "a QCFS ANN's are learned")]:
        assert main(["convert", *args, "--timesteps", "4", "-o", str(tmp_path / "x.pt")]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    with pytest.raises(SystemExit) as stop:
        main(["convert", relu, "--method", "max", "--timesteps", "0", "-o", str(tmp_path / "x.pt")])
    assert stop.value.code == 2 and "--timesteps: 0 is not positive" in capsys.readouterr().err
    # a conversion recipe (the CIFAR ones' form): model.init the ANN, model.timesteps T, its convert
    # section; key=value overrides; written to RUN_DIR/snn-T<T>.pt; `sakd train` refuses it
    recipe = tmp_path / "convert.yaml"
    recipe.write_text(f"model: {{spiking: true, timesteps: 4, init: {qcfs}/last.pt}}\nconvert: {{method: qcfs}}\n"
                      f"run: {{name: conv, output_dir: {tmp_path}}}\n")
    assert main(["convert", "--config", str(recipe), "model.timesteps=2"]) == 0
    made = torch.load(tmp_path / "conv" / "snn-T2.pt", weights_only=False)
    assert made["conversion"]["method"] == "qcfs" and made["spec"]["timesteps"] == 2
    assert all(torch.equal(ann_state[k], made["model"][k]) for k in ann_state)
    assert main(["train", "--config", str(recipe)]) == 2 and "is a conversion recipe" in capsys.readouterr().err
    for extra, said in [(["convert.method=null"], "sets no convert.method"), (["model.init=null"], "model.init must"),
                        (["convert.images=0"], "convert.images"), (["data.root=x"], "reads only model.init"),
                        ([str(out)], "give a checkpoint or --config, not both")]:
        assert main(["convert", "--config", str(recipe), *extra]) == 2 and said in capsys.readouterr().err
    # a recipe's per_channel, and a flag that turns it off again
    recipe.write_text(f"model: {{spiking: true, timesteps: 2, init: {relu}/last.pt}}\n"
                      "convert: {method: max, per_channel: true, images: 8}\n"
                      f"run: {{name: ch, output_dir: {tmp_path}}}\n")
    assert main(["convert", "--config", str(recipe)]) == 0
    assert all(isinstance(v, list) for v in torch.load(tmp_path / "ch" / "snn-T2.pt", weights_only=False)
               ["conversion"]["thresholds"].values())
    assert main(["convert", "--config", str(recipe), "--no-per-channel", "-o", str(tmp_path / "layer.pt")]) == 0
    assert all(isinstance(v, float) for v in torch.load(tmp_path / "layer.pt", weights_only=False)
               ["conversion"]["thresholds"].values())


def test_the_packaged_conversion_recipes_chain_ann_convert_sakd():
    """Each CIFAR QCFS recipe family: the conversion reads its ANN recipe's best.pt at T=4 into its
    run folder, and the SAKD recipe starts from that file with the ANN as its teacher."""
    import argparse

    from sakd.cli.convert import Convert
    from sakd.training import load_config

    names = [f"{d}/{m}_qcfs" for d in ("cifar10", "cifar100") for m in ("vgg16", "resnet18")]
    for name in names:
        ann, sakd = load_config(f"{name}_ann"), load_config(f"{name}_sakd")
        args = argparse.Namespace(config=f"{name}_convert", checkpoint=None, overrides=[], method=None, timesteps=None,
                                  out=None, images=None, percentile=None, start=None, per_channel=None)
        todo = Convert().settings(args)
        best = f"{ann.run.output_dir}/{ann.run.name}/best.pt"
        assert todo["checkpoint"] == best and todo["method"] == "qcfs" and todo["timesteps"] == 4
        assert sakd.model.init == todo["out"] and sakd.distill.teacher.weights == best
        assert sakd.model.neuron == ann.model.neuron and not ann.model.spiking and sakd.model.spiking


def test_a_sites_threshold_is_its_largest_output_by_hand():
    from sakd.training.conversion import calibrate

    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    batches = [(torch.tensor([[3.0, 1.0], [-2.0, -0.5]]), None), (torch.tensor([[1.0, -1.0]]), None)]
    # ReLU outputs: [3, 0], [0, 0.5], [1, 1]: the largest is 3; their 50th percentile (6 values, zeros
    # included: 0, 0, 0.5, 1, 1, 3) interpolates 0.5 and 1 halfway
    assert calibrate(net, ["1"], batches, None) == {"1": 3.0}
    assert calibrate(net, ["1"], batches, 50.0) == {"1": 0.75}
    # per channel: channel 0's outputs 3, 0, 1; channel 1's 0, 0.5, 1 (median 0.5)
    assert calibrate(net, ["1"], batches, None, per_channel=True)["1"].tolist() == [3.0, 1.0]
    assert calibrate(net, ["1"], batches, 50.0, per_channel=True)["1"].tolist() == [1.0, 0.5]
    with torch.no_grad():
        net[0].weight[1] = 0.0  # a channel that never fires takes its layer's scale
    assert calibrate(net, ["1"], batches, None, per_channel=True)["1"].tolist() == [3.0, 3.0]
    # a channel that fires on fewer than the percentile's share of values: its largest output, not 0
    with torch.no_grad():
        net[0].weight[1] = torch.tensor([0.0, -1.0])
    assert calibrate(net, ["1"], [(torch.tensor([[1.0, 0.0]] * 9 + [[2.0, -4.0]]), None)], 50.0,
                     per_channel=True)["1"].tolist() == [1.0, 4.0]


def test_per_channel_thresholds_by_hand_and_loaded_into_a_scalar_threshold_in_place():
    """θ = [1, 2] over the channels of [T, B, C, H, W]: constant inputs at half of each channel's θ
    give that input exactly at T = 2 (membrane from θ/2); the ANN twin clips each channel at its own
    θ; a module built with a scalar θ takes a loaded per-channel one without a new parameter."""
    neuron = QCFS(levels=2)
    neuron.load_state_dict({"theta": torch.tensor([1.0, 2.0])})
    x = torch.tensor([0.5, 1.0]).reshape(1, 1, 2, 1, 1).expand(2, 3, 2, 4, 4)
    assert torch.equal(neuron(x).mean(0), x[0])
    state, steps = None, []
    for t in range(2):
        out, state = neuron.step(x[t], state)
        steps.append(out)
    assert torch.equal(torch.stack(steps), neuron(x))
    ann = neuron.ann_twin()
    assert torch.equal(ann(torch.tensor([[5.0, 5.0]])), torch.tensor([[1.0, 2.0]]))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the input's dtype, as a scalar θ keeps it
        assert neuron(x.bfloat16()).dtype == torch.bfloat16 and ann(torch.ones(1, 2).bfloat16()).dtype == torch.bfloat16
    scalar = QCFS()
    scalar.load_state_dict({"theta": torch.tensor([3.0])})  # the authors' [1]-shaped θ: a scalar, as torch loads it
    assert scalar.theta.shape == () and scalar.theta.item() == 3.0
    held = QCFSActivation()
    before = held.theta
    held.load_state_dict({"theta": torch.tensor([1.0, 2.0])})
    assert held.theta is before and held.theta.shape == (2,)
    with pytest.raises(ValueError, match="2 per-channel thresholds do not fit"):
        neuron(torch.ones(2, 1, 3))


def test_a_percentile_past_torch_quantiles_size_limit_is_torch_quantiles_formula():
    from sakd.training.conversion import quantile

    values = torch.rand(1001, dtype=torch.float64)
    for q in (0.0, 0.5, 0.999, 1.0):
        assert quantile(values, q, limit=10) == pytest.approx(float(torch.quantile(values, q)), abs=1e-15)
