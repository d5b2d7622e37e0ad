"""``sakd tune``: optuna's TPE over a search space, every trial a training run scored on the
validation hold-out (``data.val_fraction``; the test set is never read to choose).

A study lives in one folder: ``study.log`` (optuna's journal: every trial, its draws, its
per-epoch validation top-1 and its score), ``trials/trial-NNN/`` (each trial's run folder),
``tune.json`` (the trials and the best one, rewritten after each) and ``best.yaml`` (the best
trial's config: ``sakd train --config best.yaml`` trains it again, and on the same machine it
reaches the same score). Running the same command again continues the study up to ``--trials``
finished trials; a trial cut short (Ctrl-C, a killed process) is marked failed and its draws are
tried again first. A trial's score is its best validation top-1 (the epoch ``best.pt`` keeps);
the median pruner stops a trial whose validation top-1 after an epoch is below the median of
earlier trials at that epoch (after ``startup`` finished trials and the first epoch).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from sakd import runs
from sakd.errors import ConfigError
from sakd.outputs import write_text
from sakd.training import Trainer, load_config
from sakd.training.config import Config
from sakd.tuning.space import SearchSpace

SCORE = "val/top1"
STUDY_LOG, SUMMARY, BEST_CONFIG, TRIALS = "study.log", "tune.json", "best.yaml", "trials"


@dataclass
class TuneSettings:
    config: str
    space: SearchSpace
    trials: int
    folder: Path
    overrides: list[str]
    pruner: str = "median"  # median | none
    startup: int = 3  # finished trials before the pruner stops any
    seed: int = 0


class TrialTrainer(Trainer):
    """A run that reports its validation top-1 to its optuna trial after each epoch (and stops if
    the pruner says so)."""

    def __init__(self, config: Config, trial, **kwargs):
        self.trial = trial
        super().__init__(config, **kwargs)

    def on_epoch_end(self, record: dict) -> None:
        import optuna

        self.trial.report(record[SCORE], record["epoch"])
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation top-1 {record[SCORE]:.2f}% after epoch {record['epoch']}")


def storage(folder: Path):
    """optuna's journal in ``folder/study.log`` (a plain file: no database server)."""
    import optuna

    try:
        from optuna.storages.journal import JournalFileBackend as Backend
    except ImportError:  # optuna < 4
        from optuna.storages import JournalFileStorage as Backend
    return optuna.storages.JournalStorage(Backend(str(folder / STUDY_LOG)))


def trial_config(s: TuneSettings, trial) -> Config:
    """The trial's config: the base config and overrides, the trial's draws, its own run folder."""
    base = load_config(s.config, s.overrides)
    base_terms = [t for t in base.to_dict()["distill"]["terms"]]
    drawn = s.space.overrides(trial, base_terms)
    cfg = load_config(s.config, [*s.overrides, *drawn, f"run.output_dir={s.folder / TRIALS}",
                                 f"run.name=trial-{trial.number:03d}", "run.progress=false"])
    trial.set_user_attr("overrides", drawn)
    return cfg


def check_settings(s: TuneSettings) -> Config:
    """The base config, refused where a study could not be scored without the test set."""
    cfg = load_config(s.config, s.overrides)
    if not cfg.data.val_fraction:
        raise ConfigError("sakd tune scores each trial on a validation hold-out, never the test set: "
                          "set data.val_fraction (e.g. data.val_fraction=0.1)")
    if s.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {s.trials}")
    if s.pruner not in ("median", "none"):
        raise ConfigError(f"--pruner must be median or none, got {s.pruner!r}")
    return cfg


def open_study(s: TuneSettings):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s.folder.mkdir(parents=True, exist_ok=True)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=s.startup, n_warmup_steps=1)
              if s.pruner == "median" else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name="sakd-tune", storage=storage(s.folder), direction="maximize",
                                load_if_exists=True, pruner=pruner)
    done = finished(study)
    # a resumed study draws on from where it stopped: the sampler's seed moves with the trials done
    study.sampler = optuna.samplers.TPESampler(seed=s.seed + len(study.trials), n_startup_trials=min(10, s.trials))
    for t in study.trials:  # cut short by a killed process: failed, and its draws tried again first
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
    return study, done


def finished(study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(t.state in states for t in study.trials)


def run_trial(s: TuneSettings, trial, console) -> float:
    import optuna

    cfg = trial_config(s, trial)
    trainer = TrialTrainer(cfg, trial, console=console)
    trial.set_user_attr("run_dir", str(trainer.run_dir))
    try:
        trainer.fit()
    except optuna.TrialPruned:
        write_summary(s, trial.study)
        raise
    score = max(r[SCORE] for r in trainer.history)
    trial.set_user_attr("epochs", len(trainer.history))
    return score


def write_summary(s: TuneSettings, study) -> dict:
    """``tune.json`` (every trial, the best) and ``best.yaml`` (the best trial's config)."""
    import optuna

    rows = [{"number": t.number, "state": t.state.name.lower(), "score": t.value, "params": t.params,
             "overrides": t.user_attrs.get("overrides"), "run_dir": t.user_attrs.get("run_dir"),
             "val_top1_by_epoch": {str(k): v for k, v in sorted(t.intermediate_values.items())}}
            for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary = {"config": s.config, "overrides": s.overrides, "space": s.space.source, "score": SCORE,
               "trials_wanted": s.trials, "finished": finished(study), "trials": rows}
    if complete:
        best = max(complete, key=lambda t: t.value)
        summary["best"] = {"number": best.number, "score": best.value, "params": best.params,
                           "overrides": best.user_attrs["overrides"], "run_dir": best.user_attrs["run_dir"],
                           "config": str(s.folder / BEST_CONFIG)}
        shutil.copyfile(Path(best.user_attrs["run_dir"]) / runs.CONFIG, s.folder / BEST_CONFIG)
    write_text(s.folder / SUMMARY, json.dumps(summary, indent=2), "--study")
    return summary


def tune(s: TuneSettings, console=None) -> dict:
    """Run the study to ``s.trials`` finished trials; returns ``tune.json``'s content."""
    from rich.console import Console

    console = console or Console(stderr=True)
    check_settings(s)
    study, done = open_study(s)
    quiet = Console(stderr=True, quiet=True)
    while done < s.trials:
        trial = study.ask()
        try:
            score = run_trial(s, trial, quiet)
        except Exception as exc:
            import optuna

            if isinstance(exc, optuna.TrialPruned):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                console.print(f"trial {trial.number}: pruned ({exc}); {trial.params}", highlight=False)
                done += 1
                continue
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            write_summary(s, study)
            raise
        except KeyboardInterrupt:
            import optuna

            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, skip_if_exists=False)
            write_summary(s, study)
            raise
        study.tell(trial, score)
        done += 1
        best = study.best_trial
        console.print(f"trial {trial.number}: {SCORE} {score:.2f}% (best: trial {best.number}, {best.value:.2f}%); "
                      f"{trial.params}", highlight=False)
        write_summary(s, study)
    return write_summary(s, study)
