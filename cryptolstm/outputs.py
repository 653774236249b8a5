"""What a training run records (metrics, split tags, description, figures, packaged model), made in the
core so that the tracking layer only writes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cryptolstm import plots
from cryptolstm.data import Market
from cryptolstm.features import closes
from cryptolstm.metrics import central_coverage
from cryptolstm.packaging import Package, package
from cryptolstm.render import NOTE, result_name, result_text
from cryptolstm.scoring import INTERVAL_BASELINES
from cryptolstm.train import MODEL, TrainResult


@dataclass
class RunRecord:
    """A run as it is recorded (trained or backtest); ``figures`` and ``texts``: artifact path -> figure or text."""

    metrics: dict[str, float]
    tags: dict[str, str]
    figures: dict[str, Figure] = field(default_factory=dict)
    package: Package | None = None
    params: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


def split_tags(result: TrainResult) -> dict[str, str]:
    """Each scored split's first and last target day (of any horizon) and sample count."""
    table = result.forecasts.table
    tags = {}
    for split in result.forecasts.period_names:
        rows = table[(table["forecaster"] == MODEL) & (table["period"] == split)]
        tags |= {f"split.{split}.first": str(rows["date"].min())[:10],
                 f"split.{split}.last": str(rows["date"].max())[:10], f"split.{split}.n": str(rows["origin"].nunique())}
    return tags


def _interval_figures(result: TrainResult) -> dict[str, Figure]:
    """A distribution head's fan chart of the last split and per split its intervals' reliability beside baselines'."""
    cfg, made = result.config, result.forecasts
    splits = [s for s in made.period_names if any(result.scores.has(s, b) for b in INTERVAL_BASELINES)]
    figures = {}
    for split in splits:
        forecast, actual = result.forecast(split)
        if split == splits[-1]:
            figures[f"plots/fan_{split}.png"] = plots.fan_chart(forecast, actual[:, 0], cfg.coin, split)
        observed = {"LSTM (calibrated)": central_coverage(forecast, actual[:, 0])}
        observed |= {b: central_coverage(result.forecast(split, b)[0], actual[:, 0]) for b in INTERVAL_BASELINES
                     if result.scores.has(split, b)}
        title = f"{cfg.coin} interval reliability, {split} days ({len(actual)})"
        figures[f"plots/reliability_{split}.png"] = plots.reliability(observed, title)
    return figures


def _horizon_figures(result: TrainResult, market: Market) -> dict[str, Figure]:
    """Several days ahead: the MAE ratio to persistence by horizon per split, paths from the last one."""
    cfg = result.config
    if cfg.horizon < 2:
        return {}
    horizons = np.arange(1, cfg.horizon + 1)
    ratios = {split: np.array([result.metrics[f"{split}/h{h}/mae_ratio"] for h in horizons])
              for split in result.forecasts.period_names if split != "train"}
    last = list(ratios)[-1]
    others = {f"LSTM, {s} days": r for s, r in ratios.items() if s != last}
    return {"plots/mae_ratio_by_horizon.png": plots.ratio_by_horizon(
                horizons, ratios[last], others, f"{cfg.coin}, one run", label=f"LSTM, {last} days"),
            f"plots/paths_{last}.png": plots.forecast_paths(result.forecast(last)[0], closes(market.frame, cfg.coin),
                                                           cfg.coin, last)}


def figures(result: TrainResult, market: Market) -> dict[str, Figure]:
    """Price/volume, learning curves, forecast vs actual per evaluated split, and any interval and horizon figures."""
    cfg = result.config
    out = {f"plots/{cfg.coin.lower()}_price_volume.png": plots.price_volume(market.frame, cfg.coin),
           "plots/learning_curves.png": plots.learning_curves(result.history, result.best_epoch)}
    for split in ("val", "test"):
        if split in result.forecasts.period_names:
            forecast, actual = result.forecast(split)
            out[f"plots/forecast_{split}.png"] = plots.forecast_vs_actual(forecast, actual[:, 0], cfg.coin, split)
    return out | _interval_figures(result) | _horizon_figures(result, market)


def record(result: TrainResult, market: Market, folder: str | Path, name: str | None = None) -> RunRecord:
    """Everything a trained run records, its model packaged into ``folder``; ``name``: its name so far."""
    metrics = {**result.metrics, "best_epoch": result.best_epoch + 1, "epochs_run": result.epochs_run}
    tags = split_tags(result) | {NOTE: result_text(result.metrics),
                                 "mlflow.runName": result_name(result.config, result.metrics, name)}
    return RunRecord(metrics, tags, figures(result, market), package(result, market, folder))
