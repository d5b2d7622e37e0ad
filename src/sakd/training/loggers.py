"""Experiment trackers: every epoch record of ``metrics.jsonl`` also goes to each of ``run.loggers``.

* ``tensorboard`` (default): scalars in the run folder's ``tensorboard/``.
* ``wandb`` (``pip install "sakd[wandb]"``): a Weights & Biases run named after the run folder,
  with the resolved config. Offline unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads
  an offline run later); ``WANDB_PROJECT`` names the project (default ``sakd``).
* ``mlflow`` (``pip install "sakd[mlflow]"``): an MLflow run with the config as parameters, in
  ``MLFLOW_TRACKING_URI`` if set, else in the SQLite store ``mlflow.db`` beside the run folders
  (``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``);
  ``MLFLOW_EXPERIMENT_NAME`` names the experiment (default ``sakd``).

A resumed run continues the same tracker run (its id is kept in the run folder) and logs from the
next epoch on. A tracker is one class registered on :data:`LOGGERS`.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path

from sakd import runs
from sakd.errors import ConfigError
from sakd.outputs import write_bytes
from sakd.registry import Registry

LOGGERS: Registry = Registry("logger", keys=("run.loggers",), listed=("loggers",), training_only=True,
                             heading="experiment trackers (run.loggers)")


def numbers(record: dict) -> dict[str, float]:
    """The finite numbers of an epoch record, without the epoch itself."""
    return {k: float(v) for k, v in record.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def flat(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"optim.lr": "0.1", ...}``: a nested config as dotted keys."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"run.loggers: {module} is not installed; pip install \"sakd[{extra}]\"") from None


class Logger:
    """One tracker for one run: ``log`` gets each epoch record, ``close`` ends it."""

    def __init__(self, run_dir: Path, config: dict, done_epochs: int):
        self.run_dir = run_dir

    def log(self, record: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def kept_id(self, name: str, new) -> str:
        """The tracker run id kept in the run folder (so a resumed run continues it), or a new one."""
        path = self.run_dir / name
        if not path.is_file():
            write_bytes(path, str(new()).encode("utf-8"), "the tracker's run id")
        return path.read_text().strip()


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    """TensorBoard scalars in the run folder's tensorboard/"""

    def __init__(self, run_dir: Path, config: dict, done_epochs: int):
        super().__init__(run_dir, config, done_epochs)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / runs.TENSORBOARD), purge_step=done_epochs + 1)

    def log(self, record: dict) -> None:
        for key, value in numbers(record).items():
            self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@LOGGERS.register("wandb")
class WandbLogger(Logger):
    """Weights & Biases (offline unless WANDB_MODE says otherwise; pip install "sakd[wandb]")"""

    def __init__(self, run_dir: Path, config: dict, done_epochs: int):
        super().__init__(run_dir, config, done_epochs)
        wandb = _require("wandb", "wandb")
        run_id = self.kept_id("wandb-id", lambda: uuid.uuid4().hex[:12])
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "sakd"), name=run_dir.name, id=run_id,
                              resume="allow", dir=str(run_dir), config=config,
                              mode=os.environ.get("WANDB_MODE", "offline"))

    def log(self, record: dict) -> None:
        self.run.log(numbers(record), step=record["epoch"])

    def close(self) -> None:
        self.run.finish()


@LOGGERS.register("mlflow")
class MlflowLogger(Logger):
    """MLflow (MLFLOW_TRACKING_URI, else mlflow.db beside the run folders; pip install "sakd[mlflow]")"""

    def __init__(self, run_dir: Path, config: dict, done_epochs: int):
        super().__init__(run_dir, config, done_epochs)
        mlflow = _require("mlflow", "mlflow")
        self.client = mlflow.MlflowClient(
            os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir.parent / 'mlflow.db').resolve()}"
        )
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "sakd")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)

        def new_run():
            from mlflow.entities import Param

            run = self.client.create_run(experiment_id, run_name=run_dir.name)
            params = [Param(k, v[:6000]) for k, v in flat(config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
                self.client.log_batch(run.info.run_id, params=params[i:i + 100])
            return run.info.run_id

        self.run_id = self.kept_id("mlflow-id", new_run)

    def log(self, record: dict) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, record["epoch"]) for k, v in numbers(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
