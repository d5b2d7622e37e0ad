"""``sakd tune``: optuna's TPE over a search space, every trial a training run scored on the
validation hold-out (``data.val_fraction``; the test set is never read to choose).

A study lives in one folder: ``study.log`` (optuna's journal: every trial, its draws, its
per-epoch validation top-1 and its score; or, with ``storage``, a database optuna reaches by URL),
``trials/trial-NNN/`` (each trial's run folder), ``tune.json`` (the trials and the best one,
rewritten after each), ``best-trial.yaml`` (the best trial's config as it ran: trained again on the
same machine it reaches the same score) and ``best.yaml`` (the same with the base config's run
folder, name and progress bar, for ``sakd train --config best.yaml``; it still holds out
``data.val_fraction``: ``data.val_fraction=0`` trains on all the training data, no longer to the
same score). Running the same command again continues the study up to ``--trials`` finished
trials. A study records its config, overrides and space, and is continued only with the same ones
(one line otherwise).

Several processes may work on one study at once (one per GPU, SLURM array tasks): each asks the
storage for the next trial, so no trial is run by two, and a process stops asking once the
finished and running trials reach ``--trials`` (it waits while others' trials run, in case one
fails and must be run again). The journal file serves processes on one machine or on a shared
file system; a database URL (``--storage postgresql://...``, ``sqlite:///study.db``) a cluster. A
trial's process beats a heartbeat into the trial every ``heartbeat`` seconds; a trial whose
process is gone (on this machine: its process no longer exists; anywhere: no beat for
``4 x heartbeat`` seconds), or that was cut short (Ctrl-C, SIGTERM/SIGUSR1), is marked failed and
its draws are run again first, by whichever process asks next (at most twice for one setting).

A trial's score is its best validation top-1 (the epoch ``best.pt`` keeps); the median pruner
stops a trial whose validation top-1 after an epoch is below the median of earlier trials at that
epoch, after ``startup`` finished trials and from epoch ``prune_after`` on (default: a quarter of
the epochs, at least 1). The sampler is TPE after ``max(1, trials // 3)`` (at most 10) random
trials.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from sakd import runs
from sakd.errors import ConfigError, Preempted
from sakd.outputs import write_text
from sakd.training import Trainer, load_config
from sakd.training.config import Config
from sakd.tuning.space import SearchSpace

SCORE = "val/top1"
STUDY_LOG, SUMMARY, BEST_CONFIG, BEST_TRIAL, TRIALS = "study.log", "tune.json", "best.yaml", "best-trial.yaml", "trials"


@dataclass
class TuneSettings:
    config: str
    space: SearchSpace
    trials: int
    folder: Path
    overrides: list[str]
    pruner: str = "median"  # median | none
    startup: int = 3  # finished trials before the pruner stops any
    seed: int | None = 0  # the sampler's; None: one of this process's own (several workers draw apart)
    prune_after: int | None = None  # the first epoch the pruner may stop a trial at (default: epochs // 4)
    storage: str | None = None  # a database URL optuna reaches (RDB); None: the journal file in the folder
    heartbeat: float = 30.0  # seconds between a running trial's beats; no beat for 4x this: its process is gone

    def recorded(self) -> dict:
        """What a study is continued only with."""
        return {"config": None if self.config is None else str(self.config), "overrides": list(self.overrides),
                "space": self.space.spec}


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


def storage(folder: Path, url: str | None = None):
    """The study's storage: optuna's journal in ``folder/study.log`` (a plain file: no database
    server), or the database at ``url`` (optuna's RDB storage: SQLite, PostgreSQL, MySQL)."""
    import optuna

    if url:
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # noqa: BLE001 - a bad URL or an unreachable server: one line
            raise ConfigError(f"--storage {url}: {str(exc).strip().splitlines()[0]}") from None
    try:
        from optuna.storages.journal import JournalFileBackend as Backend
    except ImportError:  # optuna < 4
        from optuna.storages import JournalFileStorage as Backend
    return optuna.storages.JournalStorage(Backend(str(folder / STUDY_LOG)))


def worker() -> dict:
    """This process, as a running trial records it."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def heartbeat(trial, every: float):
    """While the block runs, the trial's ``alive_at`` is set every ``every`` seconds (a thread)."""
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            with contextlib.suppress(Exception):  # a storage hiccup: the next beat tries again
                trial.set_user_attr("alive_at", time.time())

    trial.set_user_attr("worker", worker())
    trial.set_user_attr("beat", every)  # judged by its own beat, whatever another worker's is
    trial.set_user_attr("alive_at", time.time())
    thread = threading.Thread(target=beat, name=f"sakd-tune-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def stale(t, beat: float) -> bool:
    """Whether the running trial ``t``'s process is gone: on this machine, no such process; anywhere,
    no heartbeat for 4 of its beats (``beat``: for a trial that records none). Machines' clocks
    must agree to within that (NTP)."""
    who = t.user_attrs.get("worker") or {}
    if who.get("host") == socket.gethostname() and who.get("pid") is not None and not _alive(who["pid"]):
        return True
    last = t.user_attrs.get("alive_at") or (t.datetime_start.timestamp() if t.datetime_start else time.time())
    return time.time() - last > 4 * t.user_attrs.get("beat", beat)


RETRIES = 2  # a failed trial's draws are run at most this many more times (a setting that is killed each time)


def retry(study, t) -> None:
    """Mark the trial ``t`` failed and its draws to be run again, first (the first process that
    tells wins; at most :data:`RETRIES` times for one setting)."""
    import optuna

    try:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    except Exception:  # noqa: BLE001 - already finished: another process told it first
        return
    tries = t.user_attrs.get("tries", 0) + 1
    if tries <= RETRIES:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "tries": tries}, skip_if_exists=False)


def fail_stale(study, beat: float) -> None:
    """Every running trial whose process is gone: failed, its draws run again."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if stale(t, beat):
            retry(study, t)


def taken_over(study, number: int) -> bool:
    """Whether this process's running trial was failed by another (which found no heartbeat)."""
    import optuna

    return study.get_trials(deepcopy=False)[number].state != optuna.trial.TrialState.RUNNING


def trial_config(s: TuneSettings, trial) -> Config:
    """The trial's config: the base config and overrides, the trial's draws (a drawn loss term
    replaces the base config's term of that name), its own run folder."""
    base = load_config(s.config, s.overrides)
    drawn_names = set(s.space.terms)
    base_terms = [t for t in base.to_dict()["distill"]["terms"] if t["name"] not in drawn_names]
    drawn = s.space.overrides(trial, base_terms)
    cfg = load_config(s.config, [*s.overrides, *drawn, f"run.output_dir={s.folder / TRIALS}",
                                 f"run.name=trial-{trial.number:03d}", "run.progress=false"])
    trial.set_user_attr("overrides", drawn)
    return cfg


class FirstDraws:
    """A stand-in trial that draws each range's low end and each list's first entry (the sum of
    terms named ``terms`` given), so that a space's configs are checked before any trial runs."""

    number = 0

    def __init__(self, terms: str | None = None):
        self.terms = terms

    def suggest_float(self, name, low, high, **kw):
        return low

    suggest_int = suggest_float

    def suggest_categorical(self, name, choices):
        return self.terms if name == "terms" and self.terms is not None else choices[0]

    def set_user_attr(self, key, value):
        pass


def check_settings(s: TuneSettings) -> Config:
    """The base config, refused where a study could not be scored without the test set, or where
    a trial's config would be refused (each sum of terms the space draws, checked before any trial)."""
    from sakd.distill.teacher import check_distillation
    from sakd.training.config import not_a_conversion

    cfg = load_config(s.config, s.overrides)
    not_a_conversion(cfg, str(s.config))
    if not cfg.data.val_fraction:
        raise ConfigError("sakd tune scores each trial on a validation hold-out, never the test set: "
                          "set data.val_fraction (e.g. data.val_fraction=0.1)")
    if s.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {s.trials}")
    if s.pruner not in ("median", "none"):
        raise ConfigError(f"--pruner must be median or none, got {s.pruner!r}")
    schedule = [d.name for d in s.space.params if d.name in ("optim.epochs", "optim.warmup_epochs", "optim.scheduler")]
    if s.pruner == "median" and schedule:
        raise ConfigError(f"the space draws {', '.join(schedule)}: trials' epochs are not comparable, so the median "
                          "pruner cannot judge them (use --pruner none)")
    shorthand = {"distill.gamma": "logit_kd", "distill.beta": "feature_kd"}
    for key, term in shorthand.items():
        if term in s.space.terms and (
            getattr(cfg.distill, key.split(".")[1]) or any(d.name == key for d in s.space.params)
        ):
            raise ConfigError(f"the space draws the term {term!r} and {key} weighs it too; draw one of them")
    for chosen in s.space.combinations or [()]:
        trial = trial_config(s, FirstDraws("+".join(chosen) if len(s.space.combinations) > 1 else None))
        check_distillation(trial.distill, trial.model)
    return cfg


def open_study(s: TuneSettings, epochs: int | None = None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s.folder.mkdir(parents=True, exist_ok=True)
    after = s.prune_after or max(1, (epochs or 4) // 4)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=s.startup, n_warmup_steps=after)
              if s.pruner == "median" else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name="sakd-tune", storage=storage(s.folder, s.storage), direction="maximize",
                                load_if_exists=True, pruner=pruner)
    recorded, mine = study.user_attrs.get("settings"), json.loads(json.dumps(s.recorded()))  # as the journal keeps it
    if recorded is None:
        study.set_user_attr("settings", mine)
    elif recorded != mine:
        differ = [k for k in recorded if recorded[k] != mine[k]]
        raise ConfigError(f"the study in {s.folder} was run with another {' and '.join(differ)}; "
                          "give this one its own --study folder")
    fail_stale(study, s.heartbeat)  # cut short by a killed process: failed, its draws tried again first
    done = finished(study)
    # a resumed study draws on from where it stopped: the sampler's seed moves with the trials done;
    # without a seed, each process draws its own stream (workers started together would draw alike)
    seed = s.seed + len(study.trials) if s.seed is not None else int.from_bytes(os.urandom(4), "little")
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, s.trials // 3)))
    return study, done


def finished(study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def running(study) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def waiting(study) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def run_trial(s: TuneSettings, trial, console) -> float:
    cfg = trial_config(s, trial)
    trainer = TrialTrainer(cfg, trial, console=console)
    trial.set_user_attr("run_dir", str(trainer.run_dir))
    # in the storage: any worker writes best.yaml
    trial.set_user_attr("config", (trainer.run_dir / runs.CONFIG).read_text())
    trainer.fit()
    score = max(r[SCORE] for r in trainer.history)
    trial.set_user_attr("epochs", len(trainer.history))
    return score


def write_summary(s: TuneSettings, study) -> dict:
    """``tune.json`` (every trial, the best) and ``best.yaml`` (the best trial's config)."""
    import optuna

    rows = [{"number": t.number, "state": "surplus" if t.user_attrs.get("surplus") else t.state.name.lower(),
             "score": t.value, "params": t.params,
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
                           "config": str(s.folder / BEST_CONFIG), "trial_config": str(s.folder / BEST_TRIAL)}
        ran = best.user_attrs.get("config") or (Path(best.user_attrs["run_dir"]) / runs.CONFIG).read_text()
        write_text(s.folder / BEST_TRIAL, ran, "--study")
        base = load_config(s.config, s.overrides).run
        config = yaml.safe_load(ran)
        config["run"].update(output_dir=base.output_dir, name=base.name, progress=base.progress)
        note = (f"# sakd tune: the best trial ({best.number}, {SCORE} {best.value:.2f}%) of {s.folder}, with the base "
                f"config's run folder; it holds out data.val_fraction={config['data']['val_fraction']} "
                "(data.val_fraction=0 trains on all the training data)\n")
        write_text(s.folder / BEST_CONFIG, note + yaml.safe_dump(config, sort_keys=False), "--study")
    write_text(s.folder / SUMMARY, json.dumps(summary, indent=2), "--study")
    return summary


def tune(s: TuneSettings, console=None) -> dict:
    """Run the study to ``s.trials`` finished trials; returns ``tune.json``'s content."""
    from rich.console import Console

    console = console or Console(stderr=True)
    cfg = check_settings(s)
    return _tune(s, cfg, console)


def _tune(s: TuneSettings, cfg: Config, console) -> dict:
    import optuna

    study, _ = open_study(s, cfg.optim.epochs)
    from rich.console import Console

    quiet = Console(stderr=True, quiet=True)
    while True:
        fail_stale(study, s.heartbeat)
        done, busy = finished(study), running(study)
        if done >= s.trials:
            break
        if done + busy >= s.trials and not waiting(study):  # others' trials finish the study, unless one fails
            time.sleep(min(5.0, s.heartbeat))
            continue
        trial = ask(study, s.trials)
        if trial is None:  # another worker asked for the last one first
            continue
        try:
            with heartbeat(trial, s.heartbeat):
                score = run_trial(s, trial, quiet)
        except optuna.TrialPruned as exc:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            console.print(f"trial {trial.number}: pruned ({exc}); {trial.params}", highlight=False)
            write_summary(s, study)
            continue
        except (KeyboardInterrupt, Preempted) as exc:  # stopped from outside: its draws are tried again first
            retry(study, study.get_trials(deepcopy=False)[trial.number])
            write_summary(s, study)
            if isinstance(exc, Preempted):
                stop = Preempted(f"sakd tune stopped in trial {trial.number} ({str(exc).split(';')[0]}); run the same "
                                 "sakd tune command again to continue the study (the trial starts again)")
                stop.exit_code = exc.exit_code
                raise stop from None
            raise
        except Exception:
            if taken_over(study, trial.number):
                console.print(f"trial {trial.number}: taken over (another worker saw no heartbeat for 4 beats and "
                              "runs its draws again)", highlight=False)
                continue
            study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            write_summary(s, study)
            raise
        if taken_over(study, trial.number):
            console.print(f"trial {trial.number}: taken over (another worker saw no heartbeat for 4 beats and runs its "
                          "draws again); its score here is not kept", highlight=False)
            continue
        study.tell(trial, score)
        best = study.best_trial
        console.print(f"trial {trial.number}: {SCORE} {score:.2f}% (best: trial {best.number}, {best.value:.2f}%); "
                      f"{trial.params}", highlight=False)
        write_summary(s, study)
    return write_summary(s, study)


def ask(study, trials: int):
    """The next trial: a failed trial's draws first (each failure queued once: a second copy, queued by
    two processes that found the same trial gone, is dropped), else the sampler's; None (the trial
    given back, marked ``surplus``) where the finished trials and the running ones asked for before
    it already reach ``trials`` (two workers asked for the last one at once)."""
    import optuna

    while True:
        trial = study.ask()
        others = study.get_trials(deepcopy=False)
        ahead = sum(t.number < trial.number and (t.state == optuna.trial.TrialState.RUNNING
                                                 or t.state in (optuna.trial.TrialState.COMPLETE,
                                                                optuna.trial.TrialState.PRUNED)) for t in others)
        if ahead >= trials:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        again = trial.user_attrs.get("retry_of")
        taken = again is not None and any(
            t.user_attrs.get("retry_of") == again
            and t.number < trial.number
            and t.state != optuna.trial.TrialState.WAITING
            for t in others
        )
        if not taken:
            return trial
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
