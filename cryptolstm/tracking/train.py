"""A training run in MLflow: `cryptolstm.train.train` with the tracking attached, its record
(`cryptolstm.outputs`) written and the model logged as the registry's pyfunc."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import mlflow

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.models.lstm import EpochHook, Lstm, training_device
from cryptolstm.outputs import record
from cryptolstm.tracking.runs import config_params, log_dataset, log_epoch, log_model, run_scope, write_record
from cryptolstm.train import TrainResult, train


def tracked_train(cfg: RunConfig, market: Market, experiment_file: str | None = None,
                  experiment_name: str | None = None, on_epoch: Sequence[EpochHook] = (), launched: str | None = None,
                  name: str | None = None, tags: dict[str, str] | None = None, init=None) -> tuple[str, TrainResult]:
    """Train ``cfg`` on ``market`` inside one MLflow run; returns (run id, result). ``launched``: the run
    ``mlflow run`` made; ``name``, ``tags``: a refit's; ``init``: a Keras network to warm-start from."""
    with run_scope(cfg, experiment_name, name, launched=launched) as run:
        mlflow.set_tags({"coin": cfg.coin, "protocol": cfg.protocol, "cryptolstm.entry": "train", **(tags or {})})
        mlflow.log_params(config_params(cfg, market.last_date))
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        if experiment_file:
            mlflow.log_artifact(experiment_file, "experiment")
            mlflow.set_tag("experiment_file", str(experiment_file))
        log_dataset(market, cfg)
        hooks = [log_epoch, *on_epoch]
        network = Lstm(cfg, hooks, model=init, warm=True) if init is not None else None
        result = train(cfg, market, () if network else hooks, forecaster=network)
        log_result(result, market, name)
        return run.info.run_id, result


def log_result(result: TrainResult, market: Market, name: str | None = None) -> None:
    """A trained model's record and the model itself on the active run (``name``: the run's so far)."""
    with tempfile.TemporaryDirectory() as folder:
        made = record(result, market, folder, name)
        mlflow.set_tag("device", training_device())  # where it trained: backend and GPU, or CPU
        write_record(made)
        log_model(made.package, result)


