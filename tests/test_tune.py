"""``sakd tune``: search spaces checked at load, trials scored on validation data only, a study
that resumes, and a best config that trains to its score again."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import FAST

from sakd.cli import main
from sakd.errors import ConfigError
from sakd.training import Trainer, load_config
from sakd.tuning.space import SearchSpace, packaged_spaces
from sakd.tuning.study import TrialTrainer, TuneSettings, open_study, storage, tune

SPACE = {"terms": {"temporal_sd": {"weight": {"low": 0.1, "high": 2.0, "log": True}, "tau": [1, 2]}}}
BASE = FAST + ["data.val_fraction=0.2", "optim.epochs=2"]


def settings(tmp_path, trials, space=SPACE, **kw) -> TuneSettings:
    return TuneSettings(None, SearchSpace.from_dict(space), trials, tmp_path / "study", list(BASE),
                        pruner=kw.pop("pruner", "none"), **kw)


def test_a_fixed_list_or_mapping_is_written_as_value():
    space = SearchSpace.from_dict({"terms": {"timestep_kd": {"weight": 1.0, "weighting": {"value": [1, 3]}}}})
    out = space.overrides(optuna.trial.FixedTrial({}), [])
    assert json.loads(out[0].split("=", 1)[1]) == [
        {"name": "timestep_kd", "weight": 1.0, "options": {"weighting": [1, 3]}}
    ]


@pytest.mark.parametrize("space, says", [
    ({"params": {"distill.tau": {"low": 4, "high": 1}}}, "low 4 must be below high 1"),
    ({"params": {"distill.tau": {"low": 0, "high": 1, "log": True}}}, "a log range needs low > 0"),
    ({"params": {"distill.tau": {"min": 1}}}, "a range is {low, high"),
    ({"terms": {"no_such_term": {"weight": 1}}}, "no_such_term"),
    ({"terms": {"dkd": {"weight": 1, "temperature": 4}}}, "has no option 'temperature'"),
    ({"terms": {"dkd": {"tau": 4}}}, "needs a weight"),
    ({"terms": {"dkd": {"weight": 1}}, "combine": [2]}, "combine takes sizes from 1 to 1"),
    ({"parameters": {}}, "unknown key(s) ['parameters']"),
    ({"params": {}}, "nothing to draw"),
])
def test_a_bad_space_is_one_line_naming_what_is_wrong(space, says):
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_dict(space, "s.yaml")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_draws_become_overrides_and_combinations_draw_only_the_chosen_terms_options():
    space = SearchSpace.from_dict(
        {
            "params": {
                "distill.beta": {"low": 1, "high": 10},
                "optim.lr": [0.05, 0.1],
                "run.seed": {"low": 0, "high": 9, "step": 1},
            },
            "terms": {
                "logit_kd": {"weight": {"low": 0.1, "high": 1.0}, "tau": 4},
                "temporal_sd": {"weight": 0.5, "tau": {"low": 1.0, "high": 2.0}},
            },
            "combine": [1, 2],
        }
    )
    assert space.combinations == [("logit_kd",), ("temporal_sd",), ("logit_kd", "temporal_sd")]
    trial = optuna.trial.FixedTrial({"distill.beta": 3.5, "optim.lr": 0.1, "run.seed": 7, "terms": "logit_kd",
                                     "logit_kd.weight": 0.25})
    base = [{"name": "dkd", "weight": 1.0, "options": {}, "schedule": []}]
    out = space.overrides(trial, base)
    assert out[:3] == ["distill.beta=3.5", "optim.lr=0.1", "run.seed=7"]
    terms = json.loads(out[3].split("=", 1)[1])
    assert terms == base + [{"name": "logit_kd", "weight": 0.25, "options": {"tau": 4}}]  # the fixed tau
    cfg = load_config(None, FAST + out)  # the overrides are a valid config
    assert [t.name for t in cfg.distill.terms] == ["dkd", "logit_kd"] and cfg.distill.beta == 3.5
    # a whole-number step draws whole numbers, a range without one real numbers
    assert space.params[2].integer and not space.params[0].integer


def test_every_packaged_space_loads():
    names = packaged_spaces()
    assert {"sakd", "dkd", "logit_kd", "temporal_sd"} <= set(names)
    for name in names:
        assert SearchSpace.load(name).params or SearchSpace.load(name).terms


def test_tune_refuses_to_score_without_a_validation_hold_out(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    code = main(["tune", "--config", "quickstart/snn", "--space", str(space), "--study", str(tmp_path / "st")])
    err = capsys.readouterr().err
    assert code == 2 and "data.val_fraction" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "st" / "tune.json").exists()


def test_a_study_scores_on_validation_resumes_and_its_best_config_trains_to_its_score(tmp_path):
    s = settings(tmp_path, 2)
    first = tune(s)
    assert first["finished"] == 2 and [t["state"] for t in first["trials"]] == ["complete", "complete"]
    for row in first["trials"]:  # the score is the best validation top-1 of the trial's own run
        records = [json.loads(line) for line in (Path(row["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert row["score"] == max(r["val/top1"] for r in records)
        assert row["val_top1_by_epoch"] == {str(r["epoch"]): r["val/top1"] for r in records}
    best = first["best"]
    assert best["score"] == max(t["score"] for t in first["trials"])
    # running again with more trials trains only the new one
    again = tune(settings(tmp_path, 3))
    assert again["finished"] == 3 and [t["number"] for t in again["trials"]] == [0, 1, 2]
    assert again["trials"][:2] == first["trials"]
    assert sorted(p.name for p in (s.folder / "trials").iterdir()) == ["trial-000", "trial-001", "trial-002"]
    # best-trial.yaml is the best trial's config as it ran: trained again, the same validation score;
    # best.yaml is it with the base config's run folder (what `sakd train --config best.yaml` uses)
    cfg = load_config(s.folder / "best-trial.yaml", [f"run.output_dir={tmp_path / 'again'}"])
    trainer = Trainer(cfg)
    trainer.fit()
    assert max(r["val/top1"] for r in trainer.history) == again["best"]["score"]
    best = load_config(s.folder / "best.yaml")
    assert best.run.output_dir == load_config(None, BASE).run.output_dir and best.run.name is None
    assert best.distill == cfg.distill and best.data.val_fraction == 0.2
    assert (s.folder / "best.yaml").read_text().startswith("# sakd tune: the best trial")


def test_a_trial_cut_short_is_failed_and_its_draws_tried_again(tmp_path):
    import socket
    import subprocess
    import sys

    s = settings(tmp_path, 1)
    study, _ = open_study(s)
    cut = study.ask()  # a process killed in this trial leaves it RUNNING in the journal
    drawn = {"temporal_sd.weight": cut.suggest_float("temporal_sd.weight", 0.1, 2.0, log=True),
             "temporal_sd.tau": cut.suggest_categorical("temporal_sd.tau", [1, 2])}
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    cut.set_user_attr("worker", {"host": socket.gethostname(), "pid": int(gone.stdout)})  # a process that is gone
    result = tune(s)
    states = {t["number"]: t["state"] for t in result["trials"]}
    assert states == {0: "fail", 1: "complete"} and result["trials"][1]["params"] == drawn


def test_a_pruned_trial_counts_and_is_recorded(tmp_path, monkeypatch):
    calls = []

    def prune_second(self, record):
        calls.append(self.trial.number)
        if self.trial.number == 1:
            raise optuna.TrialPruned("test")
        TrialTrainer.__base__.on_epoch_end(self, record)

    monkeypatch.setattr(TrialTrainer, "on_epoch_end", prune_second)
    result = tune(settings(tmp_path, 2, pruner="median"))
    assert [t["state"] for t in result["trials"]] == ["complete", "pruned"] and result["best"]["number"] == 0
    assert calls == [0, 0, 1]  # the pruned trial stopped after its first epoch
    study = optuna.load_study(study_name="sakd-tune", storage=storage(tmp_path / "study"))
    assert len(study.trials) == 2


def test_a_study_is_continued_only_with_its_own_settings(tmp_path):
    tune(settings(tmp_path, 1))
    other = {"terms": {"temporal_sd": {"weight": 1.0, "tau": {"low": 1.0, "high": 2.0}}}}
    with pytest.raises(ConfigError, match="was run with another space; give this one its own --study"):
        tune(settings(tmp_path, 2, space=other))


def test_a_drawn_term_replaces_the_configs_term_of_that_name(tmp_path):
    base_term = 'distill.terms=[{name: temporal_sd, weight: 9.0, tau: 4}, {name: timestep_ce, weight: 1.0}]'
    s = TuneSettings(None, SearchSpace.from_dict(SPACE), 1, tmp_path / "study", [*BASE, base_term], pruner="none")
    result = tune(s)
    cfg = load_config(tmp_path / "study" / "best-trial.yaml")
    assert [(t.name, t.weight) for t in cfg.distill.terms][0] == ("timestep_ce", 1.0)  # kept
    assert cfg.distill.terms[1].name == "temporal_sd" and cfg.distill.terms[1].weight != 9.0  # drawn, not the config's
    assert result["finished"] == 1
    both = SearchSpace.from_dict({"terms": {"logit_kd": {"weight": 1.0}}})
    with pytest.raises(ConfigError, match="draws the term 'logit_kd' and distill.gamma weighs it too"):
        tune(TuneSettings(None, both, 1, tmp_path / "s2", [*BASE, "distill.gamma=1"], pruner="none"))


def test_a_trial_stopped_by_a_signal_is_tried_again_with_its_draws(tmp_path, monkeypatch):
    from sakd.errors import Preempted

    def stop_first(self, record):
        if self.trial.number == 0:
            self.keeper.signals.request("SIGTERM")

    monkeypatch.setattr(TrialTrainer, "on_epoch_end", stop_first)
    with pytest.raises(Preempted, match="run the same sakd tune command again"):
        tune(settings(tmp_path, 1))
    monkeypatch.undo()
    result = tune(settings(tmp_path, 1))
    first, again = result["trials"]
    assert first["state"] == "fail" and again["state"] == "complete" and again["params"] == first["params"]


def test_the_median_pruner_stops_a_trial_below_the_median_from_its_warm_up_epoch(tmp_path, monkeypatch):
    from sakd.training import Trainer as Base

    scores = iter([50.0, 50.0, 50.0, 50.0, 10.0, 10.0])  # trials 0 and 1 at 50 %, trial 2 at 10 %

    def fake_epoch(self):
        record = Base.train_epoch(self)
        record["val/top1"] = next(scores)
        return record

    monkeypatch.setattr(TrialTrainer, "train_epoch", fake_epoch)
    s = settings(tmp_path, 3, pruner="median", startup=2, prune_after=1)
    result = tune(s)
    assert [t["state"] for t in result["trials"]] == ["complete", "complete", "pruned"]
    assert result["trials"][2]["val_top1_by_epoch"] == {"1": 10.0}  # stopped after its first epoch


def test_a_space_whose_trials_a_config_cannot_run_is_refused_before_any_trial(tmp_path):
    needs_teacher = {"terms": {"dkd": {"weight": {"low": 0.5, "high": 2.0}}, "temporal_sd": {"weight": 1.0}},
                     "combine": [1]}  # the second sum runs, the first needs a teacher this config lacks
    with pytest.raises(ConfigError, match="'dkd' reads the teacher's logits, so it needs a teacher"):
        tune(settings(tmp_path, 1, space=needs_teacher))
    assert not (tmp_path / "study" / "study.log").exists()  # nothing in a journal: no trial ran


def _worker(tmp_path, trials, *extra):
    import os
    import subprocess
    import sys

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    args = ["--config", "quickstart/snn", "--space", str(space), "--trials", str(trials), "--study",
            str(tmp_path / "study"), "--pruner", "none", *extra, *BASE, "optim.epochs=1", "run.loggers=[]"]
    return subprocess.Popen([sys.executable, "-m", "sakd", "tune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_worker_processes_share_one_study_and_a_killed_workers_trial_is_run_again(tmp_path):
    """Two processes on one journal: every trial run by one of them, the study finished at --trials.
    A worker killed (-9) mid-trial: the next worker fails its trial and runs its draws again, once."""
    import signal
    import time

    workers = [_worker(tmp_path, 4), _worker(tmp_path, 4)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    study = optuna.load_study(study_name="sakd-tune", storage=storage(tmp_path / "study"))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # the last trial asked for twice at once: one given back (surplus), not run
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == 4  # no setting run twice
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2  # both worked on it

    killed = _worker(tmp_path, 6, "--heartbeat", "1")
    deadline = time.time() + 300
    while time.time() < deadline:  # until it is inside its first trial (trial 4)
        study = optuna.load_study(study_name="sakd-tune", storage=storage(tmp_path / "study"))
        if any(t.number == 4 and t.user_attrs.get("worker") for t in study.trials):
            break
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    again = _worker(tmp_path, 6, "--heartbeat", "1")
    out = again.communicate(timeout=600)
    assert again.returncode == 0, out
    study = optuna.load_study(study_name="sakd-tune", storage=storage(tmp_path / "study"))
    lost = study.trials[4]
    assert lost.state == optuna.trial.TrialState.FAIL
    retried = [t for t in study.trials if t.user_attrs.get("retry_of") == 4]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == lost.params
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 6


def test_a_trial_is_judged_by_its_own_heartbeat_and_a_database_storage_runs_a_study(tmp_path):
    """A worker with a short beat does not fail another's live trial that beats slowly; with
    --storage (here SQLite through optuna's RDB storage) the study runs and best.yaml is written
    from the storage's record of the trial's config."""
    import time
    from types import SimpleNamespace

    from sakd.tuning.study import stale

    live = SimpleNamespace(user_attrs={"worker": {"host": "elsewhere", "pid": 1}, "beat": 30.0,
                                       "alive_at": time.time() - 10}, datetime_start=None)
    assert not stale(live, beat=1.0)  # 10 s without a beat: within its own 4 x 30 s
    live.user_attrs["alive_at"] = time.time() - 121
    assert stale(live, beat=1.0)
    s = settings(tmp_path, 1, storage=f"sqlite:///{tmp_path / 'study.db'}")
    result = tune(s)
    assert result["finished"] == 1 and (s.folder / "best.yaml").is_file() and not (s.folder / "study.log").exists()
    study = optuna.load_study(study_name="sakd-tune", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert study.trials[0].user_attrs["config"] == (s.folder / "best-trial.yaml").read_text()
