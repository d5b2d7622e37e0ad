import pytest
import torch
import torchvision

from conftest import fast_config
from sakd.errors import CheckpointError, ConfigError
from sakd.training import Trainer

SAKD = ["distill.alpha=1", "distill.beta=1", "distill.gamma=1"]
R18 = ["model.name=resnet18", "model.stem=imagenet"]


def _torchvision_r18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).state_dict()


def _timm_r18():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=10).state_dict()


@pytest.mark.parametrize("fmt", ["torchvision", "timm", "safetensors", "nested"])
def test_teacher_from_foreign_state_dicts_and_student_init(tmp_path, fmt):
    state = _timm_r18() if fmt == "timm" else _torchvision_r18()
    path = tmp_path / f"teacher.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}} if fmt == "nested" else state, path)
    trainer = Trainer(fast_config(tmp_path, *R18, f"distill.teacher.weights={path}", *SAKD, "model.init=teacher"))
    for k, v in state.items():
        assert torch.equal(trainer.parts.teacher.state_dict()[k], v)
        assert torch.equal(trainer.parts.model.state_dict()[k], v)
    assert not trainer.parts.teacher.spiking and trainer.parts.model.spiking


def test_state_dict_for_another_class_count_names_the_layer(tmp_path):
    path = tmp_path / "r18_1000.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatch: fc.weight: \(1000, 512\) vs \(10, 512\)"):
        Trainer(fast_config(tmp_path, *R18, f"distill.teacher.weights={path}", *SAKD))


def test_unknown_torchvision_weights_name(tmp_path):
    with pytest.raises(ConfigError, match="torchvision has no weights named 'ResNet18_Weights.NOPE'"):
        Trainer(fast_config(tmp_path, *R18, "distill.teacher.weights=torchvision:ResNet18_Weights.NOPE", *SAKD))


def test_file_of_something_else_is_refused(tmp_path):
    path = tmp_path / "junk.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="neither a sakd checkpoint nor a state dict"):
        Trainer(fast_config(tmp_path, f"distill.teacher.weights={path}", *SAKD))
