"""A training run in MLflow: `cryptolstm.train.train` with the tracking attached."""

from __future__ import annotations

from collections.abc import Sequence

import mlflow
import numpy as np

from cryptolstm import plots
from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.models.lstm import EpochHook, training_device
from cryptolstm.tracking.runs import (config_params, log_dataset, log_epoch, log_figures, log_model,
                                      log_split_ranges, run_scope)
from cryptolstm.metrics import central_coverage
from cryptolstm.tracking.describe import NOTE, result_text
from cryptolstm.train import TrainResult, train


def tracked_train(
    cfg: RunConfig,
    market: Market,
    experiment_file: str | None = None,
    experiment_name: str | None = None,
    on_epoch: Sequence[EpochHook] = (),
    launched: str | None = None,
    name: str | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[str, TrainResult]:
    """Train ``cfg`` on ``market`` inside one MLflow run; returns (run id, result).

    ``on_epoch``: further hooks (a progress bar); ``launched``: the run ``mlflow run`` made;
    ``name`` and ``tags``: the run's name (default `runs.run_name`) and more tags (a refit's).
    """
    with run_scope(cfg, experiment_name, name, launched=launched) as run:
        mlflow.set_tags({"coin": cfg.coin, "protocol": cfg.protocol, "cryptolstm.entry": "train", **(tags or {})})
        mlflow.log_params(config_params(cfg))
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        if experiment_file:
            mlflow.log_artifact(experiment_file, "experiment")
            mlflow.set_tag("experiment_file", str(experiment_file))
        log_dataset(market, cfg)
        result = train(cfg, market, [log_epoch, *on_epoch])
        log_result(result, market)
        return run.info.run_id, result


def log_result(result: TrainResult, market: Market) -> None:
    """A trained model's metrics, split ranges, figures and the model itself, on the active run."""
    log_split_ranges(result)
    mlflow.set_tag("device", training_device())  # where it trained: backend and GPU, or CPU
    mlflow.log_metrics(result.metrics)
    mlflow.log_metrics({"best_epoch": result.best_epoch + 1, "epochs_run": result.epochs_run})
    mlflow.set_tag(NOTE, result_text(result.metrics))  # the run's description in the UI
    log_figures(market, result)
    log_interval_figures(result)
    log_horizon_figures(result, market)
    log_model(result, market)


def log_horizon_figures(result: TrainResult, market: Market) -> None:
    """For a forecast of several days: the MAE ratio to persistence by horizon on each evaluated
    split, and forecast paths from a few origins of the last one."""
    cfg = result.config
    if cfg.horizon < 2:
        return
    horizons = np.arange(1, cfg.horizon + 1)
    ratios = {split: np.array([result.metrics[f"{split}/h{h}/mae_ratio"] for h in horizons]) for split in result.forecasts
              if f"{split}/h1/mae_ratio" in result.metrics and split != "train"}
    last = list(ratios)[-1]
    others = {f"LSTM, {s} days": r for s, r in ratios.items() if s != last}
    mlflow.log_figure(plots.ratio_by_horizon(horizons, ratios[last], others, f"{cfg.coin}, one run",
                                             label=f"LSTM, {last} days"), "plots/mae_ratio_by_horizon.png")
    mlflow.log_figure(plots.forecast_paths(result.forecasts[last], market.frame[f"{cfg.coin}_close"], cfg.coin, last),
                      f"plots/paths_{last}.png")


def log_interval_figures(result: TrainResult) -> None:
    """Under a distribution head: a fan chart of the last split's days and the reliability of the
    LSTM's intervals beside the interval baselines on the same days."""
    cfg = result.config
    for split, baselines in result.baselines.items():
        forecast, actual = result.forecasts[split], getattr(result.splits, split).actual(1)
        if split == list(result.baselines)[-1]:
            mlflow.log_figure(plots.fan_chart(forecast, actual, cfg.coin, split), f"plots/fan_{split}.png")
        observed = {"LSTM (calibrated)": central_coverage(forecast, actual)}
        observed |= {name: central_coverage(f, actual) for name, f in baselines.items()}
        title = f"{cfg.coin} interval reliability, {split} days ({len(actual)})"
        mlflow.log_figure(plots.reliability(observed, title), f"plots/reliability_{split}.png")
