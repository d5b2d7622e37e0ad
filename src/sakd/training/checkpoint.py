"""Checkpoints: atomic writes, safe loading, and models rebuilt from what a checkpoint records.

A checkpoint is a dict saved with ``torch.save`` and read with ``weights_only=True`` (no pickled
code runs on load). It records the architecture (``arch``), so ``sakd eval`` and a teacher loader
can rebuild the model without the original config.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sakd.errors import CheckpointError
from sakd.models import create_model
from sakd.neurons import SpikingNeuron

FORMAT = "sakd-checkpoint"
VERSION = 1


def atomic_save(obj, path: Path) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename over ``path``.

    A full or read-only disk is a :class:`CheckpointError` that says so; ``path`` keeps the
    previous checkpoint, whole, and no temporary file is left behind."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        kept = f"{path} still holds the previous checkpoint" if path.exists() else f"no earlier {path.name} exists"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot write checkpoint {path} ({reason}); {kept}") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a torch file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a sakd checkpoint (no '{FORMAT}' header); it may be a bare state dict"
        )
    ckpt["path"] = str(path)
    return ckpt


def build_model(arch: dict, **changes) -> nn.Module:
    """Build the model an ``arch`` record describes; ``changes`` override fields (e.g. spiking)."""
    spec = {**arch, **changes}
    return create_model(
        spec["name"],
        spiking=spec["spiking"],
        num_classes=spec["num_classes"],
        timesteps=spec.get("timesteps", 4),
        in_channels=spec.get("in_channels", 3),
        stem=spec.get("stem", "cifar"),
        neuron=spec.get("neuron"),
        **spec.get("options", {}),
    )


def load_weights(model: nn.Module, state_dict: dict, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that says what does not fit. Parameters that
    belong to spiking neurons (PLIF's leak) and that the source lacks (an ANN has no neurons) keep
    their current values; everything else must match exactly."""
    own = model.state_dict()
    neuron_keys = {f"{name}.{k}" for name, m in model.named_modules() if isinstance(m, SpikingNeuron)
                   for k in m.state_dict()}
    state_dict = {**{k: own[k] for k in neuron_keys if k not in state_dict}, **state_dict}
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label}: {', '.join(items[:3])}{more}")
        arch = getattr(model, "arch", type(model).__name__)
        raise CheckpointError(f"the weights in {source} do not fit model {arch}; " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def model_from_checkpoint(path_or_ckpt, **changes) -> tuple[nn.Module, dict]:
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
    model = build_model(ckpt["arch"], **changes)
    load_weights(model, ckpt["model"], ckpt["path"])
    return model, ckpt


def rng_state() -> dict:
    """Every global RNG, in types that ``torch.load(weights_only=True)`` accepts."""
    py_version, py_internal, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
