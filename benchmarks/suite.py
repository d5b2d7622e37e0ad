"""Speed and memory of SAKD training: against the convolution limit, the plain SNN, and SpikingJelly.

Seven figures for a ResNet-19 student at T=4 on 32x32 inputs (training mode: forward, backward and
an SGD step), every ratio measured side by side in one interleaved run (round-robin over the
candidates, median over repeats), so that a noisy machine slows all candidates alike:

1. limit ratio    SNN step / step of the same ANN on a batch of T·B images (the convolution work
                  an SNN cannot avoid).                                             goal <= 1.10
2. SAKD overhead  SAKD step (teacher forward, taps, transforms, losses) / plain SNN step.  <= 1.20
3. peer ratio     the same network and SAKD step on SpikingJelly's multi-step LIFNode (its
                  fastest backend on the device, same triangle surrogate) / ours: >= 1.3x faster,
                  <= 0.8x its memory.
4. neuron alone   forward+backward of one multi-step neuron layer on [4, 64, 128, 16, 16]: ours
                  (compiled, fused), SpikingJelly, the plain autograd loop (our reference backend),
                  and ReLU on the same tensor; then all on [4, 2, 1, 2, 2], where a layer's cost is
                  its calls, not its elementwise work.
5. memory vs T    memory of a training step for T = 1, 2, 4, 8, and its slope per timestep.
6. inference      images/s of the student at T=4 in eval mode.
7. lean memory    ``run.memory: lean`` (spikes saved as bits, or as bytes; neuron inputs made again
                  in backward): the SAKD step's memory against the fast step's and against the
                  ANN step on B images (goal <= 2.5x), and its time against the fast step's
                  (goal <= 1.10x); with ``recompute=False`` (bits only) for the breakdown.
8. peak memory    the true peak a step adds (CUDA: the allocator's peak; CPU, Linux: the resident
                  set's high-water mark in a child process whose malloc returns every large block
                  at once) of the ANN step on B, our fast and lean SAKD steps, SpikingJelly's
                  default and after its ``memopt.optimize_memory`` (the ICLR 2026 gradient
                  checkpointing with spike compression, by its authors) at its best level on the
                  device (4 on CUDA; 1 on CPU, where levels 2 and 3 are level 1 without their
                  split callbacks and search by measuring CUDA memory with them, as level 4
                  does) and each ``checkpoint_budget`` (memory, balanced, speed: every block,
                  3/4 and 1/2 of them, the largest activations first), each also timed in
                  figure 7 beside ``min``. Measured at B and
                  2B; peak(B) is linear in B, so the largest batch that fits a budget
                  (``--budget-gib``, default 16) follows. Goal: lean <= 0.8x memopt. ``run.memory:
                  min`` (blocks kept as their input spikes, run again in backward, but those a
                  plan measured in its first steps holds without raising the peak): its peak
                  <= 1.0x the ANN step's on B (``min_peak_vs_ann_peak``), >= 8x below fast's
                  (``fast_peak_vs_min_peak``), its step <= 1.15x fast's time (``min_time``, fig. 7);
                  and where its step peaks (before the student's forward, in it, while a block runs
                  again in backward, backward between), for the SAKD step and the plain SNN step,
                  with how many blocks ran again.
9. memory vs T    what the SAKD step keeps and its true peak in each memory mode (fast, lean, min)
                  at T = 1, 2, 4, 8, against the ANN step on B images; the peak of ``run.bptt: sltt``
                  (one timestep at a time, lean) at each T: goal T=8 within 1.10x of T=2
                  (``sltt_peak_T8_vs_T2``), its step time at T=4 <= 1.1x fast's (``sltt_time``: both
                  ``run.memory: fast``, so that only ``run.bptt`` differs; with lean beside it).
10. networks      beside ResNet-19 (full mode; ``--networks``): torchvision's ResNet-18 through the
                  graph twin, a Spikformer (the CIFAR recipe's 4-384 at half width, 4-192) and an
                  unseen plain 6-conv network through ``python:`` (:func:`plain_cnn`), each at
                  32x32, T=4: the limit ratio (goal <= 1.10), the lean and min SAKD steps' time
                  (<= 1.10x, <= 1.15x fast's) and peaks (min <= 1.0x the ANN step's on B, fast
                  >= 8x min; true peaks as figure 8), min's peak at T = 1, 4, 8, and the largest
                  min batch within the budget (linear fit of B and 2B).

Memory (figures 3, 5, 7) is what a training step keeps for its backward pass (every distinct tensor storage saved
by autograd, parameters excluded: the part of peak memory that grows with T and batch and that
neuron implementations differ in), on every device; on CUDA the true peak allocation is reported
too. SpikingJelly is optional: ``pip install --no-deps spikingjelly==2.0.0 loguru`` (its declared
torchaudio dependency does not install beside every torch; the LIF node does not need it).

    python benchmarks/suite.py            # ResNet-19 and a 1/4-width ResNet-19 (CPU: ~10 min)
    python benchmarks/suite.py --quick    # the 1/4-width model only, fewer repeats (CPU: < 2 min)
    python benchmarks/suite.py --neuron plif --reset soft   # any registered neuron (default: the paper's LIF)

Every figure runs for every registered neuron (``--neuron``, ``--reset``, ``--decay``); the
SpikingJelly peer is its counterpart node (lif: LIFNode, if: IFNode, plif: ParametricLIFNode, soft
reset: ``v_reset=None``) and is skipped, with the reason, for a neuron it has none of.

Prints a table and writes JSON to ``benchmarks/results/suite-<device>.json`` (or ``--out``), also after
each width (marked ``"partial"``), so that a run cut short keeps what it has measured. Every goal is
recorded in its ``"goals"`` list as ``{"goal", "value", "target", "met", "where", "better"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sakd.distill import SAKDLoss
from sakd.models import FeatureExtractor, create_model
from sakd.neurons import NEURONS, NeuronSpec, SpikeActivation, kernels
from sakd.training.memory import MemoryBudget, SavedTensors, resident_bytes
from sakd.training.online import timestep_by_timestep
from sakd.training.runtime import place
from sakd.training.trainer import StudentStep

GOALS = {"limit_ratio": 1.10, "sakd_overhead": 1.20, "peer_speedup": 1.3, "peer_memory": 0.8,
         "lean_vs_ann": 2.5, "lean_time": 1.10, "lean_vs_memopt": 0.8,
         "min_peak_vs_ann_peak": 1.0, "fast_peak_vs_min_peak": 8.0, "min_time": 1.15,
         "sltt_peak_T8_vs_T2": 1.10, "sltt_time": 1.1}
HIGHER_IS_BETTER = {"peer_speedup", "fast_peak_vs_min_peak"}
MEMORY_MODES_T = ("fast", "lean", "min")  # figure 9: memory of each mode at T = 1, 2, 4, 8
TIMESTEPS = (1, 2, 4, 8)
T = 4


# -- measurement ----------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], object]], device, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


@contextlib.contextmanager
def saved_for_backward(exclude: set[int]):
    """Bytes of the distinct storages autograd saves inside the block (``exclude``: data pointers
    of parameters, which exist anyway)."""
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in exclude:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield storages


def mib(n: float) -> float:
    return n / 2**20


# -- networks ---------------------------------------------------------------------------------------
def resnet19(width: float, spiking: bool, timesteps: int = T, num_classes: int = 10,
             neuron: NeuronSpec | None = None):
    w = [max(1, round(c * width)) for c in (128, 256, 512)]
    return create_model("resnet_custom", spiking=spiking, num_classes=num_classes, timesteps=timesteps,
                        depths=[3, 3, 2], widths=w, stem_width=w[0], head_hidden=max(1, round(256 * width)),
                        neuron=neuron)


def plain_cnn(num_classes: int = 10, in_channels: int = 3) -> torch.nn.Module:
    """An unseen plain network for figure 10's graph-twin row: six 3x3 conv -> BN -> ReLU layers
    (64, 64 | 128, 128 | 256, 256), a 2x2 max-pool after each pair, average pool, one linear layer."""
    layers, cin = [], in_channels
    for i, cout in enumerate((64, 64, 128, 128, 256, 256)):
        layers += [torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]
        if i % 2:
            layers.append(torch.nn.MaxPool2d(2))
        cin = cout
    head = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(cin, num_classes)]
    return torch.nn.Sequential(*layers, *head)


# figure 10's networks beside ResNet-19, each at 32x32: (model.name, model.options)
NETWORKS = {
    "torchvision_resnet18": ("torchvision:resnet18", {}),  # torchvision's, twinned through its graph
    "spikformer_4_192": ("spikformer", {"depth": 4, "dim": 192, "heads": 8}),  # the CIFAR recipe's 4-384 at half width
    "plain_cnn": ("python:suite:plain_cnn", {}),  # an unseen network through `python:`
}


def network(key: str, spiking: bool, timesteps: int = T, neuron: NeuronSpec | None = None):
    name, options = NETWORKS[key]
    return create_model(name, spiking=spiking, num_classes=10, timesteps=timesteps, neuron=neuron, **options)


def spikingjelly():
    """SpikingJelly's activation-based package, or None with the reason."""
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except Exception as exc:  # missing, or broken beside this torch
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return (functional, neuron, surrogate), None


# QCFS's neuron has no node of its own there: SpikingJelly's converter makes it VoltageScaler(1/θ) ->
# IFNode -> VoltageScaler(θ), which tests/test_qcfs.py compares whole converted networks against
SJ_NODES = {"lif": "LIFNode", "if": "IFNode", "plif": "ParametricLIFNode", "qcfs": None}


def peer_missing(spec: NeuronSpec) -> str | None:
    """Why SpikingJelly has no node that computes ``spec``'s neuron, or None when it has one."""
    if SJ_NODES.get(spec.name) is None:
        return f"no SpikingJelly node for neuron {spec.name!r}" + (
            " (its counterpart is the converter's scaler -> IFNode -> scaler)" if spec.name in SJ_NODES else "")
    if spec.surrogate != "triangle":
        return f"no SpikingJelly counterpart set up for surrogate {spec.surrogate!r}"
    if spec.name != "if" and not 0.0 < spec.decay < 1.0:
        return f"SpikingJelly's leaky nodes need 0 < decay < 1, got {spec.decay}"
    return None


def sj_node(sj, spec: NeuronSpec):
    """SpikingJelly's multi-step node computing ``spec``'s neuron: λ = 1 - 1/τ without input decay
    (the paper's H = λV + X), V_th, reset to 0 (hard) or by subtraction (soft, ``v_reset=None``),
    triangle surrogate max(0, 1 - |x|) (PiecewiseQuadratic, α = 1). PLIF: SpikingJelly learns
    1/τ = sigmoid(w), we learn λ = sigmoid(w); both start at the same leak."""
    _, neuron, surrogate = sj
    common = dict(v_threshold=spec.threshold, v_reset=0.0 if spec.reset == "hard" else None,
                  surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0), detach_reset=spec.detach_reset,
                  step_mode="m")
    tau = 1.0 / (1.0 - spec.decay) if spec.name != "if" else None
    if spec.name == "lif":
        return neuron.LIFNode(tau=tau, decay_input=False, **common)
    if spec.name == "plif":
        return neuron.ParametricLIFNode(init_tau=tau, decay_input=False, **common)
    return neuron.IFNode(**common)


def sj_implementation(spec: NeuronSpec, device: torch.device) -> str:
    """Which of its implementations SpikingJelly runs ``spec``'s node with on ``device`` (it picks
    the fastest that loads: its native CUDA kernels, then Triton, then PyTorch)."""
    try:
        from spikingjelly.activation_based.functional import neuron_implementation

        return neuron_implementation(spec.name, device)["implementation"]
    except Exception as exc:  # an older SpikingJelly, or none that runs here
        return f"unknown ({type(exc).__name__}: {exc})".splitlines()[0]


def on_spikingjelly(model, sj, spec: NeuronSpec):
    """The same network with every neuron replaced by SpikingJelly's node."""
    for m in model.modules():
        if isinstance(m, SpikeActivation):
            m.neuron = sj_node(sj, spec)
    return model


class Setup:
    """Models, data and one training step per candidate for one width on one device."""

    def __init__(self, width: float, batch: int, device: torch.device, sj, spec: NeuronSpec,
                 network_key: str | None = None, plans: dict | None = None):
        torch.manual_seed(0)
        self.device, self.batch, self.sj, self.spec = device, batch, sj, spec
        self.tag = network_key or f"resnet19x{width}"
        # run.memory=min's plans, by step (min_plan's key): made here, or given (a CPU peak child gets
        # its parent's, since the profiler that measures a plan would move the resident set it reads)
        self.plans = {} if plans is None else plans
        self.x = torch.randn(batch, 3, 32, 32, device=device)
        self.y = torch.randint(0, 10, (batch,), device=device)
        self.x_ann = self.x.repeat(T, 1, 1, 1)  # the T·B images of the convolution limit
        self.y_ann = self.y.repeat(T)
        self.width = width
        # ResNet-19 at ``width``, or one of figure 10's networks
        self.build = (lambda spiking, t=T, neuron=None: network(network_key, spiking, t, neuron)) if network_key \
            else (lambda spiking, t=T, neuron=None: resnet19(width, spiking, t, neuron=neuron))
        self.ann = place(self.build(False), device, True)
        self.teacher = place(self.build(False), device, True).eval().requires_grad_(False)

    def student(self, peer: bool = False, timesteps: int = T):
        model = self.build(True, timesteps, self.spec)
        if peer:
            on_spikingjelly(model, self.sj, self.spec)
            model.reset_peer = self.sj[0].reset_net  # SpikingJelly's nodes keep their membranes
        return place(model, self.device, True)

    def memopt_student(self, budget: str = "memory"):
        """The SpikingJelly student after ``memopt.optimize_memory`` at its best level for the
        device (see figure 8), every residual block a candidate, with ``checkpoint_budget=budget``."""
        from spikingjelly.activation_based.memopt import optimize_memory

        from sakd.models.resnet import BasicBlock

        model = self.student(peer=True)
        level = 4 if self.device.type == "cuda" else 1
        optimize_memory(model, BasicBlock, lambda m: m(self.x), level=level, checkpoint_budget=budget, compress=True)
        model.reset_peer(model)
        model.memopt_level = level
        return model

    def step(self, model, sakd: bool, memory: str = "fast", packing: str = "bits", recompute: bool = True,
             bptt: str = "full", plan=None):
        """One SGD step of the plain SNN (cross-entropy) or of the SAKD student (CIFAR preset:
        tau=20, alpha=0, gamma=1, beta=100, stage taps before the spike, conv transform, L2), with
        ``run.memory`` ``memory`` and ``run.bptt`` ``bptt`` (sltt: one timestep at a time);
        ``plan``: a ``run.memory_budget`` plan (``MemoryBudget``; ``memory="min"``), which measures
        the forward and backward of its first steps as a trainer's does; ``min`` without one is
        planned as a trainer plans it (:meth:`min_plan`)."""
        taps = FeatureExtractor(model, "stage", "before", time_mean=True) if sakd else None
        t_taps = FeatureExtractor(self.teacher, "stage", "before") if sakd else None
        objective = SAKDLoss(taps.channels if sakd else (), t_taps.channels if sakd else (),
                             alpha=0.0 if sakd else 1.0, beta=100.0 if sakd else 0.0,
                             gamma=1.0 if sakd else 0.0, tau=20.0)
        place(objective, self.device, True)
        module = StudentStep(model, objective, taps)
        opt = torch.optim.SGD([*model.parameters(), *objective.parameters()], lr=1e-3, momentum=0.9)
        reset = getattr(model, "reset_peer", None)
        beta = 100.0 if sakd else 0.0

        def run():
            opt.zero_grad(set_to_none=True)
            with run.plan.step() if run.plan is not None else contextlib.nullcontext():
                forward_and_backward()
            opt.step()
            if reset:
                reset(model)

        def forward_and_backward():
            t_logits = t_feats = None
            if sakd:
                with torch.no_grad():
                    t_logits, t_feats = t_taps(self.x)
            if bptt == "sltt":
                def one(x_t, feats):
                    with SavedTensors(module, memory, packing, recompute=recompute):
                        return module(x_t, self.y, t_logits, feats, beta, bool(beta))

                timestep_by_timestep(model, self.x, t_feats, one, lambda loss, last: loss.backward(), model.timesteps)
            else:
                with SavedTensors(module, memory, packing, recompute=recompute, plan=run.plan):
                    loss, _, _ = module(self.x, self.y, t_logits, t_feats, beta, bool(beta))
                loss.backward()

        run.model, run.memory, run.packing, run.recompute = module, memory, packing, recompute
        run.teacher, run.optimizer, run.plan = self.teacher, opt, plan
        if memory == "min" and plan is None and bptt == "full":
            self.min_plan(run, model, sakd)
        return run

    def min_plan(self, run, model, sakd: bool):
        """``run.memory=min``'s plan for this step (``MemoryBudget`` at the least step's peak), as
        a trainer makes it (its first steps measured), or as :attr:`plans` has it."""
        key = f"{self.tag}/{self.batch}/{model.timesteps}/{'sakd' if sakd else 'snn'}"
        resident = lambda: resident_bytes(self.device, [run.model, self.teacher], run.optimizer)  # noqa: E731
        plan = MemoryBudget(None, self.device, resident, lambda line: None)
        run.plan = plan  # run() reads it
        if key in self.plans:
            plan.choices, plan.state = list(self.plans[key]), "planned"
        else:
            while plan.state != "planned":
                run()
            self.plans[key] = list(plan.choices)
        return plan

    def ann_step(self, images: str = "TxB"):
        """One SGD step of the ANN twin on the T·B images of the convolution limit, or on B."""
        opt = torch.optim.SGD(self.ann.parameters(), lr=1e-3, momentum=0.9)
        x, y = (self.x_ann, self.y_ann) if images == "TxB" else (self.x, self.y)

        def run():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(self.ann(x), y).backward()
            opt.step()

        run.model, run.teacher, run.optimizer = self.ann, None, opt
        return run


def step_memory(step) -> dict:
    """Memory of one training step: saved-for-backward bytes, and the CUDA peak where there is one."""
    params = {p.untyped_storage().data_ptr() for p in step.model.parameters()}
    dev = next(step.model.parameters()).device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    with SavedTensors(step.model, getattr(step, "memory", "fast"), getattr(step, "packing", "bits"), exclude=params,
                      count=True, recompute=getattr(step, "recompute", True),
                      plan=getattr(step, "plan", None)) as saved:
        step()
    out = {"saved_mib": mib(saved.kept_bytes)}
    if dev.type == "cuda":
        out["peak_mib"] = mib(torch.cuda.max_memory_allocated(dev) - base)
    return out


# malloc settings of the child that measures CPU peaks: every block of 64 KiB or more is its own
# mapping, unmapped when freed, so the resident set follows the tensors alive
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_TOP_PAD_": "0"}


def _proc_status(key: str) -> int:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(key + ":"))
    return int(line.split()[1]) * 1024


class _Marks:
    """The peak memory a step adds between marks, over the memory before it: the CUDA allocator's
    peak over what is allocated (after emptying its cache); on CPU (Linux, in a process with
    :data:`MALLOC_ENV`) the resident set's high-water mark, reset through
    ``/proc/self/clear_refs``, over the resident set. ``marks``: ``(label, MiB)`` for each mark,
    the peak since the previous one."""

    def __init__(self, device: torch.device):
        self.device, self.marks = device, []
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            self.base = torch.cuda.memory_allocated(device)
        else:
            self.base = _proc_status("VmRSS")
        self._reset()

    def _reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")

    def __call__(self, label: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _proc_status("VmHWM")
        self.marks.append((label, mib(peak - self.base)))
        self._reset()


def peak_mib(step, device: torch.device, rounds: int = 2) -> float:
    """The peak memory one training step adds (MiB, :class:`_Marks`), after a first step has made
    lazily created state (optimizer momentum, compiled kernels). Least of ``rounds``."""
    step()
    values = []
    for _ in range(rounds):
        mark = _Marks(device)
        step()
        mark("step")
        values.append(mark.marks[0][1])
    return min(values)


def min_phases(step, device: torch.device) -> dict:
    """Where a ``run.memory=min`` step peaks (``peak_mib``: MiB over the memory before it, as
    :func:`peak_mib`, which still holds the previous step's gradients that ``zero_grad`` frees):
    before the student's forward (the teacher's forward, without a graph), in the student's
    forward, while a block runs again in backward, or while backward goes through a block between
    those (and through the head and the loss); and how many of its blocks (``blocks``) ran again
    (``run_again``). The least of two steps, after a first."""
    from sakd.training.memory import units as recompute

    run_again, begin = recompute.UnitCall.recompute, recompute.UnitCall.begin
    step()
    rounds = []
    for _ in range(2):
        mark, counts = _Marks(device), {"blocks": 0, "run_again": 0}

        def watched(call, mark=mark, counts=counts):
            mark("backward")
            run_again(call)
            counts["run_again"] += 1
            mark("run again")

        def counted(call, args, counts=counts):
            counts["blocks"] += 1
            begin(call, args)

        handles = [step.model.register_forward_pre_hook(lambda *_, mark=mark: mark("before the forward")),
                   step.model.register_forward_hook(lambda *_, mark=mark: mark("forward"))]
        recompute.UnitCall.recompute, recompute.UnitCall.begin = watched, counted
        try:
            step()
        finally:
            recompute.UnitCall.recompute, recompute.UnitCall.begin = run_again, begin
            for h in handles:
                h.remove()
        mark("backward")
        peaks = {k: max((peak for label, peak in mark.marks if label == k), default=0.0)
                 for k in ("before the forward", "forward", "run again", "backward")}
        rounds.append({"peak_mib": peaks, **counts})
    return min(rounds, key=lambda r: max(r["peak_mib"].values()))


def peak_steps(s: Setup) -> dict:
    steps = {
        "ann_B": s.ann_step("B"),
        "sakd": s.step(s.student(), True),
        "sakd_lean": s.step(s.student(), True, "lean"),
        "sakd_min": s.step(s.student(), True, "min"),
    }
    if s.sj:
        steps["sakd_spikingjelly"] = s.step(s.student(peer=True), True)
        steps |= memopt_steps(s)
    return steps


# SpikingJelly's memopt checkpoint_budget values: the share of its candidate blocks it checkpoints
# (the largest activations first): every block, 3/4, 1/2
MEMOPT_BUDGETS = {"memory": "sakd_spikingjelly_memopt", "balanced": "sakd_spikingjelly_memopt_balanced",
                  "speed": "sakd_spikingjelly_memopt_speed"}


def memopt_steps(s: Setup) -> dict:
    """The SpikingJelly SAKD step after ``memopt.optimize_memory`` at each ``checkpoint_budget``."""
    return {name: s.step(s.memopt_student(budget), True) for budget, name in MEMOPT_BUDGETS.items()}


def min_plans(make, steps: list[tuple[int, int, bool]]) -> dict:
    """``run.memory=min``'s plans (:meth:`Setup.min_plan`) of the steps (batch, T, SAKD or not) a
    CPU peak child measures, made in this process: ``make(batch, plans)`` gives a :class:`Setup`."""
    plans, setups = {}, {}
    for batch, t, sakd in steps:
        s = setups[batch] = setups.get(batch) or make(batch, plans)
        s.step(s.student(timesteps=t), sakd, "min")
    return plans


def measure_peaks(width: float, batch: int, device, sj, spec: NeuronSpec, plans: dict | None = None) -> dict:
    """Figure 8 at one batch size, in this process: {step: peak MiB}."""
    s = Setup(width, batch, device, sj, spec, plans=plans)
    return {name: peak_mib(step, device) for name, step in peak_steps(s).items()}


def measure_peaks_vs_T(width: float, batch: int, device, spec: NeuronSpec, plans: dict | None = None) -> dict:
    """Figure 9's peaks, in this process: {mode: {T: peak MiB}} of the SAKD step (against figure 8's
    ANN step on B)."""
    s = Setup(width, batch, device, None, spec, plans=plans)
    out = {mode: {str(t): peak_mib(s.step(s.student(timesteps=t), True, mode), device) for t in TIMESTEPS}
           for mode in MEMORY_MODES_T}
    out["sltt"] = {
        str(t): peak_mib(s.step(s.student(timesteps=t), True, "lean", bptt="sltt"), device) for t in TIMESTEPS
    }
    out["min_phases"] = {
        kind: min_phases(s.step(s.student(), kind == "sakd", "min"), device) for kind in ("sakd", "snn")
    }
    return out


def measure_network_peaks(key: str, batch: int, device, spec: NeuronSpec, plans: dict | None = None) -> dict:
    """Figure 10's peaks, in this process: the ANN step and the fast, lean and min SAKD steps at B;
    the ANN and min steps at 2B (the largest batch's fit); min at T = 1 and 8."""
    s, s2 = Setup(1.0, batch, device, None, spec, key, plans), Setup(1.0, 2 * batch, device, None, spec, key, plans)
    modes = {"sakd": "fast", "sakd_lean": "lean", "sakd_min": "min"} if has_blocks(s) else {"sakd": "fast",
                                                                                           "sakd_lean": "lean"}
    least = "sakd_min" if "sakd_min" in modes else "sakd_lean"  # the least-memory mode the network has
    out = {"B": {"ann_B": peak_mib(s.ann_step("B"), device),
                 **{name: peak_mib(s.step(s.student(), True, mode), device) for name, mode in modes.items()}},
           "2B": {"ann_B": peak_mib(s2.ann_step("B"), device),
                  least: peak_mib(s2.step(s2.student(), True, modes[least]), device)},
           "least": least}
    out["least_T"] = {str(t): peak_mib(s.step(s.student(timesteps=t), True, modes[least]), device) for t in (1, 8)}
    out["least_T"][str(T)] = out["B"][least]
    return out


def has_blocks(s: Setup) -> bool:
    """Whether the network names blocks that ``run.memory=min`` can run again (a plain network has none)."""
    return bool(s.student().recompute_units())


def bench_network(key: str, batch: int, device, spec: NeuronSpec, warmup: int, repeats: int, budget_gib: float,
                  log) -> dict:
    """Figure 10: for another network, its limit ratio, the SAKD step's time in each memory mode
    and its peaks (ANN on B, fast, lean, min; min's growth from T=1 to 8; the largest min batch
    within ``budget_gib``)."""
    s = Setup(1.0, batch, device, None, spec, key)
    steps = {"ann_TxB": s.ann_step(), "snn": s.step(s.student(), False), "sakd": s.step(s.student(), True),
             "sakd_lean": s.step(s.student(), True, "lean")}
    if has_blocks(s):
        steps["sakd_min"] = s.step(s.student(), True, "min")
    log(f"{key}: timing {', '.join(steps)} (batch {batch}, T={T}, {repeats} rounds)")
    sec = interleaved(steps, device, warmup, repeats)
    out = {"network": key, "model": NETWORKS[key][0], "options": NETWORKS[key][1], "batch": batch, "timesteps": T,
           "step_s": sec, "limit_ratio": sec["snn"] / sec["ann_TxB"], "lean_time": sec["sakd_lean"] / sec["sakd"]}
    if "sakd_min" in sec:
        out["min_time"] = sec["sakd_min"] / sec["sakd"]
    log(f"{key}: peak memory" + ("" if device.type == "cuda" else " (child process)"))
    if device.type == "cuda":
        peaks = measure_network_peaks(key, batch, device, spec)
    else:
        steps = [(batch, T, True), (2 * batch, T, True), (batch, 1, True), (batch, 8, True)] if has_blocks(s) else []
        job = {"network": key, "batch": batch, "neuron": {"name": spec.name, "reset": spec.reset, "decay": spec.decay},
               "plans": min_plans(lambda b, plans: Setup(1.0, b, device, None, spec, key, plans), steps)}
        done = subprocess.run([sys.executable, __file__, "--peak-child", json.dumps(job)],
                              env={**os.environ, **MALLOC_ENV}, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"peak-memory child failed: {done.stderr.strip().splitlines()[-1:]}")
        peaks = json.loads(done.stdout.strip().splitlines()[-1])
    b, least = peaks["B"], peaks["least"]
    per_image = (peaks["2B"][least] - b[least]) / batch
    fixed = b[least] - per_image * batch
    out["peak"] = {**peaks, "measure": "cuda_peak" if device.type == "cuda" else "rss_high_water_mark",
                   "lean_vs_ann_B": b["sakd_lean"] / b["ann_B"],
                   "least_T8_vs_T1": peaks["least_T"]["8"] / peaks["least_T"]["1"],
                   "least_largest_batch": int((budget_gib * 1024 - fixed) // per_image) if per_image > 0 else None,
                   "budget_gib": budget_gib}
    if "sakd_min" in b:
        out["peak"] |= {"min_vs_ann_B": b["sakd_min"] / b["ann_B"], "fast_vs_min": b["sakd"] / b["sakd_min"]}
    return out


def bench_peak(width: float, batch: int, device, sj, spec: NeuronSpec, budget_gib: float, log) -> dict:
    """Figure 8: peaks at B and 2B (on CPU each in a child process with :data:`MALLOC_ENV`), the
    linear fit peak(B) = fixed + per_image * B, and the largest batch within ``budget_gib``."""
    if device.type != "cuda" and not Path("/proc/self/clear_refs").exists():
        return {"skipped": "the CPU peak needs Linux's /proc/self/clear_refs"}
    batches = (batch, 2 * batch)
    log(
        f"width {width}: peak memory at B={batches[0]} and {batches[1]}"
        + ("" if device.type == "cuda" else " (child process)")
    )
    if device.type == "cuda":
        by_batch = {b: measure_peaks(width, b, device, sj, spec) for b in batches}
        by_t = measure_peaks_vs_T(width, batch, device, spec)
    else:  # one child for both sizes: each step's peak is its own (clear_refs resets the high-water mark)
        steps = [(b, T, True) for b in batches] + [(batch, t, True) for t in TIMESTEPS] + [(batch, T, False)]
        job = {"width": width, "batches": batches, "peer": sj is not None,
               "neuron": {"name": spec.name, "reset": spec.reset, "decay": spec.decay},
               "plans": min_plans(lambda b, plans: Setup(width, b, device, None, spec, plans=plans), steps)}
        done = subprocess.run(
            [sys.executable, __file__, "--peak-child", json.dumps(job)],
            env={**os.environ, **MALLOC_ENV},
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"peak-memory child failed: {done.stderr.strip().splitlines()[-1:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        by_t = measured.pop("vs_T")
        by_batch = {int(b): p for b, p in measured.items()}
    (b1, p1), (b2, p2) = by_batch.items()
    budget = budget_gib * 1024
    fit = {}
    for name in p1:
        per_image = (p2[name] - p1[name]) / (b2 - b1)
        fixed = p1[name] - per_image * b1
        fit[name] = {"per_image_mib": per_image, "fixed_mib": fixed,
                     "largest_batch": int((budget - fixed) // per_image) if per_image > 0 else None}
    out = {"peak_mib": {str(b): v for b, v in by_batch.items()}, "fit": fit, "budget_gib": budget_gib,
           "measure": "cuda_peak" if device.type == "cuda" else "rss_high_water_mark"}
    if "sakd_spikingjelly_memopt" in p1:
        out["memopt_level"] = 4 if device.type == "cuda" else 1
        out["lean_vs_memopt"] = p1["sakd_lean"] / p1["sakd_spikingjelly_memopt"]
        out["min_vs_memopt"] = p1["sakd_min"] / p1["sakd_spikingjelly_memopt"]
        out["memopt_vs_default"] = {b: p1[name] / p1["sakd_spikingjelly"] for b, name in MEMOPT_BUDGETS.items()}
    out["lean_vs_ann_B"] = p1["sakd_lean"] / p1["ann_B"]
    out["min_vs_ann_B"] = p1["sakd_min"] / p1["ann_B"]
    out["fast_vs_min"] = p1["sakd"] / p1["sakd_min"]
    by_t.pop("ann_B", None)
    out["min_phases"] = by_t.pop("min_phases")
    ann = p1["ann_B"]  # the ANN step's peak on B, as figure 8 measured it
    out["vs_T"] = {"batch": batch, "ann_B_mib": ann, "peak_mib": by_t,
                   "vs_ann_B": {m: {t: v / ann for t, v in by.items()} for m, by in by_t.items()}}
    out["sltt_T8_vs_T2"] = by_t["sltt"]["8"] / by_t["sltt"]["2"]
    return out


# -- the figures -------------------------------------------------------------------------------------
def bench_width(width: float, batch: int, device, sj, spec: NeuronSpec, warmup: int, repeats: int, log) -> dict:
    s = Setup(width, batch, device, sj, spec)
    steps = {"ann_TxB": s.ann_step(), "ann_B": s.ann_step("B"), "snn": s.step(s.student(), False),
             "sakd": s.step(s.student(), True), "sakd_lean": s.step(s.student(), True, "lean"),
             "sakd_lean_uint8": s.step(s.student(), True, "lean", "uint8"),
             "sakd_lean_bits_only": s.step(s.student(), True, "lean", recompute=False),
             "sakd_min": s.step(s.student(), True, "min"), "sakd_sltt": s.step(s.student(), True, bptt="sltt"),
             "sakd_sltt_lean": s.step(s.student(), True, "lean", bptt="sltt")}
    if sj:
        steps["snn_spikingjelly"] = s.step(s.student(peer=True), False)
        steps["sakd_spikingjelly"] = s.step(s.student(peer=True), True)
        steps |= memopt_steps(s)
    log(f"width {width}: timing {', '.join(steps)} (batch {batch}, T={T}, {repeats} rounds)")
    sec = interleaved(steps, device, warmup, repeats)
    mem = {k: step_memory(fn) for k, fn in steps.items()}
    out = {
        "width": width, "batch": batch, "timesteps": T, "step_s": sec, "memory": mem,
        "limit_ratio": sec["snn"] / sec["ann_TxB"],
        "sakd_overhead": sec["sakd"] / sec["snn"],
    }
    key = "peak_mib" if device.type == "cuda" else "saved_mib"
    out["lean"] = {
        "memory_measure": key,
        **{
            f"{tag}_{what}": value
            for tag, step in (("bits", "sakd_lean"), ("uint8", "sakd_lean_uint8"))
            for what, value in (
                ("time_ratio", sec[step] / sec["sakd"]),
                ("memory_ratio", mem[step][key] / mem["sakd"][key]),
                ("vs_ann_B", mem[step][key] / mem["ann_B"][key]),
            )
        },
        "fast_vs_ann_B": mem["sakd"][key] / mem["ann_B"][key],
        "bits_only_memory_ratio": mem["sakd_lean_bits_only"][key] / mem["sakd"][key],
        "bits_only_time_ratio": sec["sakd_lean_bits_only"] / sec["sakd"],
    }
    out["sltt_time_ratio"] = sec["sakd_sltt"] / sec["sakd"]  # both run.memory=fast: only run.bptt differs
    out["sltt_lean_time_ratio"] = sec["sakd_sltt_lean"] / sec["sakd"]
    out["min"] = {"memory_measure": key, "time_ratio": sec["sakd_min"] / sec["sakd"],
                  "memory_ratio": mem["sakd_min"][key] / mem["sakd"][key],
                  "vs_ann_B": mem["sakd_min"][key] / mem["ann_B"][key]}
    if sj:
        key = "peak_mib" if device.type == "cuda" else "saved_mib"
        out["peer"] = {
            "snn_speedup": sec["snn_spikingjelly"] / sec["snn"],
            "sakd_speedup": sec["sakd_spikingjelly"] / sec["sakd"],
            "sakd_memory_ratio": mem["sakd"][key] / mem["sakd_spikingjelly"][key],
            "memory_measure": key,
            # SpikingJelly's memopt step (each checkpoint_budget) against its own default step's time
            "memopt_time": {budget: sec[name] / sec["sakd_spikingjelly"] for budget, name in MEMOPT_BUDGETS.items()},
            "min_time_vs_memopt": sec["sakd_min"] / sec["sakd_spikingjelly_memopt"],
        }

    # 5. memory vs T (one step each; the time axis is what grows)
    by_t = {}
    for t in (1, 2, 4, 8):
        by_t[t] = step_memory(s.step(s.student(timesteps=t), True))
    ts = list(by_t)
    key = "peak_mib" if device.type == "cuda" else "saved_mib"
    ys = [by_t[t][key] for t in ts]
    mt, my = statistics.mean(ts), statistics.mean(ys)
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / sum((t - mt) ** 2 for t in ts)
    out["memory_vs_T"] = {"measure": key, "mib": {str(t): by_t[t] for t in ts}, "slope_mib_per_step": slope,
                          "intercept_mib": my - slope * mt}
    # 9. what each memory mode keeps at T = 1, 2, 4, 8, against the ANN step on B images
    ann_b = mem["ann_B"][key]
    kept = {mode: {str(t): step_memory(s.step(s.student(timesteps=t), True, mode))[key] for t in TIMESTEPS}
            for mode in MEMORY_MODES_T}
    out["modes_vs_T"] = {"measure": key, "ann_B_mib": ann_b, "mib": kept,
                         "vs_ann_B": {m: {t: v / ann_b for t, v in by.items()} for m, by in kept.items()}}

    # 6. inference, eval mode, no grad
    inf_batch = batch * 4
    xi = torch.randn(inf_batch, 3, 32, 32, device=device)
    models = {"snn": s.student().eval(), "ann": s.ann.eval()}
    if sj:
        models["snn_spikingjelly"] = s.student(peer=True).eval()

    def infer(m):
        reset = getattr(m, "reset_peer", None)

        def run():
            with torch.inference_mode():
                m(xi)
            if reset:
                reset(m)
        return run

    isec = interleaved({k: infer(m) for k, m in models.items()}, device, warmup, repeats)
    out["inference_images_per_s"] = {k: inf_batch / v for k, v in isec.items()}
    out["inference_batch"] = inf_batch
    s.ann.train()
    return out


def bench_neuron(device, sj, spec: NeuronSpec, warmup: int, repeats: int, shape=(4, 64, 128, 16, 16)) -> dict:
    """Figure 4: one layer of ``spec``'s neuron, forward + backward, on each backend, and ReLU on the
    same tensor (the ANN's activation: the floor of what an elementwise layer costs)."""
    torch.manual_seed(0)
    x = (torch.randn(shape, device=device) * 1.5 + 0.5).requires_grad_()
    g = torch.randn(shape, device=device)
    backends = (["compiled"] if kernels.compiler_available(device.type) else []) + ["fused"]
    layers: dict[str, Callable] = {f"sakd_{b}": replace(spec, backend=b).build().to(device) for b in backends}
    layers["pytorch_loop"] = replace(spec, backend="reference").build().to(device)
    if sj:
        node = sj_node(sj, spec).to(device)

        def peer(v):
            out = node(v)
            sj[0].reset_net(node)
            return out
        layers["spikingjelly"] = peer
    reference = layers["pytorch_loop"](x.detach())
    agree = {k: bool(torch.equal(f(x).detach(), reference)) for k, f in layers.items()}
    layers["relu"] = torch.relu

    def fwd_bwd(f):
        def run():
            x.grad = None
            f(x).backward(g)
        return run

    sec = interleaved({k: fwd_bwd(f) for k, f in layers.items()}, device, warmup, repeats)
    mem = {}
    for k, f in layers.items():
        with saved_for_backward(set()) as saved:
            out = f(x)
        out.backward(g)
        mem[k] = mib(sum(saved.values()))
    return {"neuron": spec.name, "shape": list(shape), "ms": {k: v * 1e3 for k, v in sec.items()}, "saved_mib": mem,
            "same_spikes_as_reference": agree}


# -- report ------------------------------------------------------------------------------------------
def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        info["spikingjelly"] = importlib.metadata.version("spikingjelly")
    return info


def goal_row(label: str, value: float, shown: str, goal: str, detail: str, record: list | None = None) -> list[str]:
    """A table row for a figure with a goal: ``goal`` is a key of :data:`GOALS`; speed-ups and
    :data:`HIGHER_IS_BETTER` figures are better high, every other figure better low. ``record``
    gets ``{"goal", "value", "target", "met", "where"}``."""
    higher = goal in HIGHER_IS_BETTER
    target = GOALS[goal]
    met = value >= target if higher else value <= target
    if record is not None:
        record.append({"goal": goal, "value": value, "target": target, "met": bool(met), "where": label,
                       "better": "higher" if higher else "lower"})
    unit = "x" if goal.startswith(("peer", "lean_vs_memopt", "fast_peak")) else ""
    return [label, shown, f"{'>=' if higher else '<='} {target}{unit}", "met" if met else "missed", detail]


def report(result: dict, goals: list | None = None) -> list[list[str]]:
    """The table's rows; every goal's record goes to ``goals``."""
    rows = []
    for w in result["widths"]:
        tag = f"ResNet-19 x{w['width']:g}, B={w['batch']}"
        ms = {k: f"{v * 1e3:.0f} ms" for k, v in w["step_s"].items()}
        rows.append(goal_row(f"1 limit ratio ({tag})", w["limit_ratio"], f"{w['limit_ratio']:.3f}", "limit_ratio",
                             f"SNN {ms['snn']} vs ANN on T·B {ms['ann_TxB']}", record=goals))
        rows.append(goal_row(f"2 SAKD overhead ({tag})", w["sakd_overhead"], f"{w['sakd_overhead']:.3f}",
                             "sakd_overhead", f"SAKD {ms['sakd']}", record=goals))
        peer = w.get("peer")
        if peer:
            for step in ("snn", "sakd"):
                value = peer[f"{step}_speedup"]
                rows.append(goal_row(f"3 peer speed-up, {step.upper()} step ({tag})", value, f"{value:.2f}x",
                                     "peer_speedup", f"SpikingJelly {ms[f'{step}_spikingjelly']} "
                                     f"({result.get('spikingjelly_implementation', '?')})", record=goals))
            key, value = peer["memory_measure"], peer["sakd_memory_ratio"]
            rows.append(goal_row(f"3 peer memory, SAKD step ({tag})", value, f"{value:.2f}x", "peer_memory",
                                 f"{key}: ours {w['memory']['sakd'][key]:.0f} MiB, "
                                 f"SpikingJelly {w['memory']['sakd_spikingjelly'][key]:.0f} MiB", record=goals))
            lean_peer = w["memory"]["sakd_lean"][key] / w["memory"]["sakd_spikingjelly"][key]
            rows.append(
                goal_row(
                    f"7 peer memory, lean SAKD step ({tag})",
                    lean_peer,
                    f"{lean_peer:.2f}x",
                    "peer_memory",
                    f"{key}: lean {w['memory']['sakd_lean'][key]:.0f} MiB",
                    record=goals,
                )
            )
            times = ", ".join(f"{b} {v:.2f}x" for b, v in peer["memopt_time"].items())
            rows.append([f"7 min step time / SpikingJelly memopt's ({tag})", f"{peer['min_time_vs_memopt']:.2f}x", "",
                         "", f"memopt's step / SpikingJelly's default by checkpoint_budget: {times}"])
        else:
            rows.append([f"3 peer ({tag})", "n/a", "", "n/a", f"SpikingJelly: {result['spikingjelly_missing']}"])
        lean, mem = w["lean"], w["memory"]
        key = lean["memory_measure"]
        rows.append(
            goal_row(
                f"7 lean SAKD memory / ANN on B ({tag})",
                lean["bits_vs_ann_B"],
                f"{lean['bits_vs_ann_B']:.2f}",
                "lean_vs_ann",
                f"{key}: lean {mem['sakd_lean'][key]:.0f} MiB (uint8 "
                f"{mem['sakd_lean_uint8'][key]:.0f}), fast {mem['sakd'][key]:.0f} MiB "
                f"({lean['fast_vs_ann_B']:.2f}x), ANN on B {mem['ann_B'][key]:.0f} MiB",
                record=goals,
            )
        )
        rows.append(
            goal_row(
                f"7 lean SAKD step time / fast ({tag})",
                lean["bits_time_ratio"],
                f"{lean['bits_time_ratio']:.3f}",
                "lean_time",
                f"uint8 packing {lean['uint8_time_ratio']:.3f}; memory lean/fast "
                f"{lean['bits_memory_ratio']:.2f} (uint8 {lean['uint8_memory_ratio']:.2f})",
                record=goals,
            )
        )
        rows.append([f"7 lean, spikes as bits only ({tag})", f"{lean['bits_only_memory_ratio']:.2f}", "", "",
                     f"memory / fast without making neuron inputs again; time {lean['bits_only_time_ratio']:.3f}"])
        m = w["min"]
        rows.append(
            goal_row(
                f"7 min SAKD step time / fast ({tag})",
                m["time_ratio"],
                f"{m['time_ratio']:.3f}",
                "min_time",
                f"{m['memory_measure']}: min {mem['sakd_min'][key]:.0f} MiB, {m['memory_ratio']:.2f}x fast, "
                f"{m['vs_ann_B']:.2f}x ANN on B",
                record=goals,
            )
        )
        rows.append(
            goal_row(
                f"9 SLTT SAKD step time / fast ({tag})",
                w["sltt_time_ratio"],
                f"{w['sltt_time_ratio']:.3f}",
                "sltt_time",
                f"T={T} timesteps one at a time, both run.memory=fast; with run.memory=lean "
                f"{w['sltt_lean_time_ratio']:.3f}",
                record=goals,
            )
        )
        rows += peak_rows(w["peak"], tag, goals)
        modes = w["modes_vs_T"]
        rows.append([f"9 kept / ANN on B vs T ({tag})", "", "", "",
                     "; ".join(f"{mode} " + ", ".join(f"T={t}: {v:.2f}" for t, v in by.items())
                               for mode, by in modes["vs_ann_B"].items())])
        m = w["memory_vs_T"]
        pts = ", ".join(f"T={t}: {v[m['measure']]:.0f}" for t, v in m["mib"].items())
        rows.append([f"5 memory vs T ({tag})", f"{m['slope_mib_per_step']:.1f} MiB/T", "", "",
                     f"{m['measure']} of a SAKD step, MiB: {pts}"])
        ips = w["inference_images_per_s"]
        rows.append(
            [
                f"6 inference, T={T} ({tag})",
                f"{ips['snn']:.0f} img/s",
                "",
                "",
                f"batch {w['inference_batch']}; ANN {ips['ann']:.0f} img/s"
                + (f", SpikingJelly SNN {ips['snn_spikingjelly']:.0f} img/s" if "snn_spikingjelly" in ips else ""),
            ]
        )
    for net in result.get("networks", []):
        rows += network_rows(net, goals)
    n = result["neuron"]
    ms = n["ms"]
    best = ms.get("sakd_compiled", ms["sakd_fused"])
    detail = ", ".join(f"{k} {v:.1f} ms ({n['saved_mib'][k]:.0f} MiB saved)" for k, v in ms.items())
    rows.append([f"4 neuron alone ({n['neuron']}) {n['shape']}", f"{best:.1f} ms", "", "", detail])
    rows.append(["4 neuron / ReLU (same tensor)", f"{best / ms['relu']:.2f}x", "", "",
                 f"vs the plain PyTorch loop {ms['pytorch_loop'] / best:.2f}x"
                 + (f", vs SpikingJelly {ms['spikingjelly'] / best:.2f}x faster" if "spikingjelly" in ms else "")])
    call = result["neuron_call"]
    rows.append(
        [
            f"4 cost of one layer call, {call['shape']}",
            f"{call['ms'].get('sakd_compiled', call['ms']['sakd_fused']) * 1e3:.0f} us",
            "",
            "",
            ", ".join(f"{k} {v * 1e3:.0f} us" for k, v in call["ms"].items()),
        ]
    )
    return rows


def network_rows(net: dict, goals: list | None = None) -> list[list[str]]:
    """Figure 10's rows for one network (``min``'s only where it names blocks to run again)."""
    tag, p = f"{net['network']}, B={net['batch']}", net["peak"]
    b, by_t, least = p["B"], p["least_T"], p["least"].removeprefix("sakd_")
    rows = [
        goal_row(f"10 limit ratio ({tag})", net["limit_ratio"], f"{net['limit_ratio']:.3f}", "limit_ratio",
                 f"{net['model']}: SNN step vs ANN on T·B", record=goals),
        goal_row(f"10 lean SAKD step time / fast ({tag})", net["lean_time"], f"{net['lean_time']:.3f}", "lean_time",
                 "", record=goals),
    ]
    peaks = ", ".join(f"{k.removeprefix('sakd_').replace('sakd', 'fast').replace('ann_B', 'ANN on B')} {v:.0f}"
                      for k, v in b.items())
    if "min_time" in net:
        rows += [
            goal_row(f"10 min SAKD step time / fast ({tag})", net["min_time"], f"{net['min_time']:.3f}", "min_time",
                     "", record=goals),
            goal_row(f"10 peak memory min / ANN on B ({tag})", p["min_vs_ann_B"], f"{p['min_vs_ann_B']:.2f}",
                     "min_peak_vs_ann_peak", f"{p['measure']}, MiB: {peaks}", record=goals),
            goal_row(f"10 peak memory fast / min ({tag})", p["fast_vs_min"], f"{p['fast_vs_min']:.2f}",
                     "fast_peak_vs_min_peak", "", record=goals),
        ]
    else:
        rows.append([f"10 peak memory, MiB ({tag})", f"lean {b['sakd_lean']:.0f}", "", "",
                     f"{p['measure']}: {peaks}; no blocks for run.memory=min (a plain network)"])
    rows.append([f"10 {least} peak T=1 -> 8; largest {least} batch in {p['budget_gib']:.0f} GiB ({tag})",
                 f"{p['least_T8_vs_T1']:.2f}x", "", "",
                 f"MiB: T=1 {by_t['1']:.0f}, T=4 {by_t['4']:.0f}, T=8 {by_t['8']:.0f}; batch "
                 f"{p['least_largest_batch']} (linear fit of B and 2B)"])
    return rows


def peak_rows(peak: dict, tag: str, goals: list | None = None) -> list[list[str]]:
    """Figure 8's rows (and figure 9's peaks)."""
    if "skipped" in peak:
        return [[f"8 peak memory ({tag})", "n/a", "", "n/a", peak["skipped"]]]
    b = next(iter(peak["peak_mib"]))
    p, fit = peak["peak_mib"][b], peak["fit"]
    names = {
        "ann_B": "ANN on B",
        "sakd": "fast",
        "sakd_lean": "lean",
        "sakd_min": "min",
        "sakd_spikingjelly": "SpikingJelly",
        **{name: f"SpikingJelly memopt L{peak.get('memopt_level', '')} {budget}"
           for budget, name in MEMOPT_BUDGETS.items()},
    }
    detail = ", ".join(f"{names[k]} {v:.0f}" for k, v in p.items())
    rows = [goal_row(f"8 peak memory lean / ANN on B ({tag})", peak["lean_vs_ann_B"], f"{peak['lean_vs_ann_B']:.2f}",
                     "lean_vs_ann", f"{peak['measure']} at B={b}, MiB: {detail}", record=goals)]
    if "lean_vs_memopt" in peak:
        rows.append(goal_row(f"8 peak memory lean / SpikingJelly memopt ({tag})", peak["lean_vs_memopt"],
                             f"{peak['lean_vs_memopt']:.2f}x", "lean_vs_memopt",
                             f"memopt level {peak['memopt_level']}; lean / SpikingJelly default "
                             f"{p['sakd_lean'] / p['sakd_spikingjelly']:.2f}x", record=goals))
        shares = ", ".join(f"{b} {v:.2f}x" for b, v in peak["memopt_vs_default"].items())
        rows.append([f"8 peak memory min / SpikingJelly memopt ({tag})", f"{peak['min_vs_memopt']:.2f}x", "", "",
                     f"memopt's peak / SpikingJelly's default by checkpoint_budget: {shares}"])
    rows.append(
        goal_row(
            f"8 peak memory min / ANN on B ({tag})",
            peak["min_vs_ann_B"],
            f"{peak['min_vs_ann_B']:.2f}",
            "min_peak_vs_ann_peak",
            f"{peak['measure']} at B={b}: min {p['sakd_min']:.0f} MiB",
            record=goals,
        )
    )
    rows.append(
        goal_row(
            f"8 peak memory fast / min ({tag})",
            peak["fast_vs_min"],
            f"{peak['fast_vs_min']:.2f}x",
            "fast_peak_vs_min_peak",
            f"fast {p['sakd']:.0f} MiB, min {p['sakd_min']:.0f} MiB",
            record=goals,
        )
    )
    vs_t = peak["vs_T"]
    rows.append(goal_row(f"9 SLTT peak at T=8 / at T=2 ({tag})", peak["sltt_T8_vs_T2"], f"{peak['sltt_T8_vs_T2']:.3f}",
                         "sltt_peak_T8_vs_T2", "run.bptt=sltt with run.memory=lean: " + ", ".join(
                             f"T={t}: {v:.0f} MiB" for t, v in vs_t["peak_mib"]["sltt"].items()), record=goals))
    phases = peak["min_phases"]
    worst = max(phases["sakd"]["peak_mib"], key=phases["sakd"]["peak_mib"].get)
    rows.append([f"8 where min peaks, MiB ({tag})", f"{worst}: {phases['sakd']['peak_mib'][worst]:.0f}", "", "",
                 "; ".join(f"{kind}: " + ", ".join(f"{k} {v:.0f}" for k, v in by["peak_mib"].items())
                           + f", {by['run_again']} of {by['blocks']} blocks run again" for kind, by in phases.items())
                 + f" (ANN step on B {p['ann_B']:.0f})"])
    rows.append([f"9 peak / ANN on B vs T ({tag})", "", "", "",
                 "; ".join(f"{mode} " + ", ".join(f"T={t}: {v:.2f}" for t, v in by.items())
                           for mode, by in vs_t["vs_ann_B"].items())])
    largest = ", ".join(f"{names[k]} {v['largest_batch']}" for k, v in fit.items())
    rows.append(
        [
            f"8 largest batch in {peak['budget_gib']:g} GiB ({tag})",
            f"{fit['sakd_lean']['largest_batch']}",
            "",
            "",
            f"linear fit of the peaks at B and 2B: {largest}",
        ]
    )
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/4-width model only, fewer repeats")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=None, help="training batch B (default: per device)")
    parser.add_argument("--widths", type=float, nargs="+", default=None, help="width multipliers of ResNet-19")
    parser.add_argument("--networks", nargs="*", default=None, choices=sorted(NETWORKS),
                        help="figure 10's other networks (default: all of them; none with --quick)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--neuron-shape", type=int, nargs="+", default=[4, 64, 128, 16, 16])
    parser.add_argument("--neuron", default="lif", choices=NEURONS.names(), help="the student's neuron (default lif)")
    parser.add_argument("--reset", default="hard", choices=("hard", "soft"))
    parser.add_argument("--decay", type=float, default=0.5, help="the leak λ (PLIF: its initial value)")
    parser.add_argument("--no-peer", action="store_true", help="skip SpikingJelly even where installed")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/suite-<device>.json)")
    parser.add_argument("--budget-gib", type=float, default=16.0, help="memory budget of figure 8's largest batch")
    parser.add_argument("--peak-child", default=None, help=argparse.SUPPRESS)  # figure 8's CPU measuring process
    args = parser.parse_args(argv)
    if args.peak_child:
        job = json.loads(args.peak_child)
        spec = NeuronSpec(**job["neuron"])
        if "network" in job:  # figure 10
            print(json.dumps(measure_network_peaks(job["network"], job["batch"], torch.device("cpu"), spec,
                                                   job["plans"])))
            return {}
        sj = spikingjelly()[0] if job["peer"] else None
        plans = job["plans"]
        peaks = {b: measure_peaks(job["width"], b, torch.device("cpu"), sj, spec, plans) for b in job["batches"]}
        peaks["vs_T"] = measure_peaks_vs_T(job["width"], job["batches"][0], torch.device("cpu"), spec, plans)
        print(json.dumps(peaks))
        return {}

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device PyTorch can use")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    widths = args.widths or ([0.25] if args.quick else [1.0, 0.25])
    repeats = args.repeats or (3 if args.quick else 7)
    batch = args.batch or (64 if device.type == "cuda" else 8)
    spec = NeuronSpec(name=args.neuron, reset=args.reset, decay=args.decay)
    sj, missing = (None, "skipped (--no-peer)") if args.no_peer else spikingjelly()
    if sj and peer_missing(spec):
        sj, missing = None, peer_missing(spec)
    start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    result = {"machine": machine(device), "quick": args.quick, "targets": GOALS, "spikingjelly_missing": missing,
              "student_neuron": {"name": spec.name, "reset": spec.reset, "decay": spec.decay},
              "widths": []}
    if sj:
        result["spikingjelly_implementation"] = sj_implementation(spec, device)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"suite-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for w in widths:
        result["widths"].append(bench_width(w, batch, device, sj, spec, args.warmup, repeats, log))
        result["widths"][-1]["peak"] = bench_peak(w, batch, device, sj, spec, args.budget_gib, log)
        out.write_text(json.dumps({**result, "partial": True}, indent=2))  # a run cut short keeps what it measured
    result["networks"] = []
    for key in args.networks if args.networks is not None else ([] if args.quick else list(NETWORKS)):
        result["networks"].append(bench_network(key, batch, device, spec, args.warmup, repeats, args.budget_gib, log))
        out.write_text(json.dumps({**result, "partial": True}, indent=2))
    log(f"neuron alone ({spec.name}) {args.neuron_shape}")
    result["neuron"] = bench_neuron(device, sj, spec, args.warmup, repeats, tuple(args.neuron_shape))
    # the same on a tensor of 4 x 8 elements: what a layer costs besides its elementwise work
    result["neuron_call"] = bench_neuron(device, sj, spec, args.warmup, 20 * repeats, (T, 2, 1, 2, 2))
    result["wall_s"] = time.perf_counter() - start

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sakd benchmarks on {result['machine'].get('gpu', result['machine']['cpu'])} "
                        f"({result['machine']['threads']} threads), {result['wall_s']:.0f} s")
    for col in ("figure", "value", "goal", "", "details"):
        table.add_column(col)
    goals: list[dict] = []
    for row in report(result, goals):
        table.add_row(*row)
    result["goals"] = goals  # every goal as {"goal", "value", "target", "met", "where"}
    Console(width=150).print(table)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
