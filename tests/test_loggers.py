"""Experiment trackers get the same numbers as metrics.jsonl, and a resumed run continues the same
tracker run. wandb (offline) and mlflow (local SQLite store) are optional: their tests skip without them."""

import json
from pathlib import Path

import pytest

from conftest import fast_config
from sakd.errors import ConfigError
from sakd.training import Trainer, train


def _records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _numbers(record):
    return {k: v for k, v in record.items() if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_tensorboard_gets_every_number_of_every_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = train(fast_config(tmp_path, "model.spiking=false"))
    events = EventAccumulator(str(Path(summary["run_dir"]) / "tensorboard"))
    events.Reload()
    for record in _records(summary["run_dir"]):
        for key, value in _numbers(record).items():
            (point,) = [e for e in events.Scalars(key) if e.step == record["epoch"]]
            assert point.value == pytest.approx(value, rel=1e-6)


def test_unknown_or_missing_logger_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(
        ConfigError, match="config key 'run.loggers' must be one of mlflow, tensorboard, wandb; got 'comet'"
    ):
        fast_config(tmp_path, "run.loggers=[comet]")
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # as if not installed
    with pytest.raises(ConfigError, match=r'run.loggers: wandb is not installed; pip install "sakd\[wandb\]"'):
        Trainer(fast_config(tmp_path, "run.loggers=[wandb]"))


def test_mlflow_local_store_gets_the_metrics_and_a_resumed_run_continues_it(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = fast_config(tmp_path, "model.spiking=false", "optim.epochs=1", "run.loggers=[mlflow]")
    summary = train(cfg)
    run_dir = Path(summary["run_dir"])
    Trainer.from_checkpoint(run_dir, ["optim.epochs=2"]).fit()
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}")
    run = client.get_run((run_dir / "mlflow-id").read_text().strip())
    assert run.data.params["optim.lr"] == "0.05" and run.data.params["model.name"] == "resnet_tiny"
    for record in _records(run_dir):  # both epochs, in one MLflow run
        for key, value in _numbers(record).items():
            (point,) = [m for m in client.get_metric_history(run.info.run_id, key) if m.step == record["epoch"]]
            assert point.value == pytest.approx(value)
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_wandb_gets_the_same_numbers_and_a_resumed_run_continues_it(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    inits, logged = [], []

    class Recorder:  # stands in for wandb's run object: what sakd hands to wandb
        def log(self, data, step):
            logged.append((step, data))

        def finish(self):
            logged.append("finish")

    monkeypatch.setattr(wandb, "init", lambda **kw: inits.append(kw) or Recorder())
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = Path(
        train(fast_config(tmp_path, "model.spiking=false", "optim.epochs=1", "run.loggers=[wandb]"))["run_dir"]
    )
    Trainer.from_checkpoint(run_dir, ["optim.epochs=2"]).fit()
    assert [i["id"] for i in inits] == [(run_dir / "wandb-id").read_text().strip()] * 2  # one wandb run
    assert all(i["resume"] == "allow" and i["mode"] == "offline" and i["name"] == run_dir.name for i in inits)
    assert inits[0]["config"]["model"]["name"] == "resnet_tiny"
    records = _records(run_dir)
    assert [entry for entry in logged if entry != "finish"] == [(r["epoch"], _numbers(r)) for r in records]
    assert logged.count("finish") == 2


def test_wandb_writes_a_real_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default is offline: no network, no login
    run_dir = Path(
        train(fast_config(tmp_path, "model.spiking=false", "optim.epochs=1", "run.loggers=[wandb]"))["run_dir"]
    )
    run_id = (run_dir / "wandb-id").read_text().strip()
    (folder,) = list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert (folder / f"run-{run_id}.wandb").stat().st_size > 0
