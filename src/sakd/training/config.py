"""Typed run configuration: YAML files, ``base:`` inheritance and ``key=value`` overrides.

Every key is checked: an unknown key or a value of the wrong type is a :class:`ConfigError` that
names the key (with a suggestion for typos). A YAML file may name a ``base:`` file (a path
relative to itself, or a packaged config name) whose values it overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from sakd.errors import ConfigError
from sakd.plugins import load as load_plugins
from sakd.plugins import load_recorded, named
from sakd.fields import check_field, limited, one_of
from sakd.registry import Registered, registries
from sakd.outputs import write_bytes
from sakd.neurons import NeuronSpec
from sakd.distill.objective import shorthand_terms
from sakd.distill.schedule import WeightPoint
from sakd.distill.spec import TermSpec, weighed


def _device(spec: str) -> None:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", spec):
        raise ConfigError(f"{spec!r} is not a device; use auto, cpu, cuda or cuda:N")


def _pair(betas) -> None:
    if not 0.0 <= betas < 1.0:
        raise ConfigError(f"AdamW betas lie in [0, 1), got {betas}")


def parse_interval(spec: str | int | None) -> tuple[str, float] | None:
    """``run.checkpoint_every``: ``null`` or ``0`` (epoch ends only), ``N`` or ``Nsteps`` (every N
    optimiser steps) or ``Nmin`` (every N minutes of training). Returns ``(unit, amount)`` or None."""
    text = str(spec if spec is not None else "0").strip().lower()
    if text == "0":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(steps?|min|m|minutes?)?", text)
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(
            f"{spec!r} is not an interval; use null (epoch ends only), N steps (e.g. 500) or N minutes (e.g. 30min)"
        )
    unit = "min" if (m.group(2) or "steps").startswith("m") else "steps"
    if unit == "steps" and not float(m.group(1)).is_integer():
        raise ConfigError(f"{spec!r}: a number of steps must be whole")
    return unit, float(m.group(1))


def parse_size(spec: str | int | None) -> int | None:
    """``run.memory_budget``: ``null``, or a size: ``16GiB``, ``16G`` and ``16GB`` are 16·2^30 bytes
    (binary units), ``800MiB`` / ``800M``, ``1.5TiB``, or a number of bytes."""
    if spec is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])i?b?|b)?", str(spec).strip().lower())
    size = int(float(m.group(1)) * 1024 ** (" kmgt".index(m.group(2)) if m.group(2) else 0)) if m else 0
    if size < 1:
        raise ConfigError(f"{spec!r} is not a memory size; use e.g. 16GiB, 800MiB or a number of bytes")
    return size


@dataclass
class ModelConfig:
    # the architecture (or SOURCE:NAME: torchvision:resnet18)
    name: str = limited("resnet19", choices=Registered("model.name"))
    spiking: bool = True  # true: the SNN twin (student or baseline); false: the ANN twin (a teacher)
    timesteps: int = limited(4, ge=1)  # T: the timesteps an SNN runs per image (event data: frames)
    stem: Literal["cifar", "imagenet"] = "cifar"  # cifar: a 3x3 stem for small images; imagenet: 7x7 and max-pool
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    init: str | None = None  # None, "teacher" (copy the teacher's weights) or a weight source
    options: dict = field(default_factory=dict)  # parametric models, e.g. resnet_custom's depths/widths


@dataclass
class DataConfig:
    name: str = limited("cifar10", choices=Registered("data.name"))  # the data set
    root: str = "data"  # the folder holding it (a run records it absolute)
    download: bool = False  # fetch it where the data set can (CIFAR, MNIST family) if it is not in root
    augment: bool = True  # the recipe's training augmentation (crops, flips ...); false: none
    batch_size: int = limited(128, ge=1)  # the global batch of one optimiser step, over all processes
    eval_batch_size: int | None = limited(None, ge=1)  # the evaluation batch; null: data.batch_size
    # loader worker processes per training process; auto: the cores this process may use, less
    # one for the process itself, at most 8 (runtime.resolve_workers)
    num_workers: Literal["auto"] | int = limited("auto", ge=0)
    # a fixed, stratified hold-out of the training set that selects the best checkpoint (0: none,
    # and best.pt is then chosen on the test set, as the official SAKD code does)
    val_fraction: float = limited(0.0, ge=0.0, lt=1.0)
    # fixed stratified subsets (seed 0) of the training and test sets; null: all of each
    train_subset: int | None = limited(None, ge=1)
    test_subset: int | None = limited(None, ge=1)  # a fixed stratified subset of the test set; null: all
    options: dict = field(default_factory=dict)  # data-set specific, e.g. digits' image_size
    # mixup / CutMix of training micro-batches: lambda ~ Beta(alpha, alpha), 0 = off; at even odds
    # where both are on; both off from epoch mixup_off_epoch (0-based; null: never) (sakd.data.augmentation)
    mixup: float = limited(0.0, ge=0.0)
    cutmix: float = limited(0.0, ge=0.0)  # CutMix's alpha (as mixup's); 0 = off
    mixup_off_epoch: int | None = limited(None, ge=0)  # the epoch (0-based) mixup and CutMix stop; null: never


@dataclass
class OptimConfig:
    name: str = limited("sgd", choices=Registered("optim.name"))  # the optimiser
    lr: float = limited(0.1, gt=0.0)  # the peak learning rate (after warm-up)
    momentum: float = limited(0.9, ge=0.0, lt=1.0)  # SGD's momentum
    nesterov: bool = True  # SGD with Nesterov momentum
    weight_decay: float = limited(5e-4, ge=0.0)  # L2 weight decay (AdamW: decoupled)
    # decay BatchNorm weights and biases too (true: every parameter, as the official SAKD code
    # does); false decays only conv/linear weights (a common practice elsewhere)
    decay_bn_and_bias: bool = True
    betas: list[float] = limited(default_factory=lambda: [0.9, 0.999], check=lambda b: _pair(b))  # AdamW's betas
    epochs: int = limited(200, ge=1)  # epochs to train
    warmup_epochs: float = limited(0.0, ge=0.0)  # a linear warm-up from 0 to lr over these epochs
    # the last epochs at min_lr, after the schedule (timm's cooldown_epochs: the schedule runs over
    # epochs - cooldown_epochs)
    cooldown_epochs: float = limited(0.0, ge=0.0)
    scheduler: str = limited("cosine", choices=Registered("optim.scheduler"))  # the learning-rate schedule
    min_lr: float = limited(0.0, ge=0.0)  # the learning rate the schedule ends at
    accumulate_steps: int = limited(1, ge=1)  # micro-batches per optimiser step (data.batch_size is the global batch)


@dataclass
class TeacherConfig:
    # a weight source (see sakd.models.weights): a sakd checkpoint, a torchvision/timm state-dict
    # file, torchvision:NAME or timm:NAME; None = no distillation
    weights: str | None = None
    # the teacher's architecture; None = the student's own
    name: str | None = limited(None, choices=Registered("distill.teacher.name"))


@dataclass
class FeaturesConfig:
    level: Literal["stage", "block"] = "stage"  # the taps: each stage's end, or each block's
    position: Literal["before", "after"] = "after"  # before | after the spike (ReLU for the teacher)
    # maps a student tap to the teacher's (eq. 8: Conv1x1+BN)
    transform: str = limited("conv", choices=Registered("distill.features.transform"))
    # the distance between tapped features (eq. 9: L2)
    distance: str = limited("l2", choices=Registered("distill.features.distance"))
    weights: list[float] = limited(default_factory=list, ge=0.0)  # per tap; empty = 1 for every tap
    # how the taps' distances combine: sum (the paper's eq. 9 over taps and the official code) or
    # mean (the same β for 4 stage taps and for 33-50 block taps of ResNet-101/152)
    reduce: Literal["sum", "mean"] = "sum"


@dataclass
class BetaStep:
    epoch: int = limited(0, ge=0)  # from this epoch (0-based) on
    beta: float = limited(0.0, ge=0.0)  # β




@dataclass
class TermConfig:
    """A registered loss term added to the objective with its weight (``sakd losses`` lists them)
    and an optional weight schedule. Its options go under ``options`` or flat beside ``name``,
    ``weight`` and ``schedule``: ``{name: dkd, weight: 1, tau: 4}``."""

    name: str = limited("ce", choices=Registered("distill.terms.name"))  # the registered loss term
    weight: float = limited(1.0, ge=0.0)  # its weight in the sum (from epoch 0, unless a schedule says otherwise)
    options: dict = field(default_factory=dict)  # its own options (also accepted flat beside name), e.g. tau: 4
    schedule: list[WeightPoint] = field(default_factory=list)  # its weight over the epochs

    def __post_init__(self):
        self.spec()  # checked at load: a registered term, its own options, a sound schedule

    def spec(self) -> TermSpec:
        """The term as the objective builds it."""
        return TermSpec.of(self.name, self.weight, self.options, self.schedule)

    @classmethod
    def gather(cls, data: dict) -> dict:
        """The mapping with every key other than name/weight/options/schedule moved into options."""
        own = {"name", "weight", "options", "schedule"}
        flat = {k: v for k, v in data.items() if k not in own}
        if not flat:
            return data
        return {**{k: v for k, v in data.items() if k in own}, "options": {**data.get("options", {}), **flat}}


@dataclass
class DistillConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # SAKD's eq. 5 as a shorthand: alpha, beta, gamma weigh the terms ce, feature_kd, logit_kd (tau
    # its temperature), which come first in the objective (sakd.distill.objective.shorthand_terms)
    alpha: float = limited(1.0, ge=0.0)
    beta: float = limited(0.0, ge=0.0)  # β: the weight of the feature term (feature_kd, eq. 9)
    gamma: float = limited(0.0, ge=0.0)  # γ: the weight of the logit term (logit_kd: τ²·KL, eq. 7)
    tau: float = limited(1.0, gt=0.0)  # τ: the logit term's temperature
    label_smoothing: float = limited(0.0, ge=0.0, lt=1.0)  # the alpha term's (ce's) label smoothing
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    beta_schedule: list[BetaStep] = field(default_factory=list)  # feature_kd's schedule: from `epoch` on, β = `beta`
    terms: list[TermConfig] = field(default_factory=list)  # further registered loss terms, beside α/β/γ

    def __post_init__(self):
        self.term_specs()  # checked at load: the shorthand's values, the terms, no term twice

    def term_specs(self) -> list[TermSpec]:
        """Every term of the objective, the shorthand's first (``beta_schedule`` is ``feature_kd``'s
        schedule); the objective leaves out the terms whose weight is 0 at every epoch. Made from
        the fields, so a config changed in Python gives its new terms; checked when it is loaded."""
        f = self.features
        shorthand = shorthand_terms(self.alpha, self.beta, self.gamma, self.tau, label_smoothing=self.label_smoothing,
                                    transform=f.transform, distance=f.distance, feature_weights=f.weights,
                                    reduce=f.reduce, beta_schedule=[(s.epoch, s.beta) for s in self.beta_schedule])
        specs = [*shorthand, *(t.spec() for t in self.terms)]
        weighed(specs)  # no term twice
        return specs

    def weights_at(self, epoch: int) -> dict[str, float]:
        """Each term's weight in the 0-based ``epoch`` (0 for the shorthand's terms that are off)."""
        return {t.name: t.schedule.at(epoch) for t in self.term_specs()}


@dataclass
class NasConfig:
    """The architecture study (``sakd nas``); ignored by ``sakd train``."""

    sampling: Literal["uniform", "sandwich"] = "uniform"  # one random subnet per step | largest+smallest+random
    sandwich_random: int = limited(2, ge=0)  # sandwich rule: largest + smallest + this many random subnets per step
    strategy: Literal["tpe", "random"] = "tpe"  # search: optuna's Bayesian TPE | uniform random
    subnets: int = limited(300, ge=1)  # subnets to evaluate
    calibration_batches: int = limited(10, ge=1)  # fixed training batches that re-estimate a subnet's BatchNorm
    seed: int = 0  # the search's seed


@dataclass
class ConvertConfig:
    """A conversion recipe (``sakd convert --config``): the ANN checkpoint is ``model.init``, the SNN
    runs ``model.timesteps``; ``sakd train`` refuses a config that sets ``method``."""

    # qcfs (an ANN trained with model.neuron.name=qcfs, its thresholds as they are) | max | percentile
    # (a ReLU ANN, each activation's largest output, or that percentile, over the calibration images)
    method: Literal["qcfs", "max", "percentile"] | None = None
    images: int = limited(256, ge=1)  # calibration images from the training split (max, percentile)
    percentile: float = limited(99.9, gt=0.0, le=100.0)  # for method percentile
    start: float | None = limited(None, ge=0.0, lt=1.0)  # initial membrane / threshold; null: 0.5 qcfs, else 0
    per_channel: bool = False  # max / percentile: one threshold per channel of each activation, not per layer


def not_a_conversion(cfg: Config, what: str = "this config") -> None:
    """Training refuses a conversion recipe (its ``convert.method`` set): `sakd convert` runs it."""
    if cfg.convert.method:
        raise ConfigError(f"{what} is a conversion recipe (convert.method={cfg.convert.method}): run it with "
                          "`sakd convert --config`, not training")


@dataclass
class RunConfig:
    name: str | None = None  # run folder under output_dir; None = derived from the config
    output_dir: str = "runs"  # the folder run folders are made in
    seed: int = 0  # seeds weights, data order, augmentation and random loss terms
    device: str = limited("auto", check=_device)  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 on capable GPUs, else off
    channels_last: bool = True  # NHWC weights and activations (faster convolutions on CPU and GPU)
    # what a step keeps for backward: fast (autograd's default) | lean (spikes saved as bits, neuron
    # inputs made again in backward; same gradients) | min (lean, and each block keeps only its input
    # spikes as bits and runs again in backward, but those whose holding does not raise the step's
    # peak, measured in the first steps; same gradients) | auto (lean for a spiking student, fast
    # for an ANN)
    memory: Literal["auto", "fast", "lean", "min"] = "auto"
    # with run.memory=auto: the most memory a training step may take on its device (e.g. 12GiB; CUDA:
    # what the allocator has allocated, so leave room for its cache and the context; CPU: the
    # tensors the step makes over the parameters, gradients and optimizer state), and each block is
    # kept (as fast or lean) or run again to fit it in the least time, measured in the first steps
    # (sakd.training.memory.budget; same gradients)
    memory_budget: str | None = limited(None, check=parse_size)
    # backpropagation through time: full (BPTT) | sltt (one timestep at a time, no gradient back
    # through the membrane: memory constant in T; sakd.training.online)
    bptt: Literal["full", "sltt"] = "full"
    log_interval: int = limited(20, ge=1)  # steps between progress updates (and, under torchrun, stop checks)
    # warn (each epoch, and in eval / analyze) when the SNN's mean firing rate on the test split is
    # below this, or a spiking layer gives no spike at all (0: silent layers only)
    low_firing_rate: float = limited(0.01, ge=0)
    progress: bool = True  # a progress bar per epoch
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA only)
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"  # torchrun process group (auto: nccl on GPU, gloo on CPU)
    # checkpoints inside an epoch as well: null (epoch ends only), N steps (e.g. 500) or N minutes (30min)
    checkpoint_every: str | None = limited(None, check=lambda spec: parse_interval(spec))
    # experiment trackers that get every epoch record: tensorboard, wandb, mlflow (see sakd.training.loggers)
    loggers: list[str] = limited(default_factory=lambda: ["tensorboard"], choices=Registered("run.loggers"))
    # plug-in modules imported before the config is checked (sakd.plugins); a run records here every
    # plug-in it was trained with, and whatever reads the run imports them again
    plugins: list[str] = field(default_factory=list)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    run: RunConfig = field(default_factory=RunConfig)
    nas: NasConfig = field(default_factory=NasConfig)
    convert: ConvertConfig = field(default_factory=ConvertConfig)

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
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise one_of(key, value, allowed)
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:  # the first type that takes the value (Literal["auto"] | int: "auto" or a number)
            try:
                return _coerce(value, a, key)
            except ConfigError as exc:
                errors.append(
                    str(exc).removeprefix(f"config key '{key}' must be ").split(", got ")[0].split("; got ")[0]
                )
        raise ConfigError(f"config key '{key}' must be {' or '.join(errors)}, got {value!r}")
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
    if hasattr(cls, "gather"):  # a section that takes some keys flat (a loss term's options)
        data = cls.gather(data)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in known:
            raise _unknown_key(cls, key, prefix)
        values[key] = _coerce(value, hints[key], prefix + key)
        check_field(values[key], known[key].metadata, prefix + key)
    return cls(**values)


def recorded_config(data: dict, where: str, overrides: list[str] | None = None, training: bool = False) -> Config:
    """The config a run recorded (``where``: its file), ``overrides`` applied, for a command that
    reads the run. Its plug-ins are imported where they can be. Unless the command trains
    (``--resume``), the parts only training needs (a registry's ``training_only``) that are no longer
    registered are left out, with a warning naming them; a part it does need that is gone is an
    error naming the plug-in module that cannot be imported."""
    data = apply_overrides(data or {}, list(overrides or []))
    missing = load_recorded(data)
    left_out = [] if training else _leave_out_unregistered(data)
    if left_out:
        why = f" (plug-in module {named(missing)})" if missing else ""
        warnings.warn(f"{where}: going on without {', '.join(left_out)}, which only training needs and which is "
                      f"no longer registered{why}", RuntimeWarning, stacklevel=2)
    try:
        config = _from_dict(Config, data)
    except ConfigError as exc:
        if not missing:
            raise
        need = ("install it, or override what it registered (e.g. distill.terms=[...]) to go on without it"
                if training else "install it or put its folder on PYTHONPATH")
        raise ConfigError(f"{exc}; {where} was trained with plug-in module {named(missing)}, which is not "
                          f"available now: {need}") from None
    if missing:  # nothing this command needs came from them
        config.run.plugins = [m for m in config.run.plugins if m not in missing]
        if not left_out:
            warnings.warn(f"{where}: going on without plug-in module {named(missing)}, which registered nothing "
                          "this command needs", RuntimeWarning, stacklevel=2)
    return config


def _leave_out_unregistered(data: dict) -> list[str]:
    """Remove from ``data`` (in place) the training-only parts whose names are not registered
    (a registry's ``training_only``); what was removed, as phrases."""
    out = []
    for registry in registries():
        if not registry.training_only:
            continue
        for key in registry.keys:
            out += _remove_unknown(data, key.split("."), registry, key)
    return out


def _remove_unknown(holder, path: list[str], registry, key: str) -> list[str]:
    """Drop what names an unregistered part at ``path`` under ``holder``: a string value, a string
    of a list, or the mapping of a list (a loss term) whose name it is."""
    if isinstance(holder, list):
        return [gone for item in holder for gone in _remove_unknown(item, path, registry, key)]
    if not isinstance(holder, dict) or path[0] not in holder:
        return []
    value = holder[path[0]]
    if len(path) > 1:
        if len(path) == 2 and isinstance(value, list):  # mappings that each name a part (distill.terms.name)
            gone = [v for v in value if isinstance(v, dict) and v.get(path[1]) not in registry]
            holder[path[0]] = [v for v in value if not any(v is g for g in gone)]
            return [f"{registry.kind} {v.get(path[1])!r}" for v in gone]
        return _remove_unknown(value, path[1:], registry, key)
    if isinstance(value, list):
        holder[path[0]] = [v for v in value if v in registry]
        return [f"{registry.kind} {v!r}" for v in value if v not in registry]
    if isinstance(value, str) and value not in registry:
        del holder[path[0]]
        return [f"{key}={value!r}"]
    return []


def config_from_dict(data: dict) -> Config:
    """A checked :class:`Config`; the plug-ins named in ``run.plugins`` are imported first, so that
    the parts they register are known names."""
    plugins = ((data or {}).get("run") or {}).get("plugins")
    if plugins:
        if not isinstance(plugins, list):
            raise ConfigError(f"config key 'run.plugins' must be a list of module names, got {plugins!r}")
        load_plugins(plugins, "run.plugins", remember=False)
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
    if Path(source).expanduser().is_dir() and not any(p.is_file() for p in candidates):
        raise ConfigError(f"config {source} is a folder; give a YAML file (or a packaged name: `sakd configs`)")
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
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not a text file (not UTF-8 at byte {exc.start})") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a folder; give a YAML file") from None
    except yaml.YAMLError as exc:  # one line: where and what
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"config {path} is not valid YAML{where}: {what}") from None
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
    """The config as YAML, written whole (:func:`sakd.outputs.write_bytes`)."""
    write_bytes(path, yaml.safe_dump(config.to_dict(), sort_keys=False).encode("utf-8"), "the run's config")
