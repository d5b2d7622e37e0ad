"""Train an ANN teacher, an SNN baseline, or an SNN student with SAKD, from one :class:`Config`.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one record per epoch),
``tensorboard/`` and the checkpoints ``last.pt`` and ``best.pt``, both written atomically.
``last.pt`` is written at every epoch end and, with ``run.checkpoint_every``, every N optimiser
steps or minutes inside an epoch; ``best.pt`` is the epoch with the best validation top-1 when
``data.val_fraction`` holds some training data out, else the best test top-1 (as the official code).

``Trainer.from_checkpoint(run_dir)`` continues a run exactly where ``last.pt`` left it, mid-epoch
included: weights, optimiser, schedule, epoch and step, the epoch's running sums, and the metric
history; the data order is a function of (seed, epoch) and each sample's augmentation of (seed,
epoch, index), so the remaining batches are the ones the uninterrupted run would have seen, and
the random draws of loss terms and neurons are a function of (seed, epoch, step, micro-batch,
rank) (:mod:`sakd.randomness`), so they are the ones it would have drawn. SIGTERM or SIGUSR1 (what
SLURM and Kubernetes send before a kill) finish the current step, write ``last.pt`` and stop with
:class:`~sakd.errors.Preempted` (exit status 75); under torchrun every process stops at the same
step and rank 0 writes the one checkpoint. A first Ctrl-C does the same (exit status 130); a
second one stops at once and says what ``last.pt`` holds.

The loop (:meth:`Trainer.fit`, :meth:`Trainer.train_epoch`) reads top to bottom; what it calls is
owned by named parts: the run's assembled :class:`~sakd.training.assemble.RunParts`
(``trainer.parts``), an :class:`~sakd.training.epoch_meter.EpochMeter` per epoch, a
:class:`~sakd.training.resilience.CheckpointKeeper` and a BPTT strategy
(:mod:`sakd.training.bptt`). A subclass changes a run through the documented hooks
:meth:`~Trainer.make_step`, :meth:`~Trainer.has_idle_parameters`, :meth:`~Trainer.on_step`,
:meth:`~Trainer.on_epoch_end` and :meth:`~Trainer.evaluate_splits` (``sakd nas train`` and
``sakd tune`` do).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sakd import runs
from sakd.distill import Objective
from sakd.errors import ConfigError, Preempted, TrainingDivergedError
from sakd.models import FeatureExtractor
from sakd.models.base import mean_over_time
from sakd.models.checkpoint import load_weights, payload
from sakd.outputs import writable_folder
from sakd.data.augmentation import mix
from sakd.randomness import step_draws
from sakd.training.assemble import RunParts, assemble
from sakd.training.bptt import bptt_strategy, synchronised
from sakd.training.config import Config, parse_size, save_config
from sakd.training.distributed import all_reduce_max, barrier, broadcast_object
from sakd.training.epoch_meter import EpochMeter
from sakd.training.evaluate import evaluate
from sakd.training.memory import MemoryBudget, SavedTensors, resident_bytes, resolve_memory
from sakd.training.metrics import MetricsLog
from sakd.training.resilience import CheckpointKeeper
from sakd.training.run_folder import Checkpoint, FolderLock, discard_unstarted, history_summary, new_run_folder
from sakd.training.runtime import autocast, rng_state, set_rng_state, stop_workers


class Trainer:
    """The training loop over a run's parts: ``Trainer(config)`` assembles them
    (:func:`~sakd.training.assemble.assemble`), ``Trainer(parts)`` takes parts assembled by you
    (your own data set or student); ``checkpoint``: a :class:`~sakd.training.run_folder.Checkpoint`
    to continue (what :meth:`from_checkpoint` loads), in its own run folder."""

    def __init__(self, run: Config | RunParts, *, console: Console | None = None, checkpoint: Checkpoint | None = None):
        if not isinstance(run, RunParts):
            if checkpoint is None:
                writable_folder(run.run.output_dir, "run.output_dir")  # before any data or model is loaded
            run = assemble(run)
        elif checkpoint is None:
            writable_folder(run.config.run.output_dir, "run.output_dir")
        self.parts, self.cfg = run, run.config
        self.dist, self.device, self.amp_dtype = run.runtime.dist, run.runtime.device, run.runtime.amp_dtype
        self.console = console or Console(stderr=True, quiet=not self.dist.is_main)
        for note in run.notes:
            self.console.print(note)
        cfg = self.cfg
        self.student_step = self.make_step()
        self.step_module = self._wrap(self.student_step)
        budget = parse_size(cfg.run.memory_budget)
        self.memory = resolve_memory(cfg.run.memory, run.model, budget)
        # run.memory_budget's plan, or run.memory=min's (the least step's peak as its budget)
        self.budget = None if budget is None and self.memory != "min" else MemoryBudget(
            budget, self.device, self._resident, lambda line: self.console.print(line, soft_wrap=True, highlight=False),
            self._largest)
        self.bptt = bptt_strategy(cfg.run.bptt, run.model, cfg.distill.term_specs(), self.teacher_outputs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        # progress: completed epochs, completed optimiser steps of the current epoch and that
        # epoch's running sums (kept in mid-epoch checkpoints), the history of epoch records, and
        # the selection metric of best.pt
        self.epoch, self.step, self.partial, self.history = 0, 0, {}, []
        self.selects_on = "val/top1" if "val" in run.eval_loaders else "test/top1"
        self.best = float("-inf")
        if checkpoint is not None:
            self.load_state(checkpoint.state)
            self.run_dir = Path(checkpoint.path).parent
        else:
            self.run_dir = Path(broadcast_object(str(self._new_run_dir()) if self.dist.is_main else None, self.dist))
        resumed_at = (self.epoch, self.step) if checkpoint is not None else None
        self.keeper = CheckpointKeeper(self.run_dir, cfg.run.checkpoint_every, self.console, self.dist, self.device,
                                       cfg.run.log_interval, resumed_at)
        self.made_folder = checkpoint is None  # a run that fails before its first checkpoint takes its folder away
        self.log, self.lock = None, FolderLock(self.run_dir)
        if self.dist.is_main:
            try:
                self.lock.acquire()  # one process at a time in a run folder
                save_config(cfg, self.run_dir / runs.CONFIG)
                self.log = MetricsLog(self.run_dir, self.history, cfg.run.loggers, dataclasses.asdict(cfg))
            except BaseException:
                self._close(discard=True, quiet=True)  # as if never made: the error is the one line
                raise

    @classmethod
    def from_checkpoint(cls, path: str | Path, overrides: list[str] | None = None, **kwargs) -> Trainer:
        """Continue the run whose ``last.pt`` is at ``path`` (a run folder or a checkpoint file).
        Overrides change the stored config, e.g. ``optim.epochs=300`` to train longer."""
        checkpoint = Checkpoint.load(path, overrides, training=True)
        if os.environ.get("RANK", "0") == "0":  # busy: one line before the data and the models are built
            FolderLock(Path(checkpoint.path).parent).acquire().release()
        return cls(checkpoint.config, checkpoint=checkpoint, **kwargs)

    # -- hooks a subclass may override ------------------------------------------------------------
    def make_step(self) -> nn.Module:
        """The module one micro-batch runs: the student's forward and the objective
        (:class:`StudentStep`; the supernet's runs several subnets)."""
        return StudentStep(self.parts.model, self.parts.objective, self.parts.student_taps)

    def has_idle_parameters(self) -> bool:
        """Whether some trainable parameters may get no gradient in a step (DDP must know): the
        parameters of a loss term, in epochs that give it no weight."""
        return self.parts.objective.idles_parameters(self.cfg.optim.epochs)

    def on_step(self, epoch: int, step: int) -> None:
        """Called before each optimiser step's first micro-batch (the supernet samples subnets here)."""

    def on_epoch_end(self, record: dict) -> None:
        """Called after each epoch's record is logged and its checkpoints are written (``sakd tune``
        reports the validation top-1 to its trial here)."""

    def evaluate_splits(self) -> dict[str, dict]:
        """Top-1/top-5, loss and firing rates on each evaluation split (``val`` if any, ``test``)."""
        low = self.cfg.run.low_firing_rate
        return {name: evaluate(self.parts.model, loader, self.device, self.amp_dtype, self.dist, low)
                for name, loader in self.parts.eval_loaders.items()}

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``optim.epochs``; returns a summary (best, selected and final accuracy, firing
        rate, time). Raises :class:`~sakd.errors.Preempted` after a checkpoint when SIGTERM/SIGUSR1 arrive."""
        start, epochs = time.perf_counter(), self.cfg.optim.epochs
        if self.epoch >= epochs:
            self.console.print(f"{self.run_dir}: already trained for {self.epoch} epochs; nothing to do")
        try:
            with self.keeper.signals:
                while self.epoch < epochs:
                    record = self.train_epoch()
                    self.end_epoch(record)
                    if self.keeper.stop_requested() and self.epoch < epochs:
                        raise self.keeper.stopped("the end of the epoch", self.epoch, self.step)
        except KeyboardInterrupt:  # a second Ctrl-C (or one outside the training loop): at once
            kept = self.keeper.kept(self.made_folder, self.epoch)
            self.console.print(f"[yellow]stopped at once in epoch {self.epoch + 1}; {kept}", highlight=False)
            self._close(discard=True)
            raise
        except Exception as exc:  # before the first checkpoint: no folder left holding nothing trained
            self._close(discard=not isinstance(exc, Preempted))
            raise
        finally:
            for loader in (self.parts.train_loader, *self.parts.eval_loaders.values()):
                stop_workers(loader)
            self._close(discard=False)
        return self.summary(time.perf_counter() - start)

    def train_epoch(self) -> dict:
        """Train the epoch ``self.epoch`` from its step ``self.step`` on; returns its record."""
        cfg, parts = self.cfg, self.parts
        epoch, first, accumulate = self.epoch, self.step, cfg.optim.accumulate_steps
        features = parts.objective.reads_features(epoch)  # a term weighed in this epoch reads the taps
        mixing = self.mixes(epoch)
        if self.budget is not None:
            self.budget.recheck()
        meter = EpochMeter(self.device, self.partial)
        sampler = parts.train_loader.batch_sampler
        sampler.set_epoch(epoch, first)
        steps = sampler.steps
        self.step_module.train()
        with self._progress() as progress:
            task = progress.add_task(f"{cfg.mode} epoch {epoch + 1}/{cfg.optim.epochs}", total=steps,
                                     completed=first, info="")
            for i, (x, y) in enumerate(parts.train_loader):
                step, micro = divmod(i, accumulate)
                step += first
                last_micro = micro == accumulate - 1
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                if micro == 0:
                    parts.optimizer.zero_grad(set_to_none=True)
                    self.on_step(epoch, step)
                with step_draws(cfg.run.seed, epoch, step, micro, self.dist.rank):
                    target = y
                    if mixing:  # mixed images and labels; accuracy counts the larger share's label
                        x, target = mix(x, y, parts.data.num_classes, cfg.data.mixup, cfg.data.cutmix)
                        y = target.argmax(1)
                    with self.budget.step() if self.budget is not None else contextlib.nullcontext():
                        loss, terms, logits = self.bptt(self.step_loss, self.backward, self.synchronised, x, target,
                                                        epoch, features, last_micro)
                meter.add(step, loss, terms, logits, y)
                if not last_micro:
                    continue
                self.optimizer_step()
                self.step = step + 1
                if self.step % cfg.run.log_interval == 0 or self.step == steps:
                    self.check_finite(meter, terms, steps)
                    progress.update(task, completed=self.step, info=f"loss {meter.mean_loss():.4f}")
                else:
                    progress.advance(task)
                write, stop = self.keeper.mid_epoch(self.step, steps)
                if write:
                    self.keeper.save(runs.LAST, self.state(meter.summed(self.dist)))
                    barrier(self.dist)
                if stop:
                    raise self.keeper.stopped(f"step {self.step}/{steps}", self.epoch, self.step)
        train, timing = EpochMeter.record(meter.summed(self.dist))
        return {"epoch": epoch + 1, "lr": parts.optimizer.param_groups[0]["lr"],
                **{f"weight/{k}": w for k, w in parts.objective.weights(epoch).items()},
                **train, **self.evaluated(epoch), **timing}

    def end_epoch(self, record: dict) -> None:
        """The epoch is done: its record kept and logged, ``last.pt`` (and ``best.pt``) written, printed."""
        self.epoch, self.step, self.partial = self.epoch + 1, 0, {}
        self.history.append(record)
        improved = record[self.selects_on] > self.best
        self.best = max(self.best, record[self.selects_on])
        if self.dist.is_main:
            self.log.log(record)
        self.keeper.end_of_epoch(self.state(), improved)
        self._print_epoch(record)
        self.on_epoch_end(record)

    # -- one micro-batch and one optimiser step ---------------------------------------------------
    def teacher_outputs(self, x, features: bool):
        """The teacher's logits and (where a term reads them) features, without gradient."""
        if self.parts.teacher is None:
            return None, None
        with autocast(self.device, self.amp_dtype), torch.no_grad():
            return self.parts.teacher_taps(x) if features else (self.parts.teacher(x), None)

    def step_loss(self, x, y, epoch: int, features: bool, teacher=None):
        """The loss of one micro-batch (teacher forward without gradient, student step, objective):
        ``(loss, {term: value}, student logits)``; ``teacher``: its outputs, if already made."""
        t_logits, t_feats = teacher or self.teacher_outputs(x, features)
        with autocast(self.device, self.amp_dtype):
            with SavedTensors(self.student_step, self.memory, plan=self.budget):  # the student and the transforms
                return self.step_module(x, y, t_logits, t_feats, features, epoch)

    def _resident(self) -> int:
        """The bytes alive on the device before a step (``run.memory_budget`` on CPU)."""
        modules = [self.student_step] + ([self.parts.teacher] if self.parts.teacher is not None else [])
        return resident_bytes(self.device, modules, self.parts.optimizer)

    def _largest(self, values: list[float]) -> list[float]:
        """The largest of each value over the run's processes (``run.memory_budget``'s measurements)."""
        return all_reduce_max(torch.tensor(values, dtype=torch.float64, device=self.device), self.dist).tolist()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss / optim.accumulate_steps`` backpropagated (scaled under fp16)."""
        self.scaler.scale(loss / self.cfg.optim.accumulate_steps).backward()

    def synchronised(self, last: bool):
        """Around a micro-batch's forward and backward: DistributedDataParallel synchronises the
        gradients only where ``last`` (a step's last backward)."""
        return synchronised(self.step_module, self.dist.enabled, last)

    def optimizer_step(self) -> None:
        self.scaler.step(self.parts.optimizer)
        self.scaler.update()
        self.parts.scheduler.step()

    def mixes(self, epoch: int) -> bool:
        """Whether mixup / CutMix mix this epoch's batches."""
        d = self.cfg.data
        return (d.mixup > 0 or d.cutmix > 0) and (d.mixup_off_epoch is None or epoch < d.mixup_off_epoch)

    def evaluated(self, epoch: int) -> dict:
        """The evaluation part of an epoch's record; a network that does not fire is warned of."""
        record, result = {}, {}
        for split, result in self.evaluate_splits().items():
            record.update({f"{split}/{k}": v for k, v in result.items()
                           if k not in ("samples", "layer_firing_rates", "firing_warning")})
        if "firing_warning" in result:  # once an epoch, on the last split evaluated (test)
            self.console.print(f"[yellow]warning[/]: epoch {epoch + 1}: {result['firing_warning']}", highlight=False,
                               soft_wrap=True)
        return record

    def check_finite(self, meter: EpochMeter, terms: dict, steps: int) -> None:
        """Stop every process together when a loss became NaN/Inf, naming the step and the terms."""
        step = meter.first_bad_step(self.dist)
        if step is None:
            return
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        kept = self.run_dir / runs.LAST
        keep = (f"the last good checkpoint is {kept} (epoch {self.epoch})" if kept.exists()
                else "no epoch had finished, so no checkpoint was written")
        raise TrainingDivergedError(
            f"the loss became NaN/Inf in epoch {self.epoch + 1}, step {step + 1}/{steps} "
            f"(terms at the latest step: {values}); training stopped and {keep}. "
            "Lower optim.lr or distill.beta (the paper reports such runs as 'unstable')."
        )

    # -- state ------------------------------------------------------------------------------------
    def state(self, partial: dict | None = None) -> dict:
        """Everything a resume needs; ``partial`` holds the running sums of an unfinished epoch."""
        p = self.parts
        return payload(
            p.spec, p.model, objective=p.objective.state_dict(), optimizer=p.optimizer.state_dict(),
            scheduler=p.scheduler.state_dict(), scaler=self.scaler.state_dict(), epoch=self.epoch, step=self.step,
            partial=partial or {}, best=self.best,
            best_top1=max((r["test/top1"] for r in self.history), default=None),
            history=self.history, config=self.cfg.to_dict(), rng=rng_state(),
            **({"initialised": p.initialised} if p.initialised else {}),
        )

    def load_state(self, state: dict) -> None:
        """Continue from a checkpoint's state (what :meth:`state` wrote)."""
        p = self.parts
        if state["spec"] != p.spec:
            raise ConfigError(f"cannot resume: the checkpoint holds {state['spec']}, the config builds {p.spec}")
        load_weights(p.model, state["model"], state["path"])
        p.objective.load_state_dict(state["objective"])
        p.optimizer.load_state_dict(state["optimizer"])
        p.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state.get("step", 0)
        # the sums of an unfinished epoch were summed over processes when saved: rank 0 carries them
        self.partial = state.get("partial", {}) if self.dist.is_main else {}
        self.best = state.get("best", state.get("best_top1") or float("-inf"))
        self.history = list(state["history"])
        set_rng_state(state["rng"])

    def summary(self, wall_time: float) -> dict:
        """Best and final test top-1 (and, with a validation hold-out, the test top-1 of the epoch
        that validation selects), top-5 and firing rate of the last epoch."""
        last = self.history[-1] if self.history else {}
        return {
            "run_dir": str(self.run_dir), "mode": self.cfg.mode, "model": self.cfg.model.name,
            **history_summary(self.history),
            "final_top5": last.get("test/top5"), "firing_rate": last.get("test/firing_rate"),
            "epochs": self.epoch, "wall_time_s": wall_time,
        }

    # -- the run folder and the screen ------------------------------------------------------------
    def _new_run_dir(self) -> Path:
        cfg = self.cfg
        name = cfg.run.name or f"{cfg.data.name}-{cfg.model.name}-{cfg.mode}".replace(":", "_")  # torchvision:resnet18
        return new_run_folder(cfg.run.output_dir, name)

    def _close(self, discard: bool, quiet: bool = False) -> None:
        """Close the loggers and let the run folder go; with ``discard``, a folder this run made
        that holds no checkpoint yet is removed (nothing trained is lost), and said so."""
        if self.log is not None:
            self.log.close()  # its trackers (metrics.jsonl is appended to per record)
        if discard and self.made_folder and self.dist.is_main and discard_unstarted(self.run_dir) and not quiet:
            self.console.print(f"removed {self.run_dir}: it held no checkpoint yet", highlight=False, soft_wrap=True)
        self.lock.release()

    def _wrap(self, step: nn.Module) -> nn.Module:
        """DistributedDataParallel over the student and the objective's transforms, under torchrun."""
        if self.cfg.run.sync_bn:
            if self.device.type != "cuda":
                raise ConfigError("run.sync_bn=true needs CUDA devices (SyncBatchNorm does not run on the CPU)")
            nn.SyncBatchNorm.convert_sync_batchnorm(step)
        if not self.dist.enabled:
            return step
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=self.has_idle_parameters())

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, disable=not (self.cfg.run.progress and self.console.is_terminal), transient=True,
        )

    def _print_epoch(self, r: dict) -> None:
        parts = [f"epoch {r['epoch']:>3}/{self.cfg.optim.epochs}", f"loss {r['train/loss']:.4f}",
                 f"train {r['train/top1']:.2f}%", f"test {r['test/top1']:.2f}%"]
        if "test/firing_rate" in r:
            parts.append(f"rate {r['test/firing_rate']:.3f}")
        parts.append(f"{r['time/train_s']:.1f}s")
        self.console.print("  ".join(parts))


class StudentStep(nn.Module):
    """The student's forward and the objective in one module, so that DistributedDataParallel
    synchronises the gradients of both (the terms' transforms and regressors train with the student)."""

    def __init__(self, model: nn.Module, objective: Objective, taps: FeatureExtractor | None):
        super().__init__()
        self.model, self.objective = model, objective
        self._taps = [taps]  # a plain list: the extractor's model is already registered as `model`

    def forward(self, x, y, t_logits, t_feats, features: bool, epoch: int = 0):
        taps = self._taps[0]
        per_step, s_feats = taps(x, timesteps=True) if features else (self.model.forward_timesteps(x), None)
        per_step = per_step.float()
        s_logits = mean_over_time(per_step)
        out = self.objective(s_logits, y, t_logits, s_feats, t_feats, timestep_logits=per_step, epoch=epoch)
        return out.total, out.terms, s_logits


def train(config: Config, **kwargs) -> dict:
    """Train from a config; returns :meth:`Trainer.fit`'s summary."""
    return Trainer(config, **kwargs).fit()
