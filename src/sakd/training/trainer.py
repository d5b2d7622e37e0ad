"""Train an ANN teacher, an SNN baseline, or an SNN student with SAKD, from one :class:`Config`.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one record per epoch),
``tensorboard/`` and the checkpoints ``last.pt`` (every epoch) and ``best.pt`` (best test top-1),
both written atomically. ``Trainer.resume(run_dir)`` continues a run exactly where ``last.pt``
left it: weights, optimiser, schedule, epoch, random state and metric history.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sakd.data import build_dataset
from sakd.distill import SAKDLoss
from sakd.errors import ConfigError, TrainingDivergedError
from sakd.models import FeatureExtractor
from sakd.models.weights import load_weight_source
from sakd.models.registry import check_model_name
from sakd.training import checkpoint as ckpt_io
from sakd.training.config import Config, apply_overrides, config_from_dict, save_config
from sakd.training.distributed import all_reduce_sum, barrier, broadcast_object, init_distributed
from sakd.training.evaluate import evaluate
from sakd.training.metrics import MetricsLog, topk_correct
from sakd.training.optim import build_optimizer, build_scheduler
from sakd.training.runtime import autocast, make_loaders, place, resolve_amp, resolve_device, seed_everything


class Trainer:
    def __init__(self, config: Config, *, console: Console | None = None, _state: dict | None = None):
        self.cfg = cfg = config
        check_model_name(cfg.model.name)
        if cfg.optim.epochs < 1:
            raise ConfigError(f"optim.epochs must be at least 1, got {cfg.optim.epochs}")
        if cfg.optim.accumulate_steps < 1:
            raise ConfigError(f"optim.accumulate_steps must be at least 1, got {cfg.optim.accumulate_steps}")
        self.dist = init_distributed(resolve_device(cfg.run.device), cfg.run.dist_backend)
        self.device = resolve_device(cfg.run.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.console = console or Console(stderr=True, quiet=not self.dist.is_main)
        self.amp_dtype = resolve_amp(cfg.run.amp, self.device)
        seed_everything(cfg.run.seed)

        self.data = build_dataset(
            cfg.data.name, root=cfg.data.root, download=cfg.data.download, augment=cfg.data.augment,
            **cfg.data.options,
        )
        self.train_loader, self.test_loader = make_loaders(
            self.data.train, self.data.test,
            batch_size=cfg.data.batch_size,
            eval_batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
            num_workers=cfg.data.num_workers, seed=cfg.run.seed, device=self.device,
            ctx=self.dist, accumulate=cfg.optim.accumulate_steps, collate_fn=self.data.collate_fn,
        )
        if self.data.frames and cfg.model.spiking and cfg.model.timesteps != self.data.frames:
            raise ConfigError(
                f"{cfg.data.name} gives {self.data.frames} frames per sample but model.timesteps="
                f"{cfg.model.timesteps}; set model.timesteps={self.data.frames} (one frame per timestep)"
            )
        self.arch = {
            "name": cfg.model.name, "spiking": cfg.model.spiking, "num_classes": self.data.num_classes,
            "timesteps": cfg.model.timesteps, "in_channels": self.data.in_channels, "stem": cfg.model.stem,
            "neuron": vars(cfg.model.neuron).copy(), "options": dict(cfg.model.options),
        }
        self.model = place(ckpt_io.build_model(self.arch), self.device, cfg.run.channels_last)
        self.teacher = self._build_teacher()
        self._init_student()
        self.objective, self.student_taps, self.teacher_taps = self._build_objective()
        place(self.objective, self.device, cfg.run.channels_last)
        self.student_step = self._student_step()
        self.step_module = self._wrap(self.student_step)

        self.optimizer = build_optimizer([self.model, self.objective], cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.train_loader.batch_sampler.steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.epoch, self.best_top1, self.history = 0, float("-inf"), []
        if _state is not None:
            self._load_state(_state)
            self.history = list(_state["history"])
            self.run_dir = Path(_state["path"]).parent
        else:
            self.run_dir = Path(broadcast_object(str(self._new_run_dir()) if self.dist.is_main else None, self.dist))
        self.log = None
        if self.dist.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
            self.log = MetricsLog(self.run_dir, self.history)

    def _student_step(self) -> nn.Module:
        return StudentStep(self.model, self.objective, self.student_taps)

    def _has_idle_parameters(self) -> bool:
        """Whether some trainable parameters may get no gradient in a step (DDP must know)."""
        schedule = self.cfg.distill.beta_schedule
        # the transforms sit idle in epochs whose beta is 0
        return bool(self.objective.transforms) and (self.cfg.distill.beta == 0 or any(s.beta == 0 for s in schedule))

    def on_step(self, epoch: int, step: int) -> None:
        """Called before each optimiser step's first micro-batch (the supernet samples subnets here)."""

    def evaluate_test(self) -> dict:
        return evaluate(self.model, self.test_loader, self.device, self.amp_dtype, self.dist)

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
        state = ckpt_io.load_checkpoint(path)
        cfg = config_from_dict(apply_overrides(state["config"], list(overrides or [])))
        return cls(cfg, _state=state, **kwargs)

    def _new_run_dir(self) -> Path:
        cfg = self.cfg
        name = cfg.run.name or f"{cfg.data.name}-{cfg.model.name}-{cfg.mode}"
        base = Path(cfg.run.output_dir).expanduser()
        run_dir, i = base / name, 1
        while run_dir.exists():  # never write into an earlier run
            i += 1
            run_dir = base / f"{name}-{i}"
        run_dir.mkdir(parents=True)
        return run_dir

    def _build_teacher(self):
        cfg, tcfg = self.cfg, self.cfg.distill.teacher
        if not tcfg.weights:
            uses = [k for k in ("beta", "gamma") if getattr(cfg.distill, k)]
            if uses or any(s.beta for s in cfg.distill.beta_schedule):
                raise ConfigError(
                    f"distill.{'/'.join(uses or ['beta_schedule'])} > 0 needs a teacher: "
                    "set distill.teacher.weights to an ANN checkpoint or state dict"
                )
            if cfg.model.init == "teacher":
                raise ConfigError("model.init=teacher needs distill.teacher.weights")
            return None
        if not cfg.model.spiking:
            raise ConfigError("distillation trains a spiking student: set model.spiking=true")
        source = load_weight_source(tcfg.weights)
        expected = tcfg.name or cfg.model.name
        arch = {**self.arch, "name": expected, "spiking": False}
        if expected != cfg.model.name:
            arch["options"] = {}
        if source.arch is not None:  # a sakd checkpoint says what it holds: check it
            if source.arch["spiking"]:
                raise ConfigError(f"the teacher {source.description} holds a spiking model; the teacher must be an ANN")
            if source.arch["name"] != expected:
                if tcfg.name:
                    raise ConfigError(
                        f"the teacher {source.description} holds {source.arch['name']}, but distill.teacher.name is {tcfg.name}"
                    )
                raise ConfigError(
                    f"the teacher {source.description} holds {source.arch['name']} but the student is "
                    f"{cfg.model.name}: SAKD distils from a teacher of the same architecture. To use "
                    f"another architecture, say so with distill.teacher.name={source.arch['name']}"
                )
            for key in ("num_classes", "in_channels"):
                if source.arch[key] != self.arch[key]:
                    raise ConfigError(
                        f"the teacher has {key}={source.arch[key]} but the data set {cfg.data.name} gives {self.arch[key]}"
                    )
            arch = source.arch
        teacher = ckpt_io.build_model(arch)
        ckpt_io.load_weights(teacher, source.state_dict, source.description)
        self.teacher_source = source.description
        return place(teacher, self.device, self.cfg.run.channels_last).eval().requires_grad_(False)

    def _init_student(self) -> None:
        init = self.cfg.model.init
        if not init:
            return
        if init == "teacher":
            t = self.teacher
            if _weight_layout(t) != _weight_layout(self.model):
                raise ConfigError(
                    f"model.init=teacher copies the teacher's weights and needs the same architecture; "
                    f"the teacher is {t.arch}, the student {self.model.arch}"
                )
            state, description = t.state_dict(), f"the teacher ({self.teacher_source})"
        else:
            source = load_weight_source(init)
            if source.arch is not None and source.arch["name"] != self.model.arch:
                raise ConfigError(f"model.init: {source.description} holds {source.arch['name']}, the model is {self.model.arch}")
            state, description = source.state_dict, source.description
        ckpt_io.load_weights(self.model, state, description)
        n = sum(v.numel() for v in self.model.state_dict().values())
        self.console.print(
            f"initialised the student from {description}: all {len(state)} tensors ({n:,} values) copied strictly"
        )

    def _build_objective(self):
        d = self.cfg.distill
        feature_kd = self.teacher is not None and (d.beta > 0 or any(s.beta > 0 for s in d.beta_schedule))
        s_taps = t_taps = None
        if feature_kd:
            f = d.features
            s_taps = FeatureExtractor(self.model, f.level, f.position)
            t_taps = FeatureExtractor(self.teacher, f.level, f.position)
        if self.teacher is None and d.alpha == 0:
            raise ConfigError("distill.alpha=0 without a teacher leaves nothing to optimise; set distill.alpha=1")
        objective = SAKDLoss(
            s_taps.channels if s_taps else (), t_taps.channels if t_taps else (),
            alpha=d.alpha, beta=d.beta if self.teacher is not None else 0.0,
            gamma=d.gamma if self.teacher is not None else 0.0, tau=d.tau,
            transform=d.features.transform, distance=d.features.distance,
            feature_weights=d.features.weights,
        )
        return objective, s_taps, t_taps

    # -- state --------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": ckpt_io.FORMAT, "version": ckpt_io.VERSION,
            "arch": self.arch, "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "best_top1": self.best_top1,
            "history": self.history, "config": self.cfg.to_dict(), "rng": ckpt_io.rng_state(),
        }

    def _load_state(self, state: dict) -> None:
        if state["arch"] != self.arch:
            raise ConfigError(f"cannot resume: the checkpoint is a {state['arch']['name']} run, the config builds {self.arch['name']}")
        ckpt_io.load_weights(self.model, state["model"], state["path"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best_top1 = state["epoch"], state["best_top1"]
        ckpt_io.set_rng_state(state["rng"])

    # -- training -----------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``optim.epochs``; returns a summary (best/final accuracy, firing rate, time)."""
        cfg = self.cfg
        start = time.perf_counter()
        if self.epoch >= cfg.optim.epochs:
            self.console.print(f"{self.run_dir}: already trained for {self.epoch} epochs; nothing to do")
        try:
            while self.epoch < cfg.optim.epochs:
                record = self.train_epoch()
                self.epoch += 1
                self.history.append(record)
                if self.dist.is_main:
                    self.log.log(record)
                    ckpt_io.atomic_save(self.state(), self.run_dir / "last.pt")
                    if record["test/top1"] > self.best_top1:
                        ckpt_io.atomic_save({**self.state(), "best_top1": record["test/top1"]}, self.run_dir / "best.pt")
                self.best_top1 = max(self.best_top1, record["test/top1"])
                barrier(self.dist)
                self._print_epoch(record)
        except KeyboardInterrupt:
            self.console.print(
                f"[yellow]interrupted in epoch {self.epoch + 1}; continue with: sakd train --resume {self.run_dir}"
            )
            raise
        finally:
            if self.log is not None:
                self.log.close()
        last = self.history[-1] if self.history else {}
        return {
            "run_dir": str(self.run_dir), "mode": cfg.mode, "model": cfg.model.name,
            "best_top1": self.best_top1, "final_top1": last.get("test/top1"),
            "final_top5": last.get("test/top5"), "firing_rate": last.get("test/firing_rate"),
            "epochs": self.epoch, "wall_time_s": time.perf_counter() - start,
        }

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, disable=not (self.cfg.run.progress and self.console.is_terminal), transient=True,
        )

    def train_epoch(self) -> dict:
        cfg, dev = self.cfg, self.device
        epoch, accumulate = self.epoch, cfg.optim.accumulate_steps
        beta = cfg.distill.beta_at(epoch) if self.teacher_taps else 0.0
        self.step_module.train()
        sampler = self.train_loader.batch_sampler
        sampler.set_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), dtype=torch.long, device=dev)
        bad_step = torch.full((), -1, dtype=torch.long, device=dev)  # first step with a non-finite loss
        n, t0 = 0, time.perf_counter()
        steps = sampler.steps
        with self._progress() as progress:
            task = progress.add_task(f"{cfg.mode} epoch {epoch + 1}/{cfg.optim.epochs}", total=steps, info="")
            for i, (x, y) in enumerate(self.train_loader):
                step, micro = divmod(i, accumulate)
                last_micro = micro == accumulate - 1
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                if micro == 0:
                    self.optimizer.zero_grad(set_to_none=True)
                    self.on_step(epoch, step)
                sync = contextlib.nullcontext() if last_micro or not self.dist.enabled else self.step_module.no_sync()
                with sync:
                    with autocast(dev, self.amp_dtype):
                        t_logits = t_feats = None
                        if self.teacher is not None:
                            with torch.no_grad():
                                t_logits, t_feats = self.teacher_taps(x) if beta else (self.teacher(x), None)
                        loss, terms, s_logits = self.step_module(x, y, t_logits, t_feats, beta)
                    self.scaler.scale(loss / accumulate).backward()
                b = y.shape[0]
                n += b
                loss_d = loss.detach()
                bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss_d), step, bad_step)
                for k, v in {"loss": loss_d, **terms}.items():
                    sums[k] = sums.get(k, 0.0) + v.float() * b
                correct += topk_correct(s_logits.detach(), y, ks=(1,))[0]
                if not last_micro:
                    continue
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                if (step + 1) % cfg.run.log_interval == 0 or step + 1 == steps:
                    self._check_finite(bad_step, terms, steps)
                    progress.update(task, completed=step + 1, info=f"loss {sums['loss'].item() / n:.4f}")
                else:
                    progress.advance(task)
        train_time = time.perf_counter() - t0
        keys = sorted(sums)
        totals = all_reduce_sum(torch.stack([sums[k].double() for k in keys] + [
            correct.double(), torch.tensor(n, dtype=torch.float64, device=dev)]), self.dist)
        n = totals[-1].item()
        test = self.evaluate_test()
        record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.teacher is not None:
            record["beta"] = beta
        record.update({f"train/{k}": (totals[j] / n).item() for j, k in enumerate(keys)})
        record["train/top1"] = 100.0 * totals[-2].item() / n
        record.update({f"test/{k}": v for k, v in test.items() if k not in ("samples", "layer_firing_rates")})
        record["time/train_s"] = train_time
        record["time/train_samples_per_s"] = n / train_time
        return record

    def _check_finite(self, bad_step: torch.Tensor, terms: dict, steps: int) -> None:
        flagged = all_reduce_sum((bad_step >= 0).long(), self.dist)  # every process stops together
        if flagged.item() == 0:
            return
        step = int(bad_step.item()) if bad_step.item() >= 0 else steps - 1
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        kept = self.run_dir / "last.pt"
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
    synchronises the gradients of both (the feature transforms train with the student)."""

    def __init__(self, model: nn.Module, objective: SAKDLoss, taps: FeatureExtractor | None):
        super().__init__()
        self.model, self.objective = model, objective
        self._taps = [taps]  # a plain list: the extractor's model is already registered as `model`

    def forward(self, x, y, t_logits, t_feats, beta: float):
        taps = self._taps[0]
        s_logits, s_feats = taps(x) if beta else (self.model(x), None)
        out = self.objective(s_logits.float(), y, t_logits, s_feats, t_feats, beta=beta)
        return out.total, out.terms, s_logits


def _weight_layout(model) -> tuple:
    """What must agree for weights to copy: every parameter name and shape."""
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def train(config: Config, **kwargs) -> dict:
    """Train from a config; returns :meth:`Trainer.fit`'s summary."""
    return Trainer(config, **kwargs).fit()
