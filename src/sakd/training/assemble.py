"""A run's parts, assembled from its config by named builders, each usable alone; the
:class:`~sakd.training.trainer.Trainer` only runs the loop over the parts it is handed.

    parts = assemble(load_config("quickstart/snn"))                # what `sakd train` runs
    parts = assemble(cfg, data=DataBundle(my_train, my_test, ...))  # your own data set
    parts = assemble(cfg, model=create_model("resnet19", ...))      # your own student
    Trainer(parts).fit()

The order is the one a run needs: the config checked (its plug-ins imported), the process's
device and precision, the data (hold-out and subsets) and its loaders, the student, the teacher
(loaded, checked against the student and the data, and copied into the student where
``model.init`` says), the objective and its feature taps, the optimiser and its schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from sakd import plugins
from sakd.data import DataBundle, open_data
from sakd.data.holdout import sample_labels, stratified_holdout, stratified_subset, test_split
from sakd.distill import Objective
from sakd.distill.objective import reads_features
from sakd.distill.teacher import check_distillation, initialise, load_teacher
from sakd.errors import ConfigError
from sakd.models import FeatureExtractor
from sakd.models.registry import ModelSpec
from sakd.training.config import Config, config_from_dict, not_a_conversion
from sakd.training.distributed import DistContext, init_distributed
from sakd.training.optim import build_optimizer, build_scheduler
from sakd.training.runtime import make_loaders, place, resolve_amp, resolve_device, seed_everything


@dataclass
class Runtime:
    """Where this process runs: its place in a distributed run, its device, its mixed precision."""

    dist: DistContext
    device: torch.device
    amp_dtype: torch.dtype | None


@dataclass
class RunParts:
    """Everything a run trains with, built and placed on its device."""

    config: Config
    runtime: Runtime
    data: DataBundle
    train_loader: DataLoader
    eval_loaders: dict[str, DataLoader]
    spec: ModelSpec
    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    teacher: nn.Module | None = None
    student_taps: FeatureExtractor | None = None
    teacher_taps: FeatureExtractor | None = None
    notes: list[str] = field(default_factory=list)  # what assembling did that a user should read
    initialised: dict | None = None  # what model.init gave the student (kept in every checkpoint)


def checked(config: Config) -> Config:
    """Every field checked (also for a config built or changed in Python), and the plug-in
    modules of the parts it names recorded in ``run.plugins`` (whatever reads the run imports them),
    and ``data.root`` made absolute (a run records where its data was, whatever folder reads it)."""
    cfg = config_from_dict(config.to_dict())
    cfg.run.plugins = list(dict.fromkeys([*cfg.run.plugins, *plugins.in_use(cfg.to_dict())]))
    cfg.data.root = str(Path(cfg.data.root).expanduser().absolute())  # eval from another folder finds the data
    return cfg


def build_runtime(cfg: Config) -> Runtime:
    """The process group under torchrun (none otherwise), this process's device and precision."""
    dist = init_distributed(resolve_device(cfg.run.device), cfg.run.dist_backend)
    device = resolve_device(cfg.run.device, dist.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Runtime(dist, device, resolve_amp(cfg.run.amp, device))


def build_splits(
    cfg: Config, data: DataBundle, plain_train: Dataset | None = None
) -> tuple[Dataset, dict[str, Dataset]]:
    """The training set and the evaluation sets: ``val`` held out of the training set when
    ``data.val_fraction`` > 0 (from ``plain_train``, the training split without augmentation;
    default: the config's data set opened again without it), and ``test`` (``data.test_subset``)."""
    d = cfg.data
    test = test_split(data.test, d.test_subset)
    if not (d.train_subset or d.val_fraction):
        return data.train, {"test": test}
    labels = sample_labels(data.train)
    train_idx = list(range(len(labels)))
    if d.train_subset:
        train_idx = stratified_subset(labels, d.train_subset, "data.train_subset")
    if not d.val_fraction:
        return Subset(data.train, train_idx), {"test": test}
    plain = plain_train if plain_train is not None else open_data(d, augment=False, download=False).train
    kept, held = stratified_holdout(labels[train_idx], d.val_fraction)
    return Subset(data.train, [train_idx[i] for i in kept]), {
        "val": Subset(plain, [train_idx[i] for i in held]), "test": test}


def build_loaders(cfg: Config, data: DataBundle, runtime: Runtime,
                  plain_train: Dataset | None = None) -> tuple[DataLoader, dict[str, DataLoader]]:
    """The loaders of this process's share of the splits (:func:`build_splits`)."""
    train_set, evaluation = build_splits(cfg, data, plain_train)
    return make_loaders(
        train_set, evaluation, batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size or cfg.data.batch_size, num_workers=cfg.data.num_workers,
        seed=cfg.run.seed, device=runtime.device, ctx=runtime.dist, accumulate=cfg.optim.accumulate_steps,
        collate_fn=data.collate_fn)


def student_spec(cfg: Config, data: DataBundle) -> ModelSpec:
    """The student's spec: the config's model for the data's classes and channels."""
    m = cfg.model
    if data.frames and m.spiking and m.timesteps != data.frames:
        raise ConfigError(f"{cfg.data.name} gives {data.frames} frames per sample but model.timesteps={m.timesteps}; "
                          f"set model.timesteps={data.frames} (one frame per timestep)")
    return ModelSpec(m.name, m.spiking, data.num_classes, m.timesteps, data.in_channels, m.stem, m.neuron,
                     dict(m.options))


def build_objective(cfg: Config, model: nn.Module, teacher: nn.Module | None):
    """The objective of ``distill`` (every term with its schedule), and the student's and the
    teacher's feature taps where a term weighed at some epoch reads features."""
    d = cfg.distill
    terms, s_taps, t_taps = d.term_specs(), None, None
    if reads_features(terms):
        # every term that reads features reads the student's through their mean over time: the
        # taps take that mean as each layer runs (no [T, B, ...] tap outlives its layer)
        mean_only = not any(t.part.needs_features and t.part.feature_timesteps for t in terms if t.schedule.ever_on)
        s_taps = FeatureExtractor(model, d.features.level, d.features.position, time_mean=mean_only)
        t_taps = FeatureExtractor(teacher, d.features.level, d.features.position)
    head = getattr(teacher, "forward_head", None)
    objective = Objective(terms, s_taps.channels if s_taps else (), t_taps.channels if t_taps else (), head)
    keys = {t.name: t.where for t in terms}
    hard = [keys[name] for name, term in objective.terms.items() if term.hard_labels]  # as built: options count
    if (cfg.data.mixup or cfg.data.cutmix) and cfg.data.mixup_off_epoch != 0 and hard:
        raise ConfigError(f"data.mixup / data.cutmix mix the labels, but {', '.join(hard)} reads each label's class; "
                          "set both to 0 or leave that term out")
    return objective, s_taps, t_taps


def assemble(config: Config, *, data: DataBundle | None = None, model: nn.Module | None = None,
             runtime: Runtime | None = None) -> RunParts:
    """The run's parts from ``config``; ``data`` (your own :class:`DataBundle`), ``model`` (your
    own student: a model of :func:`~sakd.models.create_model`, whose spec the checkpoints record)
    and ``runtime`` replace what the config would build."""
    cfg = checked(config)
    not_a_conversion(cfg)
    runtime = runtime or build_runtime(cfg)
    seed_everything(cfg.run.seed)
    own_data = data is not None  # a validation hold-out then comes from its training split as it is
    data = data if own_data else open_data(cfg.data)
    train_loader, eval_loaders = build_loaders(cfg, data, runtime, data.train if own_data else None)
    spec = student_spec(cfg, data)
    if model is not None:
        if getattr(model, "spec", None) is None:
            raise ConfigError("a student handed to assemble() must be a sakd model (create_model) with a .spec")
        spec = model.spec
    place_on = (runtime.device, cfg.run.channels_last)
    model = place(model if model is not None else spec.build(), *place_on)
    check_distillation(cfg.distill, cfg.model)
    teacher = source = initialised = None
    notes = []
    if cfg.distill.teacher.weights:
        teacher, source = load_teacher(cfg.distill.teacher, spec, cfg.data.name)
        teacher = place(teacher, *place_on)
    if cfg.model.init:
        note, initialised = initialise(model, cfg.model.init, teacher, source)
        notes.append(note)
    objective, s_taps, t_taps = build_objective(cfg, model, teacher)
    place(objective, *place_on)
    optimizer = build_optimizer([model, objective], cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, train_loader.batch_sampler.steps)
    return RunParts(cfg, runtime, data, train_loader, eval_loaders, spec, model, objective, optimizer, scheduler,
                    teacher=teacher, student_taps=s_taps, teacher_taps=t_taps, notes=notes, initialised=initialised)

