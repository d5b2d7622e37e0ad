"""``sakd analyze``: exact synaptic-operation counts (by hand, against SpikingJelly's SynOpCounter
and PyTorch's FLOP counter), the energy arithmetic, and its errors."""

import json

import pytest
import torch
from torch import nn

from conftest import fresh_copy
from sakd.analysis.energy import OpCounter, energy_table
from sakd.cli import main
from sakd.models import create_model


def test_synaptic_operations_by_hand():
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    fc = nn.Linear(9, 4)
    model = nn.Sequential(conv, nn.Flatten(0), nn.Unflatten(0, (1, 18)), nn.Linear(18, 3))
    corner, centre = torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)
    corner[0, 0, 0, 0] = 1.0  # read by the 4 output positions whose 3x3 window holds it, in 2 channels
    centre[0, 0, 1, 1] = 1.0  # read by all 9 positions
    with OpCounter(model) as ops:
        model(corner)
        model(centre)
    first = ops.layers["0"]
    assert first.ops == 2 * 4 + 2 * 9 and first.binary and first.nonzero == 2 and first.inputs == 18
    # the ANN's rule is the SNN's with every input nonzero: the 3x3 windows of a padded 3x3 map hold
    # 4 (corners), 6 (edges) or 9 (centre) real inputs; 2 channels, two calls
    assert first.dense_macs == 2 * 2 * (4 * 4 + 4 * 6 + 9)
    assert first.padded_macs == 2 * (2 * 9 * 9)  # with padding: 2 channels x 9 positions x 9 taps
    with OpCounter(model) as ops:
        model(torch.ones(1, 1, 3, 3))
    assert ops.layers["0"].ops == ops.layers["0"].dense_macs  # one rule: a dense input uses every weight use
    with OpCounter(fc) as ops:
        fc(torch.tensor([[0.0, 1, 0, 1, 1, 0, 0, 0, 0], [0.5, 0, 0, 0, 0, 0, 0, 0, 0]]))
    rec = ops.layers[""]
    assert rec.ops == (3 + 1) * 4 and not rec.binary  # 0.5 is not a spike: the layer multiplies


def test_energy_arithmetic():
    from sakd.analysis.energy import LayerOps

    snn = {"a": LayerOps("conv", ops=100, binary=False), "b": LayerOps("conv", ops=1000, binary=True)}
    ann = {"a": LayerOps("conv", dense_macs=120), "b": LayerOps("conv", dense_macs=800)}
    t = energy_table(snn, ann, images=2, e_mac=4.6, e_ac=0.9)["total"]
    assert (t["snn_macs"], t["snn_acs"], t["ann_macs"]) == (50, 500, 460)
    assert t["snn_energy_pj"] == pytest.approx(4.6 * 50 + 0.9 * 500)
    assert t["energy_ratio"] == pytest.approx((4.6 * 50 + 0.9 * 500) / (4.6 * 460))


def _spiking_tiny():
    torch.manual_seed(0)
    model = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=4, neuron={"backend": "fused"}).eval()
    return model, torch.randn(3, 3, 16, 16) * 2


def test_spike_driven_counts_equal_spikingjellys_synop_counter():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    model, x = _spiking_tiny()
    with torch.no_grad(), OpCounter(model) as ours:
        model(x)
    counter = SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([counter]):
        model(x)
    spikes = sum(rec.ops for rec in ours.layers.values() if rec.binary)
    assert spikes > 0 and sum(rec.binary for rec in ours.layers.values()) >= 7
    assert spikes == counter.get_total()  # SpikingJelly counts exactly the spike-driven layers


def test_dense_ann_macs_equal_pytorchs_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    ann = create_model("resnet_tiny", spiking=False, num_classes=10).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad(), OpCounter(ann) as ours:
        ann(x)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        ann(x)
    assert 2 * sum(rec.padded_macs for rec in ours.layers.values()) == flops.get_total_flops()
    assert sum(rec.dense_macs for rec in ours.layers.values()) < sum(rec.padded_macs for rec in ours.layers.values())


def test_snn_and_ann_are_counted_by_one_rule():
    """An SNN whose every spiking layer fires everywhere uses every weight use the ANN twin does:
    ACs equal the ANN's MACs layer for layer (padding left out on both sides), so the ratio is
    E_AC / E_MAC for those layers."""
    torch.manual_seed(0)
    snn = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=1, neuron={"backend": "fused"}).eval()
    ann = create_model("resnet_tiny", spiking=False, num_classes=10).eval()
    for m in snn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.bias.data.fill_(10.0)  # every neuron fires at every position
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad(), OpCounter(snn) as s_ops, OpCounter(ann) as a_ops:
        snn(x), ann(x)
    table = energy_table(s_ops.layers, a_ops.layers, images=2)
    spiking = [n for n, r in s_ops.layers.items() if r.binary and r.kind == "conv"]
    assert len(spiking) >= 7
    for name in spiking:
        assert s_ops.layers[name].ops == a_ops.layers[name].dense_macs, name
        row = table["layers"][name]
        assert row["snn_energy_pj"] / row["ann_energy_pj"] == pytest.approx(0.9 / 4.6)


def test_event_frames_give_the_one_frame_ann_figure_beside_the_ratio():
    from sakd.analysis.energy import LayerOps

    snn, ann = {"a": LayerOps("conv", ops=400)}, {"a": LayerOps("conv", dense_macs=1000)}
    table = energy_table(snn, ann, images=1, frames=10)
    t = table["total"]
    assert t["energy_ratio"] == pytest.approx(0.9 * 400 / (4.6 * 1000))  # against the ANN on all frames
    assert t["ann_macs_per_frame"] == 100 and t["ann_energy_per_frame_pj"] == pytest.approx(460)
    assert "all 10 frames" in table["ratio_against"] and "padding" in table["counting"]


def test_analyze_a_checkpoint_and_its_errors(tmp_path, capsys, trio, teacher_ckpt):
    snn = fresh_copy(trio["baseline"], tmp_path)
    out = tmp_path / "analysis.json"
    assert main(["analyze", f"{snn}/last.pt", "--images", "40", "--json", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 40 and 0 < result["firing_rate"] < 1
    total, layers = result["total"], result["layers"]
    assert len(layers) == 10  # resnet_tiny: 9 convolutions and the classifier
    assert layers["conv1"]["input"] == "analog" and layers["layer1.0.conv1"]["input"] == "spikes"
    assert total["snn_acs"] == pytest.approx(sum(r["snn_acs"] for r in layers.values()))
    assert total["energy_ratio"] == pytest.approx(
        (0.9 * total["snn_acs"] + 4.6 * total["snn_macs"]) / (4.6 * total["ann_macs"])
    )
    ann = create_model("resnet_tiny", spiking=False, num_classes=10)
    with torch.no_grad(), OpCounter(ann) as dense:
        ann(torch.randn(1, 3, 16, 16))
    assert total["ann_macs"] == sum(rec.dense_macs for rec in dense.layers.values())
    assert "energy per image" in capsys.readouterr().out
    memory = result["energy_model"]  # beside it, the default model that counts memory traffic
    assert memory["model"] == "lemaire" and len(memory["layers"]) == 10 + 7  # and the 7 spiking layers
    by_layer = sum(r["snn"]["total_pj"] for r in memory["layers"].values())
    assert memory["total"]["snn_energy_pj"] == pytest.approx(by_layer)
    assert main(["analyze", f"{snn}/last.pt", "--images", "8", "--json", str(out), "--energy-model", "flat_memory",
                 "--energy-option", "e_byte=2"]) == 0
    flat = json.loads(out.read_text())["energy_model"]
    assert flat["options"] == {"e_mac": 4.6, "e_ac": 0.9, "e_byte": 2.0} and "with memory (flat_memory)" in (
        capsys.readouterr().out)
    assert main(["analyze", f"{snn}/last.pt", "--energy-model", "lemaire", "--energy-option", "e_byte=2"]) == 2
    assert "energy model 'lemaire' takes no option 'e_byte'" in capsys.readouterr().err

    from pathlib import Path

    from sakd.analysis.run_rows import energy_columns

    assert main(["analyze", snn, "--images", "40", "--device", "cpu"]) == 0  # a run folder keeps analysis.json
    assert energy_columns(Path(snn))["energy_ratio"] == pytest.approx(
        json.loads((Path(snn) / "analysis.json").read_text())["total"]["energy_ratio"]
    )
    stale = json.loads((Path(snn) / "analysis.json").read_text())
    del stale["cache_key"]["counting"]  # an analysis counted by the earlier rule is not shown
    (Path(snn) / "analysis.json").write_text(json.dumps(stale))
    assert energy_columns(Path(snn))["energy_ratio"] is None

    assert main(["analyze", teacher_ckpt]) == 2
    assert "holds an ANN (resnet_tiny); sakd analyze measures a spiking model" in capsys.readouterr().err
    assert main(["analyze", f"{snn}/last.pt", "--images", "100000"]) == 2
    assert "--images must lie in 1..256" in capsys.readouterr().err


def test_firing_rates_count_bfloat16_spikes_exactly():
    from sakd.neurons import FiringRateMonitor
    from sakd.neurons import NeuronSpec

    layer = torch.nn.Sequential(NeuronSpec().build())
    x = torch.full((1, 2, 1000), 2.0, dtype=torch.bfloat16)
    x[..., 0] = 0.0  # 999 of 1000 neurons fire in each sample (a bfloat16 sum would round 999 to 1000)
    with torch.no_grad(), FiringRateMonitor(layer) as rates:
        layer(x)
    assert rates.rates() == {"0": 999 / 1000}


def test_a_network_that_does_not_fire_is_warned_of_in_training_eval_and_analyze(tmp_path, capsys):
    """An SNN whose threshold nothing reaches: each epoch's line, ``sakd eval`` and ``sakd analyze``
    name the silent layers and the last one (the classifier's input); analyze's energy table says
    its figure is of a network that does not fire. A firing network gets no warning."""
    from conftest import fast_config
    from sakd.neurons import FiringRateMonitor
    from sakd.training import train

    run = train(fast_config(tmp_path, "optim.epochs=2", "model.neuron.threshold=1e6", "data.options={train_size: 64}",
                            "run.name=dead"))["run_dir"]
    err = capsys.readouterr().err
    assert err.count("warning") == 2 and "epoch 1: the SNN barely fires: mean firing rate 0.0000 < 0.01" in err
    assert "7 of 7 spiking layers gave no spike: act1.neuron, layer1.0.act1.neuron" in err
    assert "the last to run, layer3.0.act2.neuron, which feeds the classifier in most networks, gave none" in err
    assert main(["eval", f"{run}/last.pt", "--device", "cpu"]) == 0
    assert "warning: the SNN barely fires" in capsys.readouterr().out
    out = tmp_path / "analysis.json"
    assert main(["analyze", f"{run}/last.pt", "--images", "20", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "of a network that does not fire" in " ".join(printed.split()) and "not of a working SNN" in printed
    assert "layer3.0.act2.neuron, which feeds the classifier in most networks, gave none" in json.loads(
        out.read_text())["firing_warning"]

    torch.manual_seed(0)
    snn = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2).train()  # batch statistics
    with torch.no_grad(), FiringRateMonitor(snn) as monitor:
        snn(torch.randn(16, 3, 16, 16))
    assert monitor.silence(0.01) is None and monitor.order[-1] == "layer3.0.act2.neuron"
    assert "mean firing rate" in monitor.silence(1.0)  # the threshold is the config's
