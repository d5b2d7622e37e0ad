"""The teacher: what the distillation settings ask of it, loading it from a weight source, checking
that it fits the student and the data, and copying its weights into the student (paper A.2)."""

from __future__ import annotations

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.models.checkpoint import load_weights
from sakd.models.registry import ModelSpec
from sakd.models.weights import load_weight_source
from sakd.neurons import SpikingNeuron


def check_distillation(distill, model_cfg) -> None:
    """The settings' own consistency: a teacher exactly where a term or the initialisation needs one."""
    if distill.teacher.weights:
        if not model_cfg.spiking:
            raise ConfigError("distillation trains a spiking student: set model.spiking=true")
        return
    specs = distill.term_specs()
    for term in specs:
        part = term.part
        if (part.needs_teacher or part.needs_features) and term.schedule.ever_on:
            raise ConfigError(f"{term.key}: {term.name!r} reads the teacher's "
                              f"{'features' if part.needs_features else 'logits'}, so it needs a teacher: "
                              "set distill.teacher.weights to an ANN checkpoint or state dict")
    if model_cfg.init == "teacher":
        raise ConfigError("model.init=teacher needs distill.teacher.weights")
    if distill.alpha == 0 and not any(t.schedule.ever_on for t in specs if t.key == "distill.terms"):
        raise ConfigError("distill.alpha=0 without a teacher leaves nothing to optimise; set distill.alpha=1")


def load_teacher(teacher_cfg, student: ModelSpec, data_name: str) -> tuple[nn.Module, str]:
    """The ANN teacher (eval mode, no gradients) and a description of where it came from.

    Its architecture is the student's unless ``distill.teacher.name`` names another; a sakd
    checkpoint's recorded spec must agree with that, and with the data's classes and channels."""
    source = load_weight_source(teacher_cfg.weights)
    expected = teacher_cfg.name or student.name
    spec = student.replace(name=expected, spiking=False, options=student.options if expected == student.name else {})
    held = source.spec
    if held is not None:  # a sakd checkpoint says what it holds: check it
        if held.spiking:
            raise ConfigError(f"the teacher {source.description} holds a spiking model; the teacher must be an ANN")
        if held.name != expected:
            if teacher_cfg.name:
                raise ConfigError(f"the teacher {source.description} holds {held.name}, but distill.teacher.name is "
                                  f"{teacher_cfg.name}")
            raise ConfigError(
                f"the teacher {source.description} holds {held.name} but the student is {student.name}: SAKD "
                f"distils from a teacher of the same architecture. To use another architecture, say so with "
                f"distill.teacher.name={held.name}")
        for key in ("num_classes", "in_channels"):
            if getattr(held, key) != getattr(student, key):
                raise ConfigError(f"the teacher has {key}={getattr(held, key)} but the data set {data_name} gives "
                                  f"{getattr(student, key)}")
        spec = held
    teacher = spec.build()
    load_weights(teacher, source.state_dict, source.description)
    return teacher.eval().requires_grad_(False), source.description


def shared_layout(model: nn.Module) -> tuple:
    """What must agree for weights to copy: every parameter name and shape, the neurons' own
    parameters aside (an ANN teacher has none; see :func:`~sakd.models.checkpoint.load_weights`)."""
    neurons = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, SpikingNeuron))
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.startswith(neurons))


def initialise(student: nn.Module, init: str, teacher: nn.Module | None,
               teacher_source: str | None) -> tuple[str, dict]:
    """Copy ``model.init``'s weights into the student strictly: ``teacher`` (A.2) or a weight
    source. Returns a line saying what was copied, and what the student starts from (its
    source; for neurons with a learned threshold θ, QCFS's, each θ and the initial membrane; a
    converted checkpoint's conversion record), which the run's checkpoints keep."""
    if init == "teacher":
        if shared_layout(teacher) != shared_layout(student):
            raise ConfigError(f"model.init=teacher copies the teacher's weights and needs the same architecture; "
                              f"the teacher is {teacher.spec.name}, the student {student.spec.name}")
        state, description = teacher.state_dict(), f"the teacher ({teacher_source})"
    else:
        source = load_weight_source(init)
        if source.spec is not None and source.spec.name != student.spec.name:
            raise ConfigError(
                f"model.init: {source.description} holds {source.spec.name}, the model is {student.spec.name}"
            )
        state, description = source.state_dict, source.description
    load_weights(student, state, description)
    n = sum(v.numel() for v in student.state_dict().values())
    record: dict = {"from": description}
    if init != "teacher" and source.conversion:
        record["conversion"] = source.conversion
    learned = {name: m for name, m in student.named_modules()
               if isinstance(m, SpikingNeuron) and isinstance(getattr(m, "theta", None), torch.Tensor)}
    # by site: a number, or one per channel
    thresholds = {name.removesuffix(".neuron"): m.theta.detach().tolist() for name, m in learned.items()}
    line = f"initialised the student from {description}: all {len(state)} tensors ({n:,} values) copied strictly"
    if thresholds:
        starts = {getattr(m, "start", None) for m in learned.values()}
        record |= {"thresholds": thresholds, "start": starts.pop() if len(starts) == 1 else sorted(starts)}
        every = [v for m in learned.values() for v in m.theta.detach().flatten().tolist()]
        line += (f"; its {len(thresholds)} spiking layers start from thresholds {min(every):.4g} to "
                 f"{max(every):.4g}, membranes from {record['start']} of them")
    return line, record
