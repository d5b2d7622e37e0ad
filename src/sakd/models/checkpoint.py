"""Checkpoints: their format, atomic writes, safe loading, and models rebuilt from what they record.

A checkpoint is a dict saved with ``torch.save`` and read with ``weights_only=True`` (no pickled
code runs on load): ``format``/``version``, the :class:`~sakd.models.registry.ModelSpec` of its model
(``spec``; version 1 called it ``arch``), the model's state dict (``model``) and, for a training
run, everything a resume needs. ``sakd eval``, a teacher loader or a resumed run rebuild the model
from the checkpoint alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from sakd.errors import CheckpointError, ConfigError, WriteError
from sakd.outputs import written
from sakd.runs import checkpoint_path
from sakd.models.registry import ModelSpec
from sakd.plugins import load_recorded, named
from sakd.neurons import SpikingNeuron

FORMAT = "sakd-checkpoint"
VERSION = 2  # 2: the model record is "spec" (a ModelSpec's dict); 1 called it "arch"


def atomic_save(obj, path: Path) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename over ``path``.

    A full or read-only disk is a :class:`CheckpointError` that says so in the OS's words
    ("No space left on device": ``torch.save`` writes into memory and the file is written as
    bytes, so the OS's error is not torch's serialiser's); ``path`` keeps the previous checkpoint,
    whole, and no temporary file is left behind."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        with written(path, "checkpoint") as tmp, open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
    except WriteError as exc:
        kept = f"{path} still holds the previous checkpoint" if path.exists() else f"no earlier {path.name} exists"
        raise CheckpointError(f"{exc}; {kept}") from None


def load_checkpoint(path: str | Path) -> dict:
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and not head.startswith(b"\x80"):  # a zip archive, or the legacy pickle format
        text = head.decode("ascii", errors="replace")
        kind = " (it begins as text: a config or a log?)" if text.isprintable() else ""
        raise CheckpointError(f"{path} is not a checkpoint: not a PyTorch file{kind}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or pickled code: never PyTorch's "weights_only=False" advice
        if "Weights only load failed" in str(exc):
            raise CheckpointError(f"{path} holds Python objects besides tensors and plain data, which sakd does not "
                                  "load: unpickling them would run code from the file (do not load it with "
                                  "weights_only=False unless you trust where it came from)") from None
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise CheckpointError(f"cannot read checkpoint {path}: a damaged PyTorch file ({first.rstrip('.')})") from None
    return as_checkpoint(obj, path)


def as_checkpoint(obj, path: str | Path) -> dict:
    """A loaded object as a checkpoint: its header checked, ``path`` noted, its spec typed."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a sakd checkpoint (no '{FORMAT}' header); it may be a bare state dict"
        )
    obj["path"] = str(path)
    # its model or neuron may come from a plug-in; one that cannot be imported is named where a
    # part it registered is needed (the reader of the config, the model's build)
    obj["plugins_missing"] = load_recorded(obj.get("config"))
    obj["spec"] = ModelSpec.from_dict(obj.pop("arch") if "arch" in obj else obj["spec"])
    return obj


def payload(spec: ModelSpec, model: nn.Module, **rest) -> dict:
    """A checkpoint's contents: the header, the model's spec and weights, and ``rest``."""
    return {"format": FORMAT, "version": VERSION, "spec": spec.to_dict(), "model": model.state_dict(), **rest}


def load_weights(model: nn.Module, state_dict: dict, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that says what does not fit. Parameters that
    belong to spiking neurons (PLIF's leak) and that the source lacks (an ANN has no neurons) keep
    their current values; everything else must match exactly, but for what a module declares
    ``resizable`` (QCFS's thresholds, a scalar or one per channel), which takes the loaded shape."""
    own = model.state_dict()
    neuron_keys = {f"{name}.{k}" for name, m in model.named_modules() if isinstance(m, SpikingNeuron)
                   for k in m.state_dict()}
    state_dict = {**{k: own[k] for k in neuron_keys if k not in state_dict}, **state_dict}
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    resizable = {f"{name}.{p}".lstrip(".") for name, m in model.named_modules() for p in getattr(m, "resizable", ())}
    shapes = [
        f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
        and not (k in resizable and state_dict[k].dim() <= 1)  # QCFS's θ: a scalar, or one per channel
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label}: {', '.join(items[:3])}{more}")
        name = model.spec.name if hasattr(model, "spec") else type(model).__name__
        raise CheckpointError(f"the weights in {source} do not fit model {name}; " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def model_from_checkpoint(path_or_ckpt) -> tuple[nn.Module, dict]:
    """The model a checkpoint (a path or a loaded one) holds, with its weights, and the checkpoint."""
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
    try:
        model = ckpt["spec"].build()
    except ConfigError as exc:
        if not ckpt.get("plugins_missing"):
            raise
        raise ConfigError(f"{exc}; {ckpt['path']} was trained with plug-in module {named(ckpt['plugins_missing'])}, "
                          "which is not available now: install it or put its folder on PYTHONPATH") from None
    load_weights(model, ckpt["model"], ckpt["path"])
    return model, ckpt
