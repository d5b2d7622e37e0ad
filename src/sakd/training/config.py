"""Typed run configuration: YAML files, ``base:`` inheritance and ``key=value`` overrides.

Every key is checked: an unknown key or a value of the wrong type is a :class:`ConfigError` that
names the key (with a suggestion for typos). A YAML file may name a ``base:`` file (a path
relative to itself, or a packaged config name) whose values it overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

from sakd.errors import ConfigError
from sakd.models.base import NeuronSpec


@dataclass
class ModelConfig:
    name: str = "resnet19"
    spiking: bool = True
    timesteps: int = 4
    stem: str = "cifar"
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    init: str | None = None  # None, "teacher" (copy the teacher's weights) or a weight source
    options: dict = field(default_factory=dict)  # parametric models, e.g. resnet_custom's depths/widths


@dataclass
class DataConfig:
    name: str = "cifar10"
    root: str = "data"
    download: bool = False
    augment: bool = True
    batch_size: int = 128  # the global batch of one optimiser step, over all processes
    eval_batch_size: int | None = None
    num_workers: int = 4
    options: dict = field(default_factory=dict)  # data-set specific, e.g. digits' image_size


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    epochs: int = 200
    warmup_epochs: float = 0.0
    scheduler: str = "cosine"  # cosine | constant
    min_lr: float = 0.0
    accumulate_steps: int = 1  # micro-batches per optimiser step (data.batch_size is the global batch)


@dataclass
class TeacherConfig:
    # a weight source (see sakd.models.weights): a sakd checkpoint, a torchvision/timm state-dict
    # file, torchvision:NAME or timm:NAME; None = no distillation
    weights: str | None = None
    name: str | None = None  # the teacher's architecture; None = the student's own


@dataclass
class FeaturesConfig:
    level: str = "stage"  # stage | block
    position: str = "after"  # before | after the spike (ReLU for the teacher)
    transform: str = "conv"  # conv | none | norm
    distance: str = "l2"  # l2 | l1 | l2_normalized
    weights: list[float] = field(default_factory=list)  # per tap; empty = 1 for every tap


@dataclass
class BetaStep:
    epoch: int = 0
    beta: float = 0.0


@dataclass
class DistillConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    alpha: float = 1.0
    beta: float = 0.0
    gamma: float = 0.0
    tau: float = 1.0
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    beta_schedule: list[BetaStep] = field(default_factory=list)  # from `epoch` on, β = `beta`

    def beta_at(self, epoch: int) -> float:
        """β for a 0-based epoch, after the schedule's steps reached so far."""
        beta = self.beta
        for step in sorted(self.beta_schedule, key=lambda s: s.epoch):
            if epoch >= step.epoch:
                beta = step.beta
        return beta


@dataclass
class NasConfig:
    """The architecture study (``sakd nas``); ignored by ``sakd train``."""

    sampling: str = "uniform"  # supernet training: uniform (one random subnet per step) | sandwich
    sandwich_random: int = 2  # sandwich rule: largest + smallest + this many random subnets per step
    strategy: str = "tpe"  # search: tpe (optuna's Bayesian TPE) | random
    subnets: int = 300  # subnets to evaluate
    calibration_batches: int = 10  # training batches to re-estimate a subnet's BatchNorm statistics
    seed: int = 0


@dataclass
class RunConfig:
    name: str | None = None  # run folder under output_dir; None = derived from the config
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on capable GPUs, else off) | off | bf16 | fp16
    channels_last: bool = True  # NHWC weights and activations (faster convolutions on CPU and GPU)
    log_interval: int = 20
    progress: bool = True
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA only)
    dist_backend: str = "auto"  # torchrun process group: auto (nccl on GPU, gloo on CPU) | nccl | gloo


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    run: RunConfig = field(default_factory=RunConfig)
    nas: NasConfig = field(default_factory=NasConfig)

    @property
    def mode(self) -> str:
        """``ann``, ``snn`` (surrogate-gradient baseline) or ``sakd`` (distilled student)."""
        if not self.model.spiking:
            return "ann"
        return "sakd" if self.distill.teacher.weights else "snn"

    def to_dict(self) -> dict:
        return asdict(self)


# -- (de)serialisation ---------------------------------------------------------------------------


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp, key: str):
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return _from_dict(tp, value, key + ".")
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [v if item is Any else _coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}") from None
        if tp is int:
            if not number.is_integer():
                raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
            return int(number)
        return number
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    return value


def _unknown_key(cls, key: str, prefix: str) -> ConfigError:
    names = [f.name for f in fields(cls)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}")


def _from_dict(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            raise _unknown_key(cls, key, prefix)
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in data.items()})


def config_from_dict(data: dict) -> Config:
    return _from_dict(Config, data or {})


# -- files and overrides -----------------------------------------------------------------------


def packaged_configs() -> list[str]:
    """Names of the configs shipped with sakd (``cifar10/resnet19_sakd`` ...)."""
    root = resources.files("sakd") / "configs"
    out = []

    def walk(node, rel):
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{rel}{child.name}/")
            elif child.name.endswith(".yaml"):
                out.append(rel + child.name[: -len(".yaml")])

    walk(root, "")
    return sorted(out)


def resolve_config(source: str | Path, relative_to: Path | None = None) -> Path:
    """A config file path, or the name of a packaged config (with or without ``.yaml``)."""
    candidates = [Path(source).expanduser()]
    if relative_to is not None:
        candidates.insert(0, relative_to / source)
    packaged = resources.files("sakd") / "configs"
    name = str(source)
    candidates += [Path(str(packaged / name)), Path(str(packaged / f"{name}.yaml"))]
    for path in candidates:
        if path.is_file():
            return path
    close = difflib.get_close_matches(name.removesuffix(".yaml"), packaged_configs(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else " List them with `sakd configs`."
    raise ConfigError(f"config {name!r} is neither a file nor a packaged config.{hint}")


def load_yaml(path: Path, _seen: tuple = ()) -> dict:
    """Read a YAML config, merging its ``base:`` chain (children override their base)."""
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"config {path} includes itself through 'base:'")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    bases = base if isinstance(base, list) else [base]
    merged: dict = {}
    for b in bases:
        merged = deep_merge(merged, load_yaml(resolve_config(b, path.parent), _seen + (path,)))
    return deep_merge(merged, data)


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``1e-3``, ``[1, 2]``, ``null``)."""
    data = deep_merge({}, data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=0.05)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        _check_path(parts)
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: '{p}' is not a section")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node[parts[-1]] = value
    return data


def _check_path(parts: list[str]) -> None:
    cls, prefix = Config, ""
    for i, p in enumerate(parts):
        if cls is None:  # inside a free-form dict (data.options)
            return
        names = {f.name: f for f in fields(cls)}
        if p not in names:
            raise _unknown_key(cls, p, prefix)
        tp = typing.get_type_hints(cls)[p]
        cls = tp if _is_dataclass_type(tp) else None
        if cls is None and i < len(parts) - 1 and tp is not dict:
            raise ConfigError(f"config key '{prefix}{p}' is a value, not a section")
        prefix += p + "."


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a config file (or packaged name), apply overrides, validate every key."""
    data = load_yaml(resolve_config(source)) if source is not None else {}
    return config_from_dict(apply_overrides(data, list(overrides or [])))


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
