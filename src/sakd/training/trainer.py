"""Train an ANN teacher, an SNN baseline, or an SNN student with SAKD, from one :class:`Config`.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one record per epoch),
``tensorboard/`` and the checkpoints ``last.pt`` and ``best.pt``, both written atomically.
``last.pt`` is written at every epoch end and, with ``run.checkpoint_every``, every N optimiser
steps or minutes inside an epoch; ``best.pt`` is the epoch with the best validation top-1 when
``data.val_fraction`` holds some training data out, else the best test top-1 (as the official code).

``Trainer.resume(run_dir)`` continues a run exactly where ``last.pt`` left it, mid-epoch included:
weights, optimiser, schedule, epoch and step, the epoch's running sums, and the metric history;
the data order is a function of (seed, epoch) and each sample's augmentation of (seed, epoch,
index), so the remaining batches are the ones the uninterrupted run would have seen, and the
random draws of loss terms and neurons are a function of (seed, epoch, step, micro-batch, rank)
(:mod:`sakd.randomness`), so they are the ones it would have drawn. SIGTERM or
SIGUSR1 (what SLURM and Kubernetes send before a kill) finish the current step, write ``last.pt``
and stop with :class:`~sakd.errors.Preempted` (exit status 75); under torchrun every process stops
at the same step and rank 0 writes the one checkpoint. A first Ctrl-C does the same (exit status
130); a second one stops at once and says what ``last.pt`` holds.
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
from sakd.distill import SAKDLoss
from sakd.errors import ConfigError, Preempted, TrainingDivergedError
from sakd.models import FeatureExtractor
from sakd.models.base import mean_over_time
from sakd.models.checkpoint import atomic_save, load_weights, payload
from sakd.outputs import writable_folder
from sakd.data.augmentation import mix
from sakd.randomness import step_draws
from sakd.training.assemble import RunParts, assemble
from sakd.training.config import Config, save_config
from sakd.training.distributed import all_reduce_sum, barrier, broadcast_object
from sakd.training.evaluate import evaluate
from sakd.training.memory import SavedTensors, resolve_memory
from sakd.training.online import check_online, timestep_by_timestep
from sakd.training.resilience import CheckpointPolicy, StopSignals, place_of
from sakd.training.metrics import MetricsLog, topk_correct
from sakd.training.run_folder import Checkpoint, history_summary
from sakd.training.runtime import autocast, rng_state, set_rng_state, stop_workers


class Trainer:
    """The training loop over a run's parts: ``Trainer(config)`` assembles them
    (:func:`~sakd.training.assemble.assemble`), ``Trainer(parts)`` takes parts assembled by you
    (your own data set or student)."""

    def __init__(self, run: Config | RunParts, *, console: Console | None = None, _state: dict | None = None):
        handed = isinstance(run, RunParts)
        if not handed:
            if _state is None:
                writable_folder(run.run.output_dir, "run.output_dir")  # before any data or model is loaded
            run = assemble(run)
        self.parts = run
        self.cfg = cfg = run.config
        self.dist, self.device, self.amp_dtype = run.runtime.dist, run.runtime.device, run.runtime.amp_dtype
        self.console = console or Console(stderr=True, quiet=not self.dist.is_main)
        for note in run.notes:
            self.console.print(note)
        self.data, self.train_loader, self.eval_loaders = run.data, run.train_loader, run.eval_loaders
        self.spec, self.model, self.teacher = run.spec, run.model, run.teacher
        self.objective, self.student_taps, self.teacher_taps = run.objective, run.student_taps, run.teacher_taps
        self.optimizer, self.scheduler = run.optimizer, run.scheduler
        self.student_step = self._student_step()
        self.memory = resolve_memory(cfg.run.memory, self.model)
        self.bptt = cfg.run.bptt
        if self.bptt == "sltt":
            check_online(self.model, cfg.distill.objective_terms())
        self.step_module = self._wrap(self.student_step)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        # progress: completed epochs, completed optimiser steps of the current epoch and that
        # epoch's running sums (kept in mid-epoch checkpoints), the history of epoch records, and
        # the selection metric of best.pt
        self.epoch, self.step, self.partial, self.history = 0, 0, {}, []
        self.selects_on = "val/top1" if "val" in self.eval_loaders else "test/top1"
        self.best = float("-inf")
        self.signals = StopSignals(self.console)
        self.checkpoints = CheckpointPolicy(cfg.run.checkpoint_every)
        self._saved_at: tuple[int, int] | None = None  # (epoch, step) of this process's last last.pt
        if _state is not None:
            self._load_state(_state)
            self.history = list(_state["history"])
            self.run_dir = Path(_state["path"]).parent
        else:
            if handed:
                writable_folder(cfg.run.output_dir, "run.output_dir")
            self.run_dir = Path(broadcast_object(str(self._new_run_dir()) if self.dist.is_main else None, self.dist))
        self.made_folder = _state is None  # a run that fails before its first checkpoint takes its folder away
        self.log, self.lock = None, runs.FolderLock(self.run_dir)
        if self.dist.is_main:
            try:
                self.lock.acquire()  # one process at a time in a run folder
                save_config(cfg, self.run_dir / runs.CONFIG)
                self.log = MetricsLog(self.run_dir, self.history, cfg.run.loggers, dataclasses.asdict(cfg))
            except BaseException:
                self._close(discard=True, quiet=True)  # as if never made: the error is the one line
                raise

    def _student_step(self) -> nn.Module:
        return StudentStep(self.model, self.objective, self.student_taps)

    def _has_idle_parameters(self) -> bool:
        """Whether some trainable parameters may get no gradient in a step (DDP must know): the
        parameters of a loss term, in epochs that give it no weight."""
        return self.objective.idles_parameters(self.cfg.optim.epochs)

    def on_step(self, epoch: int, step: int) -> None:
        """Called before each optimiser step's first micro-batch (the supernet samples subnets here)."""

    def on_epoch_end(self, record: dict) -> None:
        """Called after each epoch's record is logged and its checkpoints are written (``sakd tune``
        reports the validation top-1 to its trial here)."""

    def evaluate_splits(self) -> dict[str, dict]:
        """Top-1/top-5, loss and firing rates on each evaluation split (``val`` if any, ``test``)."""
        low = self.cfg.run.low_firing_rate
        return {name: evaluate(self.model, loader, self.device, self.amp_dtype, self.dist, low)
                for name, loader in self.eval_loaders.items()}

    def _wrap(self, step: nn.Module) -> nn.Module:
        """DistributedDataParallel over the student and the objective's transforms, under torchrun."""
        if self.cfg.run.sync_bn:
            if self.device.type != "cuda":
                raise ConfigError("run.sync_bn=true needs CUDA devices (SyncBatchNorm does not run on the CPU)")
            nn.SyncBatchNorm.convert_sync_batchnorm(step)
        if not self.dist.enabled:
            return step
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=self._has_idle_parameters())

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def resume(cls, path: str | Path, overrides: list[str] | None = None, **kwargs) -> "Trainer":
        """Continue the run whose ``last.pt`` is at ``path`` (a run folder or a checkpoint file).
        Overrides change the stored config, e.g. ``optim.epochs=300`` to train longer."""
        checkpoint = Checkpoint.load(path, overrides, training=True)
        if os.environ.get("RANK", "0") == "0":  # busy: one line before the data and the models are built
            runs.FolderLock(Path(checkpoint.path).parent).acquire().release()
        return cls(checkpoint.config, _state=checkpoint.state, **kwargs)

    def _new_run_dir(self) -> Path:
        cfg = self.cfg
        name = cfg.run.name or f"{cfg.data.name}-{cfg.model.name}-{cfg.mode}".replace(":", "_")  # torchvision:resnet18
        return runs.new_run_folder(cfg.run.output_dir, name)

    # -- state ----------------------------------------------------------------------------------
    def state(self, partial: dict | None = None) -> dict:
        """Everything a resume needs; ``partial`` holds the running sums of an unfinished epoch."""
        return payload(
            self.spec, self.model, objective=self.objective.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(), epoch=self.epoch, step=self.step,
            partial=partial or {}, best=self.best,
            best_top1=max((r["test/top1"] for r in self.history), default=None),
            history=self.history, config=self.cfg.to_dict(), rng=rng_state(),
        )

    def _load_state(self, state: dict) -> None:
        if state["spec"] != self.spec:
            raise ConfigError(f"cannot resume: the checkpoint holds {state['spec']}, the config builds {self.spec}")
        load_weights(self.model, state["model"], state["path"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state.get("step", 0)
        # the sums of an unfinished epoch were summed over processes when saved: rank 0 carries them
        self.partial = state.get("partial", {}) if self.dist.is_main else {}
        self.best = state.get("best", state.get("best_top1") or float("-inf"))
        set_rng_state(state["rng"])
        self._saved_at = (self.epoch, self.step)

    def save(self, name: str, state: dict) -> None:
        if self.dist.is_main:
            atomic_save(state, self.run_dir / name)
        if name == runs.LAST:
            self._saved_at = (state["epoch"], state["step"])
        self.checkpoints.written()

    # -- training -----------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``optim.epochs``; returns a summary (best, selected and final accuracy, firing
        rate, time). Raises :class:`~sakd.errors.Preempted` after a checkpoint when SIGTERM/SIGUSR1 arrive."""
        cfg = self.cfg
        start = time.perf_counter()
        if self.epoch >= cfg.optim.epochs:
            self.console.print(f"{self.run_dir}: already trained for {self.epoch} epochs; nothing to do")
        try:
            with self.signals:
                while self.epoch < cfg.optim.epochs:
                    record = self.train_epoch()
                    self.epoch, self.step, self.partial = self.epoch + 1, 0, {}
                    self.history.append(record)
                    improved = record[self.selects_on] > self.best
                    self.best = max(self.best, record[self.selects_on])
                    if self.dist.is_main:
                        self.log.log(record)
                    state = self.state()
                    self.save(runs.LAST, state)
                    if improved:
                        self.save(runs.BEST, state)
                    barrier(self.dist)
                    self._print_epoch(record)
                    self.on_epoch_end(record)
                    if self._stop_requested() and self.epoch < cfg.optim.epochs:
                        self._preempted(at="the end of the epoch")
        except KeyboardInterrupt:  # a second Ctrl-C (or one outside the training loop): at once
            self.console.print(f"[yellow]stopped at once in epoch {self.epoch + 1}; {self._kept()}", highlight=False)
            self._close(discard=True)
            raise
        except Exception as exc:  # before the first checkpoint: no folder left holding nothing trained
            self._close(discard=not isinstance(exc, Preempted))
            raise
        finally:
            for loader in (self.train_loader, *self.eval_loaders.values()):
                stop_workers(loader)
            self._close(discard=False)
        return self.summary(time.perf_counter() - start)

    def _close(self, discard: bool, quiet: bool = False) -> None:
        """Close the loggers and let the run folder go; with ``discard``, a folder this run made
        that holds no checkpoint yet is removed (nothing trained is lost), and said so."""
        if self.log is not None:
            self.log.close()  # its trackers (metrics.jsonl is appended to per record)
        if discard and self.made_folder and self.dist.is_main and runs.discard_unstarted(self.run_dir) and not quiet:
            self.console.print(f"removed {self.run_dir}: it held no checkpoint yet", highlight=False, soft_wrap=True)
        self.lock.release()

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

    def _kept(self) -> str:
        """What ``last.pt`` holds now, and how to go on from it."""
        last = self.run_dir / runs.LAST
        if not last.is_file():
            again = ("run the same sakd train command again to start it afresh" if self.made_folder
                     else f"it resumed from {self.run_dir} and wrote nothing since")
            return f"no checkpoint was written yet ({last} does not exist): {again}"
        where = place_of(*(self._saved_at or (self.epoch, 0)))  # the last write, or the state resumed from
        return f"{last} holds the run at the end of {where}; continue with: sakd train --resume {self.run_dir}"

    def _stop_requested(self) -> bool:
        """Whether any process got a stop signal (every process agrees, so all stop together)."""
        flag = torch.tensor(float(self.signals.received is not None), dtype=torch.float64, device=self.device)
        return bool(all_reduce_sum(flag, self.dist).item() > 0)

    def _preempted(self, at: str):
        raise self.signals.stop(self.run_dir, at, place_of(self.epoch, self.step))

    def _between_steps(self, sums: dict, correct: torch.Tensor, n: int, seconds: float, steps: int) -> None:
        """After an optimiser step: write a mid-epoch checkpoint if one is due or a stop signal
        came (then stop). Every process takes the same decision at the same step: a count of
        steps is the same everywhere; a signal or a time limit is agreed on by an all-reduce, which
        under torchrun happens every ``run.log_interval`` steps (where the trainer syncs anyway),
        not every step."""
        if self.step == steps:  # the epoch's end writes its own checkpoint
            return
        due, late = self.checkpoints.due(self.step), self.checkpoints.late()
        stop = self.signals.received is not None
        if self.dist.enabled:
            if self.step % self.cfg.run.log_interval:
                stop = late = False
            else:
                flags = torch.tensor([float(stop), float(late)], dtype=torch.float64, device=self.device)
                stop, late = (all_reduce_sum(flags, self.dist) > 0).tolist()
        if not (stop or due or late):
            return
        keys = sorted(sums)
        totals = all_reduce_sum(torch.stack([sums[k] for k in keys] + [
            correct.double(), torch.tensor(float(n), dtype=torch.float64, device=self.device)]), self.dist).tolist()
        partial = {"sums": dict(zip(keys, totals[:-2])), "correct": int(totals[-2]), "n": int(totals[-1]),
                   "seconds": seconds}
        self.save(runs.LAST, self.state(partial))
        barrier(self.dist)
        if stop:
            self._preempted(at=f"step {self.step}/{steps}")

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, disable=not (self.cfg.run.progress and self.console.is_terminal), transient=True,
        )

    def teacher_outputs(self, x, features: bool):
        """The teacher's logits and (where a term reads them) features, without gradient."""
        if self.teacher is None:
            return None, None
        with autocast(self.device, self.amp_dtype), torch.no_grad():
            return self.teacher_taps(x) if features else (self.teacher(x), None)

    def step_loss(self, x, y, epoch: int, features: bool, teacher=None):
        """The loss of one micro-batch (teacher forward without gradient, student step, objective):
        ``(loss, {term: value}, student logits)``; ``teacher``: its outputs, if already made."""
        t_logits, t_feats = teacher or self.teacher_outputs(x, features)
        with autocast(self.device, self.amp_dtype):
            with SavedTensors(self.student_step, self.memory):  # the student and the transforms
                return self.step_module(x, y, t_logits, t_feats, features, epoch)

    def loss_and_backward(self, x, y, epoch: int, features: bool, accumulate: int, last_micro: bool):
        """One micro-batch's loss, backpropagated (``/ accumulate``); gradients are synchronised
        across processes on the last micro-batch of a step. ``run.bptt=sltt``: the student runs
        one timestep at a time, each timestep's objective backpropagated at once
        (:mod:`sakd.training.online`); the loss and terms returned are their means over T, the
        logits the mean of the timesteps' logits."""
        def sync(last: bool):
            return contextlib.nullcontext() if last or not self.dist.enabled else self.step_module.no_sync()

        if self.bptt == "full":
            with sync(last_micro):
                loss, terms, s_logits = self.step_loss(x, y, epoch, features)
                self.scaler.scale(loss / accumulate).backward()
            return loss, terms, s_logits
        t_logits, t_feats = self.teacher_outputs(x, features)
        def run_step(x_t, feats_t):
            return self.step_loss(x_t, y, epoch, features, (t_logits, feats_t))

        def backward(loss_t, last: bool):
            with sync(last_micro and last):
                self.scaler.scale(loss_t / accumulate).backward()

        return timestep_by_timestep(self.model, x, t_feats, run_step, backward, self.model.timesteps)

    def train_epoch(self) -> dict:
        """Train the epoch ``self.epoch`` from its step ``self.step`` on; returns its record."""
        cfg, dev = self.cfg, self.device
        epoch, accumulate, first = self.epoch, cfg.optim.accumulate_steps, self.step
        features = self.objective.reads_features(epoch)  # a term weighed in this epoch reads the taps
        off = cfg.data.mixup_off_epoch
        mixing = (cfg.data.mixup > 0 or cfg.data.cutmix > 0) and (off is None or epoch < off)
        self.step_module.train()
        sampler = self.train_loader.batch_sampler
        sampler.set_epoch(epoch, first)
        f64 = dict(dtype=torch.float64, device=dev)
        sums = {k: torch.tensor(v, **f64) for k, v in self.partial.get("sums", {}).items()}
        correct = torch.tensor(self.partial.get("correct", 0), dtype=torch.long, device=dev)
        n, done_s = self.partial.get("n", 0), self.partial.get("seconds", 0.0)
        bad_step = torch.full((), -1, dtype=torch.long, device=dev)  # first step with a non-finite loss
        t0 = time.perf_counter()
        steps = sampler.steps
        with self._progress() as progress:
            task = progress.add_task(f"{cfg.mode} epoch {epoch + 1}/{cfg.optim.epochs}", total=steps,
                                     completed=first, info="")
            for i, (x, y) in enumerate(self.train_loader):
                step, micro = divmod(i, accumulate)
                step += first
                last_micro = micro == accumulate - 1
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                if micro == 0:
                    self.optimizer.zero_grad(set_to_none=True)
                    self.on_step(epoch, step)
                with step_draws(cfg.run.seed, epoch, step, micro, self.dist.rank):
                    target = y
                    if mixing:  # mixed images and labels; accuracy counts the larger share's label
                        x, target = mix(x, y, self.data.num_classes, cfg.data.mixup, cfg.data.cutmix)
                        y = target.argmax(1)
                    loss, terms, s_logits = self.loss_and_backward(x, target, epoch, features, accumulate, last_micro)
                b = y.shape[0]
                n += b
                loss_d = loss.detach()
                bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss_d), step, bad_step)
                for k, v in {"loss": loss_d, **terms}.items():
                    sums[k] = sums.get(k, torch.zeros((), **f64)) + v.double() * b
                correct += topk_correct(s_logits.detach(), y, ks=(1,))[0]
                if not last_micro:
                    continue
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.step = step + 1
                if self.step % cfg.run.log_interval == 0 or self.step == steps:
                    self._check_finite(bad_step, terms, steps)
                    progress.update(task, completed=self.step, info=f"loss {sums['loss'].item() / n:.4f}")
                else:
                    progress.advance(task)
                self._between_steps(sums, correct, n, done_s + time.perf_counter() - t0, steps)
        train_time = done_s + time.perf_counter() - t0
        keys = sorted(sums)
        totals = all_reduce_sum(torch.stack([sums[k] for k in keys] + [
            correct.double(), torch.tensor(float(n), **f64)]), self.dist)
        n = totals[-1].item()
        record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        record.update({f"weight/{k}": w for k, w in self.objective.weights(epoch).items()})
        record.update({f"train/{k}": (totals[j] / n).item() for j, k in enumerate(keys)})
        record["train/top1"] = 100.0 * totals[-2].item() / n
        for split, result in self.evaluate_splits().items():
            record.update({f"{split}/{k}": v for k, v in result.items()
                           if k not in ("samples", "layer_firing_rates", "firing_warning")})
        if "firing_warning" in result:  # once an epoch, on the last split evaluated (test)
            self.console.print(f"[yellow]warning[/]: epoch {epoch + 1}: {result['firing_warning']}", highlight=False,
                               soft_wrap=True)
        record["time/train_s"] = train_time
        record["time/train_samples_per_s"] = n / train_time
        return record

    def _check_finite(self, bad_step: torch.Tensor, terms: dict, steps: int) -> None:
        flagged = all_reduce_sum((bad_step >= 0).long(), self.dist)  # every process stops together
        if flagged.item() == 0:
            return
        step = int(bad_step.item()) if bad_step.item() >= 0 else steps - 1
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        kept = self.run_dir / runs.LAST
        keep = f"the last good checkpoint is {kept} (epoch {self.epoch})" if kept.exists() else "no epoch had finished, so no checkpoint was written"
        raise TrainingDivergedError(
            f"the loss became NaN/Inf in epoch {self.epoch + 1}, step {step + 1}/{steps} "
            f"(terms at the latest step: {values}); training stopped and {keep}. "
            "Lower optim.lr or distill.beta (the paper reports such runs as 'unstable')."
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

    def __init__(self, model: nn.Module, objective: SAKDLoss, taps: FeatureExtractor | None):
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
