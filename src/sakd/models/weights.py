"""Weights from anywhere a user keeps them, for a teacher or for initialising a student.

A *weight source* is one of:

* a sakd checkpoint (``runs/.../best.pt``): its recorded model spec is checked;
* a bare state dict saved by ``torch.save`` (torchvision's or timm's ResNet format, or nested
  under a ``"state_dict"`` / ``"model"`` key) or a ``.safetensors`` file;
* ``torchvision:ResNet34_Weights.IMAGENET1K_V1``: torchvision's own weight loader (downloads once
  into the torch hub cache; needs internet the first time);
* ``timm:resnet34.a1_in1k``: timm's pretrained weights (needs ``pip install timm`` and internet).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sakd.errors import CheckpointError, ConfigError
from sakd.models.checkpoint import FORMAT, as_checkpoint
from sakd.models.registry import ModelSpec
from sakd.runs import checkpoint_path


@dataclass
class WeightSource:
    state_dict: dict
    description: str
    spec: ModelSpec | None = None  # what the weights belong to (sakd checkpoints only)
    conversion: dict | None = None  # a converted SNN checkpoint's record (sakd convert)


def load_weight_source(source: str) -> WeightSource:
    if source.startswith("torchvision:"):
        return _torchvision(source.split(":", 1)[1])
    if source.startswith("timm:"):
        return _timm(source.split(":", 1)[1])
    path = checkpoint_path(source)
    if not path.is_file():
        raise CheckpointError(f"weights {path} do not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return WeightSource(load_file(str(path)), str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        ckpt = as_checkpoint(obj, path)
        return WeightSource(ckpt["model"], str(path), ckpt["spec"], ckpt.get("conversion"))
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds neither a sakd checkpoint nor a state dict of tensors")
    return WeightSource({k.removeprefix("module."): v for k, v in obj.items()}, str(path))


def _torchvision(name: str) -> WeightSource:
    import torchvision

    try:
        weights = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise ConfigError(f"torchvision has no weights named {name!r} (e.g. ResNet34_Weights.IMAGENET1K_V1)") from None
    try:
        state = weights.get_state_dict(progress=True)
    except Exception as exc:
        raise CheckpointError(
            f"could not fetch torchvision:{name} ({exc}); it needs internet once. Without it, save "
            f"the state dict elsewhere and pass the file's path instead"
        ) from None
    return WeightSource(state, f"torchvision:{name}")


def _timm(name: str) -> WeightSource:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"timm:{name} needs the timm package: pip install timm") from None
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as exc:
        raise CheckpointError(f"could not load timm:{name} ({exc}); it needs internet once") from None
    return WeightSource(model.state_dict(), f"timm:{name}")
