"""SEW-ResNet twins: torchvision weights in both twins, the three connect functions, taps, training."""

import pytest
import torch

from conftest import fast_config, torchvision_resnet
from sakd.errors import ConfigError
from sakd.models import FeatureExtractor, create_model
from sakd.models.sew_resnet import sew_connect
from sakd.training import train


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_weights_load_strictly_into_both_twins(name):
    ref = torchvision_resnet(name)
    ann = create_model(f"sew_{name}", spiking=False, num_classes=1000, stem="imagenet")
    snn = create_model(f"sew_{name}", spiking=True, num_classes=1000, timesteps=2, stem="imagenet")
    ann.load_state_dict(ref.state_dict(), strict=True)
    snn.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ann.eval()(x), ref.eval()(x), atol=1e-5)  # the ANN twin is the plain ResNet
        assert snn.eval()(x).shape == (2, 1000)


def test_connect_functions_by_hand():
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])  # residual branch spikes A
    s = torch.tensor([0.0, 1.0, 0.0, 1.0])  # shortcut spikes S
    assert sew_connect(a, s, "ADD").tolist() == [0.0, 1.0, 1.0, 2.0]
    assert sew_connect(a, s, "AND").tolist() == [0.0, 0.0, 0.0, 1.0]
    assert sew_connect(a, s, "IAND").tolist() == [0.0, 1.0, 0.0, 0.0]  # ¬A ∧ S


@pytest.mark.parametrize("connect", ["ADD", "AND", "IAND"])
def test_each_spiking_block_joins_its_branch_spikes(connect):
    torch.manual_seed(0)
    snn = create_model("sew_resnet18", spiking=True, num_classes=10, timesteps=2, connect=connect).train()
    seen = {}
    for name, blk in (("plain", snn.layer1[1]), ("down", snn.layer2[0])):
        blk.act2.register_forward_hook(lambda m, i, o, n=name: seen.setdefault(f"{n}/A", o))
        blk.register_forward_hook(lambda m, i, o, n=name: seen.update({f"{n}/x": i[0], f"{n}/out": o}))
    snn.layer2[0].downsample_act.register_forward_hook(lambda m, i, o: seen.setdefault("down/S", o))
    with torch.no_grad():
        snn(torch.randn(4, 3, 32, 32))
    assert torch.equal(seen["plain/out"], sew_connect(seen["plain/A"], seen["plain/x"], connect))
    assert torch.equal(seen["down/out"], sew_connect(seen["down/A"], seen["down/S"], connect))
    if connect == "ADD":  # spikes on both branches add up, and the sums carry on through the shortcuts
        assert seen["plain/out"].max() >= 2.0 and (seen["plain/out"] == seen["plain/out"].round()).all()
    else:
        assert set(seen["plain/out"].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("level", ["stage", "block"])
@pytest.mark.parametrize("position", ["before", "after"])
def test_taps_align_between_the_twins(level, position):
    snn = create_model("sew_resnet18", spiking=True, num_classes=10, timesteps=2)
    ann = create_model("sew_resnet18", spiking=False, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    _, s_feats = FeatureExtractor(snn, level, position)(x)
    with torch.no_grad():
        _, t_feats = FeatureExtractor(ann, level, position)(x)
    assert len(s_feats) == len(t_feats) == (4 if level == "stage" else 8)
    for fs, ft in zip(s_feats, t_feats):
        assert fs.shape[0] == 2 and fs.shape[1:] == ft.shape
        if position == "after":
            assert (fs >= 0).all() and (fs == fs.round()).all()  # joined spikes: whole numbers


SMALL = ["model.name=sew_resnet18", "data.options={image_size: 16, train_size: 64, test_size: 64}", "optim.epochs=1"]


@pytest.fixture(scope="module")
def sew_teacher(tmp_path_factory):
    return train(fast_config(tmp_path_factory.mktemp("sew_teacher"), *SMALL, "model.spiking=false"))["run_dir"]


# ADD trains in the SEW recipes' tests; every join is checked per block above
@pytest.mark.parametrize("connect", ["IAND"])
def test_sew_sakd_trains_one_step(tmp_path, sew_teacher, connect):
    summary = train(
        fast_config(
            tmp_path,
            *SMALL,
            f"model.options={{connect: {connect}}}",
            f"distill.teacher.weights={sew_teacher}/last.pt",
            "model.init=teacher",
            "distill.beta=1",
            "distill.gamma=1",
        )
    )
    assert summary["final_top1"] is not None and 0 < summary["firing_rate"] < 1


def test_bad_connect_is_a_clear_error():
    with pytest.raises(ConfigError, match="model.options.connect must be one of ADD, AND, IAND, got 'OR'"):
        create_model("sew_resnet18", spiking=True, num_classes=10, connect="OR")
