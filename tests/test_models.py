import pytest
import torch

from conftest import torchvision_resnet
from sakd.errors import ConfigError
from sakd.models import create_model, list_models


@pytest.mark.parametrize("name", sorted(list_models()))
def test_ann_and_snn_state_dicts_copy_strictly_both_ways(name):
    # names and shapes on the meta device (no memory, no initialisation: ResNet-152 in milliseconds)
    with torch.device("meta"):
        ann = create_model(name, spiking=False, num_classes=7)
        snn = create_model(name, spiking=True, num_classes=7, timesteps=2)
    assert {k: v.shape for k, v in ann.state_dict().items()} == {k: v.shape for k, v in snn.state_dict().items()}
    snn.load_state_dict(ann.state_dict(), strict=True)
    ann.load_state_dict(snn.state_dict(), strict=True)


def test_weights_copied_ann_to_snn_to_ann_come_back_equal():
    ann = create_model("resnet_tiny", spiking=False, num_classes=7)
    snn = create_model("resnet_tiny", spiking=True, num_classes=7, timesteps=2)
    snn.load_state_dict(ann.state_dict(), strict=True)
    ann2 = create_model("resnet_tiny", spiking=False, num_classes=7)
    ann2.load_state_dict(snn.state_dict(), strict=True)
    for k, v in ann.state_dict().items():
        assert torch.equal(v, ann2.state_dict()[k])


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_weights_load_strictly_with_equal_outputs(name):
    ref = torchvision_resnet(name)
    ours = create_model(name, spiking=False, num_classes=1000, stem="imagenet")
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), ref.eval()(x), atol=1e-5)


def test_resnet19_layout():
    m = create_model("resnet19", spiking=True, num_classes=100)
    assert m.conv1.out_channels == 128 and m.conv1.kernel_size == (3, 3)
    assert [len(getattr(m, s)) for s in m.stages] == [3, 3, 2]
    assert [getattr(m, s)[0].conv1.out_channels for s in m.stages] == [128, 256, 512]
    assert (m.fc1.in_features, m.fc1.out_features, m.fc2.out_features) == (512, 256, 100)


def test_spiking_model_static_and_frame_inputs():
    torch.manual_seed(0)
    snn = create_model("resnet_tiny", spiking=True, num_classes=5, timesteps=3).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        static = snn(x)
        frames = snn(x.unsqueeze(0).repeat(3, 1, 1, 1, 1))
        again = snn(x)
    assert static.shape == (2, 5)
    # direct encoding (stem computed once) equals feeding the same frame at every timestep
    assert torch.allclose(static, frames, atol=1e-5)
    assert torch.equal(static, again)  # no state kept between calls


@pytest.mark.parametrize("name", ["vgg11", "resnet_tiny"])
def test_snn_output_is_mean_of_per_timestep_logits(name):
    torch.manual_seed(0)
    # train mode: batch statistics keep an untrained network spiking all the way to the head
    snn = create_model(name, spiking=True, num_classes=4, timesteps=3, in_channels=2).double().train()
    frames = torch.randn(3, 5, 2, 32, 32, dtype=torch.float64) * 2
    head = snn.fc2 if hasattr(snn, "fc2") else snn.fc  # the last linear layer: per-timestep logits
    seen = []
    head.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        logits = snn(frames)
    per_step = seen[0].unflatten(0, (3, 5))  # [T, B, classes]
    assert logits.shape == (5, 4)
    assert not torch.equal(per_step[0], per_step[1])  # the timesteps really differ
    assert torch.equal(logits, per_step.mean(0))


# every registered model at the input size of the recipes that use it
DATA_SIZES = {"cifar10": (3, 32), "cifar100": (3, 32), "imagenet": (3, 224), "dvs_cifar10": (2, 48),
              "dvs_gesture": (2, 128), "n_caltech101": (2, 48), "n_mnist": (2, 34), "digits": (1, 16),
              "synthetic": (3, 16)}


def _recipe_inputs():
    from sakd.training.config import load_config, packaged_configs

    seen = {}
    for name in packaged_configs():
        if name.startswith("presets/"):  # fragments that recipes build on, not runs
            continue
        cfg = load_config(name)
        channels, size = DATA_SIZES[cfg.data.name]
        size = cfg.data.options.get("image_size", size)
        key = (cfg.model.name, cfg.model.stem, channels, size)
        if cfg.model.name != "resnet_supernet":  # its subnets materialise as resnet_custom
            seen.setdefault(key, cfg.model.options)
    return sorted(seen.items(), key=lambda kv: kv[0])


@pytest.mark.parametrize(
    "model, stem, channels, size, options",
    [(*k, v) for k, v in _recipe_inputs()] + [("vgg11", "cifar", 3, 32, {}), ("vgg11", "cifar", 2, 56, {})],
    ids=lambda v: str(v) if not isinstance(v, dict) else "",
)
def test_gradient_reaches_every_position_of_the_last_feature_map(model, stem, channels, size, options):
    torch.manual_seed(0)
    net = create_model(model, spiking=False, num_classes=10, in_channels=channels, stem=stem, **options).eval()
    last = net.tap_points("stage")[-1].activation
    kept = []

    def keep(module, inputs, output):
        output.retain_grad()
        kept.append(output)

    last.register_forward_hook(keep)
    net(torch.randn(1, channels, size, size)).square().sum().backward()
    reach = kept[0].grad.abs().sum(dim=(0, 1))  # [H, W]
    assert reach.numel() > 1 or size <= 32
    assert (reach > 0).all(), f"{model} at {size}x{size}: no gradient at {(reach == 0).nonzero().tolist()}"


def test_vgg11_is_tets_vggsnn_on_dvs_frames():
    net = create_model("vgg11", spiking=True, num_classes=10, timesteps=4, in_channels=2)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert net.fc.in_features == 512 * 3 * 3
    x = torch.randn(4, 1, 2, 48, 48)
    maps = []
    net.stage4[-1].register_forward_hook(lambda m, i, o: maps.append(net.pool(o)))
    net(x)
    assert maps[0].shape[-2:] == (3, 3)  # 48 -> 24 -> 12 -> 6 -> 3: four pools


def test_vgg16_is_qcfs_layout_torchvisions_vgg16_bn_layers_with_average_pools():
    """QCFS's VGG-16 (Models/VGG.py): torchvision's vgg16_bn convolutions (with bias) and BatchNorms in
    its order, 2x2 average pools where it max-pools, and a 512 -> 4096 -> 4096 -> K classifier whose
    hidden layers have neurons (a 32x32 image leaves a 1x1 map)."""
    from torchvision.models import vgg16_bn

    with torch.device("meta"):
        ours = create_model("vgg16", spiking=True, num_classes=10, timesteps=2, neuron={"name": "qcfs"})
        theirs = vgg16_bn(num_classes=10)
    layers = lambda net, kinds: [(type(m).__name__, tuple(p.shape for p in m.parameters()))  # noqa: E731
                                 for m in net.modules() if isinstance(m, kinds)]
    kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d)
    assert layers(ours, kinds) == layers(theirs.features, kinds) and len(layers(ours, kinds)) == 26
    pools = [m for m in ours.modules() if isinstance(m, torch.nn.AvgPool2d)]
    assert len(pools) == 1 and pools[0].kernel_size == 2  # one module, run at the end of each of the 5 stages
    assert [tuple(m.weight.shape) for m in ours.modules() if isinstance(m, torch.nn.Linear)] == [
        (4096, 512), (4096, 4096), (10, 4096)]
    assert [type(m).__name__ for m in ours.hidden] == ["Linear", "SpikeActivation", "Identity"] * 2
    snn = create_model("vgg16", spiking=True, num_classes=10, timesteps=2, neuron={"name": "qcfs"}, dropout=0.1)
    maps = []
    snn.grid.register_forward_hook(lambda m, i, o: maps.append(i[0].shape[-2:]))
    assert snn(torch.randn(2, 3, 32, 32)).shape == (2, 10) and len(snn.tap_points("block")) == 13
    assert maps == [(1, 1)]  # 32 -> 16 -> 8 -> 4 -> 2 -> 1: five pools, the classifier reads the 1x1 map as QCFS's
    assert sum(isinstance(m, torch.nn.Dropout) for m in snn.modules()) == 15  # after every neuron, as QCFS's


def test_frame_count_must_match_timesteps():
    snn = create_model("resnet_tiny", spiking=True, num_classes=5, timesteps=4)
    with pytest.raises(ValueError, match="5 frames but the model runs 4 timesteps"):
        snn(torch.randn(5, 2, 3, 16, 16))


def test_timesteps_setter_reaches_every_neuron():
    snn = create_model("resnet_tiny", spiking=True, num_classes=5, timesteps=4)
    snn.timesteps = 2
    assert snn(torch.randn(2, 2, 3, 16, 16)).shape == (2, 5)


def test_unknown_model_name_suggests_the_right_one():
    with pytest.raises(ConfigError, match="unknown model 'resnet91'.*resnet19"):
        create_model("resnet91", spiking=True, num_classes=10)


def test_an_option_a_model_does_not_take_is_named():
    with pytest.raises(ConfigError, match="model 'resnet19': bad model.options \\(given: \\['widths'\\]\\)"):
        create_model("resnet19", spiking=True, num_classes=10, widths=[8, 16])


def test_direct_encoding_keeps_the_channels_last_layout_and_the_outputs():
    torch.manual_seed(0)
    snn = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=3).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 3  # float64: no spike flips from rounding
    expected = snn(x)
    snn = snn.to(memory_format=torch.channels_last)
    seen = []
    snn.act1.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    out = snn(x)
    assert seen[0].shape[0] == 6 and seen[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, expected, atol=1e-10)
