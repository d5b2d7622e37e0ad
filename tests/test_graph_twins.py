"""Spiking twins of networks from elsewhere (torchvision, timm, a user's own module) by torch.fx:
the ANN twin computes what the network computes, the SNN twin has its state dict, trains, keeps
lean memory's promise, exports and is analysed."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sakd.distill import SAKDLoss
from sakd.errors import ConfigError
from sakd.models import FeatureExtractor, create_model
from sakd.models.checkpoint import load_weights
from sakd.models.graph_twin import Call, GraphTwin
from sakd.neurons import SpikeActivation
from test_memory import sakd_step


class UserNet(nn.Module):
    """A user's own CNN: functional and in-place ReLUs, a residual ``+=``, a reused module."""

    def __init__(self, num_classes=10, in_channels=3, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * width)
        self.act = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(h))
        out += h  # in place, as torchvision's blocks write it
        out = out.relu()
        out = self.act(self.bn3(self.down(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def user_net(num_classes=10, in_channels=3, width=8):
    return UserNet(num_classes, in_channels, width)


def _timm_resnet(num_classes):
    timm = pytest.importorskip("timm")
    return timm.create_model("resnet18", num_classes=num_classes)


def _torchvision(name):
    def build(num_classes):
        import torchvision

        return torchvision.models.get_model(name, num_classes=num_classes)
    return build


NETWORKS = {  # model.name -> the network itself, built independently
    "torchvision:resnet18": _torchvision("resnet18"),
    "torchvision:vgg11_bn": _torchvision("vgg11_bn"),
    "torchvision:mobilenet_v2": _torchvision("mobilenet_v2"),
    "timm:resnet18": _timm_resnet,
    "python:test_graph_twins:user_net": lambda num_classes: UserNet(num_classes),
}


def randomised(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so eval-mode outputs depend on every buffer."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="module", params=list(NETWORKS))
def twins(request):
    """(name, the network, its ANN twin, its SNN twin) with the network's weights in both twins."""
    name = request.param
    torch.manual_seed(0)
    net = randomised(NETWORKS[name](10)).eval()
    # the twins' own weights are overwritten: VGG's 120 M need no initialising (model.options go to torchvision)
    options = {"init_weights": False} if name == "torchvision:vgg11_bn" else {}
    ann = create_model(name, spiking=False, num_classes=10, **options)
    snn = create_model(name, spiking=True, num_classes=10, timesteps=2, **options)
    load_weights(ann, net.state_dict(), name)
    load_weights(snn, ann.state_dict(), name)
    return name, net, ann, snn


def test_the_ann_twin_is_the_network_and_the_snn_twin_has_its_state_dict(twins):
    name, net, ann, snn = twins
    assert [(k, v.shape) for k, v in ann.state_dict().items()] == [(k, v.shape) for k, v in net.state_dict().items()]
    assert [(k, v.shape) for k, v in snn.state_dict().items()] == [(k, v.shape) for k, v in net.state_dict().items()]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ann.eval()(x), net(x))
        out = snn.eval()(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    spiking = {n for n, m in snn.named_modules() if isinstance(m, SpikeActivation)}
    sites = {n: m for n, m in ann.named_modules() if n in spiking}  # the same places in the ANN
    assert spiking and len(sites) == len(spiking)
    assert all(isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, Call)) for m in sites.values())
    assert len({id(m) for m in sites.values()}) == len(sites)  # one module per call: torchvision's reused ReLU is split
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, Call)) for m in snn.modules())
    assert not any(isinstance(m, SpikeActivation) for m in net.modules())  # the network handed in is not changed
    assert len(ann.tap_points("stage")) >= 2 and len(ann.tap_points("block")) >= len(ann.tap_points("stage")) - 1


def test_the_stem_runs_once_on_images_and_frames_run_one_per_timestep(twins):
    name, _, _, snn = twins
    first = next(m for m in snn.modules() if isinstance(m, nn.Conv2d))
    seen = []
    handle = first.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    with torch.no_grad():
        snn(torch.randn(3, 3, 32, 32))
        snn(torch.randn(2, 3, 3, 32, 32))  # frames [T, B, C, H, W]
    handle.remove()
    assert seen == [3, 6]


def test_one_sakd_step_trains_and_lean_gradients_equal_fast_ones(twins):
    name, _, ann, snn = twins
    torch.manual_seed(1)
    snn, teacher = copy.deepcopy(snn).train(), copy.deepcopy(ann).eval()
    channels = [p.channels for p in snn.tap_points()]
    objective = SAKDLoss(channels, channels, alpha=1, beta=10, gamma=1, tau=4)
    x, y = torch.randn(4, 3, 32, 32) * 2, torch.randint(0, 10, (4,))
    state = {k: v.clone() for k, v in snn.state_dict().items()}
    torch.manual_seed(2)  # VGG's dropout: the same masks in both steps
    fast, fast_bytes = sakd_step(snn, teacher, objective, x, y, "fast", "bits")
    snn.load_state_dict(state)  # BatchNorm's running statistics as before the first step
    torch.manual_seed(2)
    lean, lean_bytes = sakd_step(snn, teacher, objective, x, y, "lean", "bits")
    assert all(torch.equal(a, b) for a, b in zip(fast, lean, strict=True))
    assert sum(g.abs().sum() for g in fast) > 0 and lean_bytes < fast_bytes
    before = [p.detach().clone() for p in snn.parameters()]
    opt = torch.optim.SGD(snn.parameters(), lr=0.1)
    for p, g in zip([*snn.parameters()], fast):
        p.grad = g
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, snn.parameters()))


def test_the_snn_twin_exports_to_onnx_and_is_counted_by_analyze(twins, tmp_path):
    pytest.importorskip("onnxruntime")
    from sakd.analysis.energy import OpCounter
    from sakd.export.onnx_format import export_onnx_file

    name, _, _, snn = twins
    if name == "torchvision:vgg11_bn":  # its 4096-wide classifier: a 480 MB file; VGG's 1x1 -> 7x7 pool is tested below
        pytest.skip(
            "VGG-11's ONNX file is 480 MB; "
            "test_adaptive_pooling_onnx_cannot_write_is_written_as_matrices covers its pool"
        )
    snn = snn.eval()
    summary = export_onnx_file(snn, torch.randn(1, 3, 32, 32), 2, tmp_path / "m.onnx")
    assert summary["onnxruntime_max_abs_diff"] < 1e-4 and summary["same_prediction"]
    with torch.no_grad(), OpCounter(snn) as counter:
        snn(torch.randn(2, 3, 32, 32))
    layers = counter.layers
    convs = [n for n, m in snn.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sorted(layers) == sorted(convs)
    # the first layer reads the image; a layer after a neuron reads spikes (MobileNet's linear
    # bottlenecks feed analog sums to the next block)
    spiking = [n for n in convs[1:] if layers[n].binary]
    assert not layers[convs[0]].binary and len(spiking) >= len(convs[1:]) // 2
    assert 0 < sum(layers[n].ops for n in spiking) < sum(layers[n].dense_macs for n in spiking)


def test_a_config_names_a_torchvision_network_and_trains_it(tmp_path):
    from conftest import fast_config
    from sakd.training import Trainer

    trainer = Trainer(fast_config(tmp_path, "model.name=torchvision:resnet18", "data.options={train_size: 64}"))
    record = trainer.train_epoch()
    assert record["train/loss"] == record["train/loss"] and trainer.parts.model.spec.name == "torchvision:resnet18"
    with pytest.raises(ConfigError, match="torchvision has no classification model 'resnet91'.*'resnet18'"):
        Trainer(fast_config(tmp_path, "model.name=torchvision:resnet91"))
    with pytest.raises(ConfigError, match="'model.name' must be one of .*torchvision:\\*"):
        fast_config(tmp_path, "model.name=nowhere:resnet18")


class Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.GELU()
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


class Branching(Gelu):
    def forward(self, x):
        if x.sum() > 0:  # control flow on values: no graph
            x = -x
        return super().forward(x)


class Softmaxed(Gelu):
    def forward(self, x):
        h = F.relu(self.conv(x)).flatten(2)
        return self.fc(torch.softmax(h @ h.transpose(1, 2), -1).mean(1))


def test_what_cannot_be_twinned_is_one_line_naming_the_node_and_the_option():
    kw = dict(source="python:mine", spiking=True, timesteps=2, neuron=None)
    with pytest.raises(
        ConfigError, match=r"no spiking form: GELU at act; set model.options.activations=\{GELU: spike\}"
    ):
        GraphTwin(Gelu(), **kw)
    twin = GraphTwin(Gelu(), **kw, activations={"GELU": "spike"})
    assert isinstance(twin.act, SpikeActivation)
    kept = GraphTwin(Gelu(), **kw, activations={"GELU": "keep"})
    assert isinstance(kept.act, nn.GELU)
    with pytest.raises(ConfigError, match="cannot be traced by torch.fx"):
        GraphTwin(Branching(), **kw)
    with pytest.raises(ConfigError, match=r"softmax attention.*: softmax at softmax; .*\{softmax: keep\}"):
        GraphTwin(Softmaxed(), **kw)
    with pytest.raises(ConfigError, match="maps to one of spike, keep"):
        GraphTwin(Gelu(), **kw, activations={"GELU": "spiking"})


def test_an_in_place_activation_is_read_as_in_place_by_later_readers():
    class ReadsAgain(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            h = self.conv(x)
            F.relu(h, inplace=True)  # h itself is now the ReLU's output
            return self.fc(h.mean((2, 3)))

    net = ReadsAgain()
    ann = GraphTwin(net, source="python:mine", spiking=False, timesteps=1, neuron=None)
    snn = GraphTwin(net, source="python:mine", spiking=True, timesteps=2, neuron=None)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(ann(x), net(x))
        spikes = []
        snn.relu.register_forward_hook(lambda m, i, o: spikes.append(o))
        out = snn(x)
    expected = snn.fc(spikes[0].unflatten(0, (2, -1)).mean(0).mean((2, 3)))  # the fc reads the spikes
    assert torch.allclose(out, expected.detach(), atol=1e-6)


def test_sakd_list_models_names_the_sources(capsys):
    from sakd.cli import main

    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "networks from elsewhere (model.name=SOURCE:NAME" in out
    assert all(f"\n  {s} " in out for s in ("torchvision", "timm", "python", "resnet19"))


def test_a_feature_extractor_reads_the_stage_taps_of_a_twin(twins):
    name, _, ann, snn = twins
    t_fx, s_fx = FeatureExtractor(ann), FeatureExtractor(snn)
    with torch.no_grad():
        _, t_feats = t_fx(torch.randn(2, 3, 32, 32))
        _, s_feats = s_fx(torch.randn(2, 3, 32, 32))
    t_fx.remove(), s_fx.remove()
    assert [f.shape[1:] for f in t_feats] == [f.shape[2:] for f in s_feats]
    assert [f.shape[1] for f in t_feats] == [p.channels for p in ann.tap_points()]
    assert all(((f == 0) | (f == 1)).all() for f in s_feats)  # after the spike: spikes


@pytest.mark.parametrize("sizes", [((1, 1), (7, 7)), ((2, 3), (7, 7)), ((13, 6), (4, 5)), ((7, 7), (7, 7))])
def test_adaptive_pooling_onnx_cannot_write_is_written_as_matrices(sizes):
    from sakd.export.onnx_format import FixedAdaptiveAvgPool

    (hw_in, hw_out) = sizes
    x = torch.randn(2, 3, *hw_in, dtype=torch.float64)
    assert torch.allclose(FixedAdaptiveAvgPool(hw_in, hw_out).double()(x), nn.AdaptiveAvgPool2d(hw_out)(x), atol=1e-12)


class Awkward(nn.Module):
    """What the tracer makes hard: an in-place module called twice whose input is read again, a
    mapped function, two in-place sites on one tensor, an activation of a parameter, a tensor
    constant, a skip from the input, functional ReLUs inside blocks, a parameter named like a part."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(Block(), Block())
        self.gate = nn.Parameter(torch.randn(4, 1, 1))
        self.const = torch.randn(4, 1, 1)  # a plain tensor attribute: no state
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        z = self.conv(x)
        b = self.act(z)
        h = self.act(z + b) + F.gelu(z)  # z was changed in place by the first call
        h = torch.relu(h)
        h.relu_()
        h = self.blocks(h * F.relu(self.gate) + self.const) + F.avg_pool2d(x, 1).mean(1, keepdim=True)
        return self.fc(h.mean((2, 3)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.residual = nn.Parameter(torch.zeros(()))  # a parameter where the twin would put a ResidualAdd

    def forward(self, x):
        return F.relu(self.conv(x) + x + self.residual)


def test_what_the_tracer_makes_hard_still_gives_the_network_and_its_twin():
    torch.manual_seed(0)
    net = Awkward().eval()
    kw = dict(source="python:awkward", timesteps=2, neuron=None, num_classes=10, activations={"gelu": "spike"})
    ann, snn = GraphTwin(net, spiking=False, **kw).eval(), GraphTwin(net, spiking=True, **kw).eval()
    assert list(ann.state_dict()) == list(snn.state_dict()) == list(net.state_dict())  # no constant added
    load_weights(snn, net.state_dict(), "the network")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(ann(x), net(x))
        # the stem hands the body two tensors (the conv's output and the input's skip); the
        # image encoded directly gives what the same image as two frames gives
        assert torch.allclose(snn(x), snn(torch.stack([x, x])), atol=1e-6)
    sites = {n for n, m in snn.named_modules() if isinstance(m, SpikeActivation)}
    assert {"act", "act_1", "gelu", "relu", "relu_1", "blocks.0.relu", "blocks.1.relu"} == sites  # F.relu(gate) stays
    assert [p.name for p in snn.tap_points("block")][-2:] == ["blocks.0.relu", "blocks.1.relu"]


class Dropped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(F.dropout(F.relu(self.conv(x)), 0.5, training=self.training).mean((2, 3)))


class Noise(nn.Module):
    """Reads its mode, as timm's DropPath does: kept whole by the tracer."""

    def forward(self, x):
        return x + torch.randn_like(x) if self.training else x


class Noisy(Dropped):
    def __init__(self):
        super().__init__()
        self.noise = Noise()

    def forward(self, x):
        return self.fc(self.noise(F.relu(self.conv(x))).mean((2, 3)))


def test_a_network_that_reads_its_training_mode_keeps_it_or_is_refused():
    with pytest.raises(ConfigError, match="its forward reads self.training outside a module.*dropout.*nn.Dropout"):
        GraphTwin(Dropped(), source="python:dropped", spiking=True, timesteps=2, neuron=None)
    twin = GraphTwin(Noisy(), source="python:noisy", spiking=False, timesteps=1, neuron=None)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(twin.eval()(x), twin(x))  # evaluation: no noise
        assert not torch.equal(twin.train()(x), twin(x))  # training: its noise


TIMM_FAMILIES = {  # timm's BatchNormAct2d families, each with the activations it needs mapped
    "mobilenetv3_small_050": {"Hardswish": "spike", "Hardsigmoid": "keep"},
    "efficientnet_b0": {"SiLU": "spike", "Sigmoid": "keep"},
    "mobilenetv2_050": {},
    "regnetx_002": {},
    "ghostnet_050": {"hard_sigmoid": "keep"},  # the function's name maps the module class too
}


@pytest.mark.parametrize("name", list(TIMM_FAMILIES))
def test_timms_norm_and_activation_families_twin_exactly(name, monkeypatch):
    """timm's BatchNormAct2d is split into its norm and a site: the ANN twin is the network bit for
    bit (eval and training mode, running statistics too), the SNN twin has its state dict, and a
    SAKD step's lean and min gradients and BatchNorm statistics equal fast's bit for bit."""
    timm = pytest.importorskip("timm")
    from sakd.training.memory import units as recompute
    from test_memory import sakd_step_at

    torch.manual_seed(0)
    options = {"drop_rate": 0.0, "activations": TIMM_FAMILIES[name]}
    net = randomised(timm.create_model(name, num_classes=10, drop_rate=0.0))
    ann = create_model(f"timm:{name}", spiking=False, num_classes=10, **options)
    snn = create_model(f"timm:{name}", spiking=True, num_classes=10, timesteps=2, **options)
    load_weights(ann, net.state_dict(), name)
    load_weights(snn, ann.state_dict(), name)
    assert list(ann.state_dict()) == list(snn.state_dict()) == list(net.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ann.eval()(x), net.eval()(x))
        assert torch.equal(ann.train()(x), net.train()(x))  # batch statistics, and one update of the running ones
    assert all(torch.equal(a, b) for a, b in zip(ann.state_dict().values(), net.state_dict().values(), strict=True))
    assert any(isinstance(m, SpikeActivation) for m in snn.modules())
    assert not any(type(m).__name__ == "BatchNormAct2d" for m in snn.modules())

    channels = [p.channels for p in snn.tap_points("block")]
    objective = SAKDLoss(channels, channels, alpha=1, beta=10, gamma=1, tau=4).double()
    snn, teacher, x = snn.double().train(), ann.double().eval(), x.double() * 2
    y = torch.randint(0, 10, (4,))
    calls, again = [], []
    begin, run_again = recompute.UnitCall.begin, recompute.UnitCall.recompute
    monkeypatch.setattr(recompute.UnitCall, "begin", lambda call, args: calls.append(call) or begin(call, args))
    monkeypatch.setattr(recompute.UnitCall, "recompute", lambda call: again.append(call) or run_again(call))
    # hold no more than the largest block holds, so that blocks run again here (at 3x, a small
    # MobileNet's later blocks fit beside its largest and every block is held)
    monkeypatch.setattr(recompute.Recomputing, "footprint", 1.0)
    results = {}
    for mode in ("fast", "lean", "min"):
        model = copy.deepcopy(snn)
        grads, kept = sakd_step_at(model, teacher, objective, x, y, mode, "block")
        results[mode] = grads, kept, [b.clone() for b in model.buffers()]
    assert 0 < len(again) < len(calls)  # blocks ran again in backward, and the last held
    fast = results["fast"]
    assert sum(g.abs().sum() for g in fast[0]) > 0
    for mode in ("lean", "min"):
        assert all(torch.equal(a, b) for a, b in zip(fast[0], results[mode][0], strict=True)), mode
        assert all(torch.equal(a, b) for a, b in zip(fast[2], results[mode][2], strict=True)), mode
        assert results[mode][1] < fast[1]


def test_every_unmapped_activation_is_named_in_one_message_with_its_path():
    timm = pytest.importorskip("timm")
    with pytest.raises(ConfigError) as caught:
        GraphTwin(timm.create_model("mobilenetv3_small_050", num_classes=10), source="timm:mobilenetv3_small_050",
                  spiking=True, timesteps=2, neuron=None)
    message = str(caught.value)
    assert "\n" not in message
    assert "Hardswish at bn1.act, blocks.2.0.bn1.act" in message and "Hardsigmoid at blocks.0.0.se.gate" in message
    assert "model.options.activations={Hardswish: spike, Hardsigmoid: spike}" in message

    class Gated(Gelu):
        def forward(self, x):
            h = self.conv(x)
            return self.fc((F.gelu(h) * torch.sigmoid(h) * h.sigmoid()).mean((2, 3)))

    with pytest.raises(ConfigError, match=r"gelu at gelu; sigmoid at sigmoid, sigmoid_1"):
        GraphTwin(Gated(), source="python:gated", spiking=True, timesteps=2, neuron=None)
    # the class names as the docs write them map the functions and methods
    twin = GraphTwin(Gated(), source="python:gated", spiking=True, timesteps=2, neuron=None,
                     activations={"GELU": "spike", "Sigmoid": "keep"})
    assert sum(isinstance(m, SpikeActivation) for m in twin.modules()) == 1


def test_a_module_that_reads_its_mode_and_holds_an_activation_is_named():
    class ModeAct(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x * 2 if self.training else x)

    class Net(Gelu):
        def __init__(self):
            super().__init__()
            self.mode_act = ModeAct()

        def forward(self, x):
            return self.fc(self.mode_act(self.conv(x)).mean((2, 3)))

    with pytest.raises(ConfigError, match=r"mode_act \(ModeAct\) read self.training in their own forward and hold an "
                                          r"activation"):
        GraphTwin(Net(), source="python:net", spiking=True, timesteps=2, neuron=None)
    timm = pytest.importorskip("timm")
    with pytest.raises(ConfigError, match=r"its forward reads self.training.*dropout.*drop_rate=0"):
        GraphTwin(timm.create_model("ghostnet_050", num_classes=10), source="timm:ghostnet_050", spiking=True,
                  timesteps=2, neuron=None, activations={"Hardsigmoid": "keep"})
