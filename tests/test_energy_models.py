"""Energy models that count memory traffic (``sakd analyze --energy-model``): every component by
hand on a tiny network, and equal to SpikingJelly 2.0's own profilers (``LemaireEnergyProfiler``,
``NeuromorphicMemoryAccessCounter``) on the same network and spikes."""

import warnings

import pytest
import torch
from torch import nn

from sakd.analysis.energy import OpCounter, energy_table
from sakd.analysis.energy_models import ENERGY_MODELS, estimate
from sakd.analysis.energy_models.lemaire import sram_pj_per_byte
from sakd.errors import ConfigError
from sakd.neurons.lif import LIF


class Stack(nn.Module):
    """Synaptic layers on time-folded ``[T*B, ...]`` inputs, each (but the last) followed by sakd's
    LIF on ``[T, B, ...]``: the shape of sakd's spiking models."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.neurons = nn.ModuleList(LIF(backend="reference") for _ in layers[:-1])

    def forward(self, x):  # [T, B, ...]
        t = x.shape[0]
        for i, layer in enumerate(self.layers):
            x = layer(x.flatten(0, 1))
            if i < len(self.neurons):
                x = self.neurons[i](x.unflatten(0, (t, -1)))
                x = x.flatten(2) if isinstance(self.layers[i + 1], nn.Linear) else x
        return x


def _hand_net():
    fc = nn.Linear(3, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 0, 0.5]]))
        fc.bias.zero_()
    return Stack(fc, nn.Identity())


def test_lemaire_and_flat_memory_by_hand():
    """Spikes [1,0,1] then [0,0,1] into a 3->2 linear layer with bias, then LIF (λ = 0.5): currents
    [1, 0.5] then [0, 0.5]; one spike (neuron 0 at t=0). Every figure below is worked out by hand."""
    net = _hand_net()
    x = torch.tensor([[[1.0, 0, 1]], [[0.0, 0, 1]]])  # [T=2, B=1, 3]
    with torch.no_grad(), OpCounter(net) as snn:
        net(x)
    ann_net = nn.ModuleDict({"layers": nn.ModuleList([nn.Linear(3, 2)])})  # the ANN twin: its layer's name
    with torch.no_grad(), OpCounter(ann_net) as ann:
        ann_net["layers"][0](x.flatten(0, 1))  # on the same two inputs
    assert snn.neurons["neurons.0"].spikes == 1 and snn.neurons["neurons.0"].neuron_steps == 4
    cost = lambda size: 2.5 * size / 8192  # noqa: E731  pJ per byte below 8 KiB: 10 pJ per 4-byte word at 8 KiB
    fifo = cost(4000)  # 1000 words
    m = estimate("lemaire", snn.layers, snn.neurons, ann.layers, images=1)
    fc, lif = m["layers"]["layers.0"]["snn"]["pj"], m["layers"]["neurons.0"]["snn"]["pj"]
    # 3 input spikes x 2 synapses = 6 accumulates, 4 bias additions (2 outputs x 2 timesteps)
    assert fc["ops"] == pytest.approx(0.1 * (6 + 4))
    assert fc["addressing"] == pytest.approx(0.1 * 6)  # a linear layer: one addition per synapse reached
    assert fc["inputs"] == pytest.approx(3 * 4 * fifo)  # each spike read from the FIFO
    assert fc["potentials"] == pytest.approx(2 * 6 * 4 * cost(2 * 4))  # read + write per event, 2 potentials
    assert fc["weights"] == pytest.approx((6 + 4) * 4 * cost(8 * 4))  # 6 weights + 4 bias reads; 8 parameters
    # LIF: 4 neuron-timesteps: a leak multiply-add each, an addition per spike, read + write each
    assert lif["ops"] == pytest.approx(0.1 * 1 + 3.2 * 4)
    assert lif["potentials"] == pytest.approx(2 * 4 * 4 * cost(2 * 4))
    assert lif["outputs"] == pytest.approx(1 * 4 * fifo)  # the spike written to the next FIFO
    # the ANN: 12 MACs (2 inputs x 3 x 2), bias 4, addressing per input and output element,
    # each input read per use... of a linear layer: once; each output written once
    a = m["layers"]["layers.0"]["ann"]["pj"]
    assert a["ops"] == pytest.approx(0.1 * 4 + 3.2 * 12)
    assert a["addressing"] == pytest.approx(0.1 * (6 + 4))
    assert a["inputs"] == pytest.approx(6 * 4 * cost(3 * 4))
    assert a["outputs"] == pytest.approx(4 * 4 * cost(2 * 4))
    assert a["weights"] == pytest.approx((12 + 4) * 4 * cost(8 * 4))
    assert m["total"]["snn_energy_pj"] == pytest.approx(sum(fc.values()) + sum(lif.values()))
    assert m["total"]["energy_ratio"] == pytest.approx(m["total"]["snn_energy_pj"] / sum(a.values()))

    f = estimate("flat_memory", snn.layers, snn.neurons, ann.layers, images=1)
    assert f["layers"]["layers.0"]["snn"]["pj"] == pytest.approx({"ops": 0.9 * 6, "weights": 24.96 * 4 * (6 + 4)})
    assert f["layers"]["neurons.0"]["snn"]["bytes"] == {"potentials": 2 * 4 * 4}
    assert f["layers"]["layers.0"]["ann"]["pj"] == pytest.approx({"ops": 4.6 * 12, "weights": 24.96 * 4 * (12 + 4)})
    # the operations-only model is the first table's figure
    o = estimate("ops", snn.layers, snn.neurons, ann.layers, images=1)["total"]
    t = energy_table(snn.layers, ann.layers, 1)["total"]
    assert (o["snn_energy_pj"], o["ann_energy_pj"]) == pytest.approx((t["snn_energy_pj"], t["ann_energy_pj"]))


def test_a_silent_layer_costs_its_bias_only_and_a_graded_input_is_priced_dense():
    """Lemaire: a layer whose spike input is all zeros reads nothing and adds only its bias; a
    layer of an SNN whose input is not spikes (here 2 and 3 among zeros) is priced as a dense one,
    every weight use, zeros included, as the ANN's (SpikingJelly's reading)."""
    from sakd.analysis.energy import LayerOps

    silent = LayerOps("linear", calls=1, dense_macs=4000 * 2, ops=0, nonzero=0, inputs=4000, binary=True, samples=1,
                      outputs=2, bias=True, params=8002, input_size=4000, output_size=2)
    m = estimate("lemaire", {"fc": silent}, {}, {}, images=1)["layers"]["fc"]["snn"]
    assert m["pj"] == pytest.approx({"ops": 0.1 * 2, "inputs": 0, "potentials": 0,
                                     "weights": 2 * 4 * sram_pj_per_byte(8002 * 4), "addressing": 0})
    fc = nn.Linear(4, 3)
    with torch.no_grad(), OpCounter(fc) as counted:
        fc(torch.tensor([[2.0, 0, 0, 0], [0, 0, 0, 3]]))
    graded = counted.layers[""]
    assert not graded.binary and graded.ops == 2 * 3 and graded.dense_macs == 8 * 3
    for name in ("lemaire", "flat_memory"):
        priced = estimate(name, {"fc": graded}, {}, {"fc": graded}, images=2)["layers"]["fc"]
        assert priced["snn"] == priced["ann"] or name == "lemaire"  # the ANN also writes its outputs
        assert priced["snn"]["bytes"]["weights"] == (24 + 6) * 4 / 2  # every weight use and the bias, per image


def test_sram_cost_interpolates_horowitzs_points_and_options_are_checked():
    assert [sram_pj_per_byte(s) for s in (0, 4096, 8192, 32768, 1 << 20, 1 << 30)] == pytest.approx(
        [0, 1.25, 2.5, 5, 25, 25])
    assert sram_pj_per_byte(20480) == pytest.approx(3.75)  # halfway between 8 and 32 KiB
    assert {"ops", "flat_memory", "lemaire"} <= set(ENERGY_MODELS.names())
    with pytest.raises(ConfigError, match="takes no option 'e_byte'; its options: e_add=0.1, e_mul=3.1, fifo=1000"):
        estimate("lemaire", {}, {}, {}, 1, {"e_byte": 1})
    for bad in ("big", 1.5, 0, float("inf")):
        with pytest.raises(ConfigError, match="option fifo must be a whole number >= 1"):
            estimate("lemaire", {}, {}, {}, 1, {"fifo": bad})
    with pytest.raises(ConfigError, match="option e_add must be a finite number >= 0, got nan"):
        estimate("lemaire", {}, {}, {}, 1, {"e_add": float("nan")})
    assert estimate("lemaire", {}, {}, {}, 1, {"fifo": 64.0})["options"]["fifo"] == 64
    with pytest.raises(ConfigError, match="unknown energy model 'lemair'.*Did you mean 'lemaire'"):
        estimate("lemair", {}, {}, {}, 1)


def _peer_nets(kernel: int, padding: int):
    """sakd's stack and SpikingJelly's multi-step twin (LIFNode with τ = 2, no input decay, hard
    reset to 0: sakd's LIF with λ = 0.5), same weights; and the ANN of the same layers."""
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(0)
    ours = Stack(nn.Conv2d(2, 4, 1), nn.Conv2d(4, 6, kernel, padding=padding), nn.Linear(6 * 5 * 5, 7, bias=False),
                 nn.Linear(7, 3))
    with torch.no_grad():
        for m in ours.layers:
            m.weight.mul_(2.5)
    lif = lambda: neuron.LIFNode(tau=2.0, decay_input=False, v_reset=0.0, step_mode="m")  # noqa: E731
    theirs = nn.Sequential(layer.Conv2d(2, 4, 1, step_mode="m"), lif(),
                           layer.Conv2d(4, 6, kernel, padding=padding, step_mode="m"), lif(),
                           layer.Flatten(step_mode="m"), layer.Linear(6 * 5 * 5, 7, bias=False,
                                                                                  step_mode="m"), lif(),
                           layer.Linear(7, 3, step_mode="m"))
    ann = nn.Sequential(nn.Conv2d(2, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, kernel, padding=padding), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 5 * 5, 7, bias=False), nn.ReLU(), nn.Linear(7, 3))
    for src, dst in zip(ours.layers, [theirs[0], theirs[2], theirs[5], theirs[7]]):
        dst.load_state_dict(src.state_dict())
    for src, dst in zip(ours.layers, [ann[0], ann[2], ann[5], ann[7]]):
        dst.load_state_dict(src.state_dict())
    del sj
    return ours, theirs, ann


def test_lemaire_equals_spikingjellys_profiler_on_the_same_spikes():
    """Every count and energy of SpikingJelly 2.0's ``LemaireEnergyProfiler`` (batch 1, T = 4), SNN
    and ANN, on 1x1 convolutions and linear layers (where its k^2 fan-out is exact)."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.op_counter import (LemaireEnergyConfig, LemaireEnergyProfiler,
                                                          estimate_lemaire_energy)

    lenient = LemaireEnergyConfig(strict=False)  # Flatten and ReLU cost nothing there, and here

    ours, theirs, ann = _peer_nets(kernel=1, padding=0)
    x = torch.rand(1, 2, 5, 5) * 2
    x[x < 0.5] = 0  # an image layer with zeros among its inputs: priced dense on both sides
    xt = x.unsqueeze(0).repeat(4, 1, 1, 1, 1)  # [T, B, ...]: the image at every timestep
    with torch.no_grad(), OpCounter(ours) as snn:
        out = ours(xt)
    with torch.no_grad(), OpCounter(ann) as dense:
        ann(x)
    # timestep by timestep (single-step mode), as one sample at a time is the paper's setting: a
    # memory holds one sample's timestep (a multi-step call would size it by all T)
    functional.set_step_mode(theirs, "s")
    profiler = LemaireEnergyProfiler(config=lenient)
    profiler.bind_model(theirs)
    with pytest.warns(RuntimeWarning, match="Flatten"), profiler, torch.no_grad():
        steps = torch.stack([theirs(frame) for frame in xt])
    report = profiler.get_report()
    functional.reset_net(theirs)
    assert torch.equal(steps.flatten(0, 1), out)  # the same spikes, layer by layer
    assert sum(n.spikes for n in snn.neurons.values()) > 10
    m = estimate("lemaire", snn.layers, snn.neurons, dense.layers, images=1)["total"]["snn"]
    counts = report.counts
    assert m["bytes"]["inputs"] == counts["read_in_bytes"]
    assert m["bytes"]["outputs"] == counts["write_out_bytes"]
    assert m["bytes"]["weights"] == counts["read_params_bytes"]
    assert m["bytes"]["potentials"] == counts["read_potential_bytes"] + counts["write_potential_bytes"]
    b = report.breakdown_pj
    assert m["pj"]["ops"] == pytest.approx(b["ops_pj"])
    assert m["pj"]["addressing"] == pytest.approx(b["addressing_pj"])
    assert m["pj"]["weights"] == pytest.approx(b["params_pj"])
    assert m["pj"]["potentials"] == pytest.approx(b["potential_pj"])
    assert m["pj"]["inputs"] + m["pj"]["outputs"] == pytest.approx(b["inout_pj"])
    assert m["total_pj"] == pytest.approx(report.total_pj)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        theirs_ann = estimate_lemaire_energy(ann, x, config=lenient)
    assert {str(w.message).split()[5] for w in said} == {"ReLU;", "Flatten;"}
    a = estimate("lemaire", {}, {}, dense.layers, images=1)["total"]["ann"]
    assert a["total_pj"] == pytest.approx(theirs_ann.total_pj)
    assert a["bytes"]["outputs"] == theirs_ann.counts["write_out_bytes"]


def test_flat_memory_traffic_equals_spikingjellys_counter_with_padding_and_borders():
    """SpikingJelly 2.0's ``NeuromorphicMemoryAccessCounter`` (its simple model's memory) counts
    the weights a spike reaches exactly, borders and padding included, as sakd does: equal bytes
    on a padded 3x3 convolution fed by spikes."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.op_counter import ModuleCounterMode, NeuromorphicMemoryAccessCounter

    ours, theirs, ann = _peer_nets(kernel=3, padding=1)
    xt = (torch.rand(1, 2, 5, 5) * 2).unsqueeze(0).repeat(4, 1, 1, 1, 1)
    with torch.no_grad(), OpCounter(ours) as snn:
        ours(xt)
    counter = NeuromorphicMemoryAccessCounter()
    with torch.no_grad(), ModuleCounterMode([counter], model=theirs):
        theirs(xt)
    functional.reset_net(theirs)
    sj = counter.get_counts()["Global"]
    m = estimate("flat_memory", snn.layers, snn.neurons, {}, images=1)["total"]["snn"]["bytes"]
    assert m["weights"] == sj["weight_read_bytes"] + sj["bias_read_bytes"]
    assert m["potentials"] == sj["neuron_state_read_bytes"] + sj["neuron_state_write_bytes"]
    assert snn.layers["layers.1"].binary and 0 < snn.layers["layers.1"].ops < snn.layers["layers.1"].dense_macs
