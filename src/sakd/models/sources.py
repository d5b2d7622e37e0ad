"""Networks from elsewhere, by ``model.name``: ``torchvision:resnet18``, ``timm:resnet18`` or
``python:package.module:function``. Each source builds the network (random weights; weights come
with ``model.init`` or ``distill.teacher.weights``) and :class:`~sakd.models.graph_twin.GraphTwin`
makes its ANN or SNN twin. A new source is one function registered in :data:`MODEL_SOURCES`:
``(name, num_classes=, in_channels=, **options) -> nn.Module``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect

from torch import nn

from sakd.errors import ConfigError
from sakd.models.registry import MODEL_SOURCES


@MODEL_SOURCES.register("torchvision")
def torchvision_network(name: str, *, num_classes: int, in_channels: int, **options) -> nn.Module:
    """a torchvision classification model (torchvision.models.get_model), e.g. torchvision:resnet50"""
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"torchvision has no classification model {name!r}.{hint}")
    try:
        net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    except TypeError as exc:
        raise ConfigError(f"model torchvision:{name}: bad model.options {sorted(options)}: {exc}") from None
    if in_channels != 3:
        _first_conv_takes(net, in_channels, f"torchvision:{name}")
    return net


@MODEL_SOURCES.register("timm")
def timm_network(name: str, *, num_classes: int, in_channels: int, **options) -> nn.Module:
    """a timm model (timm.create_model, pip install timm), e.g. timm:resnet18"""
    try:
        import timm
    except ImportError:
        raise ConfigError(f"model timm:{name} needs the timm package: pip install timm") from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"timm has no model {name!r}.{hint}")
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **options)
    except TypeError as exc:
        raise ConfigError(f"model timm:{name}: bad model.options {sorted(options)}: {exc}") from None


@MODEL_SOURCES.register("python")
def python_network(target: str, *, num_classes: int, in_channels: int, **options) -> nn.Module:
    """your own: python:package.module:function, a callable that returns an nn.Module"""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model python:{target}: write python:package.module:function")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model python:{target}: {exc}") from None
    accepted = inspect.signature(fn).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    given = {
        k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels)) if takes_all or k in accepted
    }
    try:
        net = fn(**given, **options)
    except TypeError as exc:
        raise ConfigError(f"model python:{target}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model python:{target} returned {type(net).__name__}, not an nn.Module")
    return net


def _first_conv_takes(net: nn.Module, in_channels: int, source: str) -> None:
    """Replace the network's first convolution by one of ``in_channels`` inputs (same name, so a
    pretrained 3-channel weight no longer fits that one tensor)."""
    for path, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            new = nn.Conv2d(in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                            module.dilation, module.groups if module.groups == 1 else in_channels,
                            module.bias is not None, module.padding_mode)
            net.set_submodule(path, new)
            return
    raise ConfigError(f"model {source}: no convolution found to take {in_channels} input channels")
