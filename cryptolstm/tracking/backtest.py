"""A backtest in MLflow: one parent run, one child run per fold.

Parent: the config (``config.*``) and options (``backtest.*``) as params, the
data, the pooled metrics over all test days, ``backtest/metrics.csv`` (every
fold x forecaster), ``backtest/summary.md``, ``backtest/predictions.csv`` (every
forecast of every day) and the plots. Child ``fold NN``: its dates and sizes,
what each forecaster fitted, its metrics and its forecast plot.

Metric names: ``{forecaster}/{units}/{metric}``, e.g. ``lstm.mean/usd/mae_ratio``,
``lstm.seed202/return/dm_p``, ``arima/usd/mase``; unit-free ``{forecaster}/direction_accuracy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import mlflow
import numpy as np
import pandas as pd

from cryptolstm import plots
from cryptolstm.backtest.runner import BacktestResult, FoldResult, backtest_config, plan, run_backtest
from cryptolstm.backtest.tables import confidence_sets, fold_closes, fold_table, metrics_table, predictions_frame
from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.models.lstm import WARM_PATIENCE, training_device
from cryptolstm.render import (NOTE, backtest_text, confidence_markdown, cost_text, horizon_summary_markdown,
                               interval_summary_markdown, policy_text, run_name, summary_markdown)
from cryptolstm.scoring import INTERVAL_BASELINES
from cryptolstm.options import BacktestOptions
from cryptolstm.tracking.runs import config_params, log_dataset, run_scope

ENTRY = "backtest"
SOURCE_OPTIONS = ("config", "coin", "data_dir", "experiment_name")  # where the config comes from: tags, not params


def _metrics(rows: pd.DataFrame) -> dict[str, float]:
    """``{forecaster/metric: value}`` from a table indexed by forecaster (NaNs left out)."""
    out = {}
    for forecaster, row in rows.iterrows():
        for metric, value in row.items():
            if isinstance(value, (int, float, np.floating)) and math.isfinite(float(value)):
                out[f"{forecaster}/{metric}"] = float(value)
    return out


def _headline(result: FoldResult) -> dict[str, np.ndarray]:
    """The USD forecasts a plot shows: the seeds' mean LSTM forecast and the baselines."""
    closes = fold_closes(result)
    seeds = [c for c in closes if c.startswith("lstm.seed")]
    return {"LSTM (seed mean)": np.mean([closes[c] for c in seeds], axis=0),
            **{k: v for k, v in closes.items() if k not in seeds and k not in INTERVAL_BASELINES}}


def _fitted(result: FoldResult) -> tuple[dict[str, str], dict[str, float]]:
    """(params, metrics) of what each forecaster fitted for the fold: a baseline's values are one
    per fold (params), each LSTM seed's epochs and loss are metrics and its starting weights a param
    (``lstm.seed202.init``: ``scratch``, or ``fold 3`` for a warm start from fold 3's fit; and for the
    fold, ``init.from_fold``: ``scratch`` or that fold's number)."""
    params, metrics = {}, {}
    for fit in result.fits:
        values = {f"{fit.forecaster}.{k}": v for k, v in fit.params.items()}
        if fit.forecaster.startswith("lstm."):
            metrics |= values
            params[f"{fit.forecaster}.init"] = "scratch" if fit.init == "scratch" else f"fold {fit.init}"
            params.setdefault("init.from_fold", fit.init)  # every seed's chain starts the same way
        else:
            params |= values
    made = result.forecasts.table
    for label, at in made.loc[made["horizon"] == 1].groupby("forecaster", sort=False)["fit"].first().items():
        if label.startswith("lstm.") and at != result.period.name:  # forecast with an earlier fold's fit
            params[f"{label}.fitted_at"] = f"fold {at}"
    return params, metrics


def log_fold(parent_id: str, result: FoldResult) -> None:
    """The fold's child run: dates, sizes, fitted values, metrics, forecast plot."""
    fold = result.period
    accuracy = fold_table(result.scores, fold.name, "accuracy")
    ratio = float(accuracy.loc["lstm.mean", "usd/mae_ratio"]) if "lstm.mean" in accuracy.index else float("nan")
    params, fitted = _fitted(result)
    starts = sorted({v for k, v in params.items() if k.endswith(".init")}) or ["scratch"]
    with mlflow.start_run(run_name=f"fold {int(fold.name):02d} · {ratio:.3f} · {fold.label}", nested=True,
                          parent_run_id=parent_id):
        mlflow.set_tags({"cryptolstm.entry": "backtest-fold", "fold": fold.name,
                         NOTE: f"Fold {fold.name} of the backtest: test days {fold.label} ({result.days}); the LSTM's "
                               f"MAE ratio to persistence {ratio:.3f} (seeds' mean), fitted on the {result.n_train} "
                               f"training and {result.n_val} validation samples before it, starting from "
                               f"{', '.join(starts)}."})
        mlflow.log_params({"fold.first": fold.first.date().isoformat(), "fold.last": fold.last.date().isoformat(),
                           "fold.n_train": result.n_train, "fold.n_val": result.n_val, "fold.n_test": result.days})
        mlflow.log_params(params)
        mlflow.log_metrics({k: float(v) for k, v in fitted.items()})
        for kind in ("accuracy", "intervals", "horizons"):
            mlflow.log_metrics(_metrics(fold_table(result.scores, fold.name, kind)))
        mlflow.log_figure(plots.fold_forecasts(*_days(result), _headline(result), f"fold {fold.name}: {fold.label}"),
                          "plots/forecast.png")


def log_summary(result: BacktestResult, table: pd.DataFrame) -> str:
    """Pooled metrics, tables and plots on the (active) parent run; returns the Markdown summary."""
    cfg = result.config
    pooled_rows = table.loc[table["fold"] == "all"].set_index("forecaster").drop(columns=["fold", "first", "last"])
    mlflow.log_metrics(_metrics(pooled_rows))
    per_fold = table.loc[table["fold"] != "all"]
    ratios = per_fold.pivot(index="fold", columns="forecaster", values="usd/mae_ratio")
    ratios = ratios.loc[[f.period.name for f in result.folds]]
    beaten = int((ratios["lstm.mean"] < 1).sum())
    mlflow.set_tags({"backtest.folds_beating_persistence": f"{beaten}/{len(ratios)}",
                     "backtest.beats_persistence": str(bool(pooled_rows.loc["lstm.mean", "usd/mae_ratio"] < 1)).lower()})
    options = result.options
    policy = policy_text(options.retrain, options.retrain_every, options.warm_epochs or cfg.epochs,
                         options.warm_patience or min(cfg.patience, WARM_PATIENCE), cfg.ensemble)
    markdown = summary_markdown(table, cfg.coin, policy=policy) + "\n" + _log_cost(result) + "\n"
    pooled = float(pooled_rows.loc["lstm.mean", "usd/mae_ratio"])
    seeds = pooled_rows.loc[pooled_rows.index.str.startswith("lstm.seed")]
    dm_p, mde = float(seeds["usd/dm_p"].min()), float(seeds["usd/dm_mde"].median())
    mlflow.set_tags({NOTE: backtest_text(pooled, f"{beaten}/{len(ratios)}", dm_p, mde, policy),
                     "mlflow.runName": f"backtest {pooled:.3f} · {run_name(cfg)} · {len(ratios)} folds x{options.seeds} "
                                       f"{options.retrain}"})
    mlflow.log_text(table.to_csv(index=False), "backtest/metrics.csv")
    mlflow.log_text(markdown, "backtest/summary.md")
    predictions = predictions_frame(result)
    mlflow.log_text(predictions.to_csv(index=False), "backtest/predictions.csv")
    _log_figures(result, ratios, predictions)
    if cfg.head_spec.distribution:
        markdown += "\n" + log_interval_summary(result)
    if cfg.horizon > 1:
        markdown += "\n" + log_horizon_summary(result)
    return markdown + "\n" + log_confidence_sets(result)


def log_confidence_sets(result: BacktestResult) -> str:
    """The model confidence sets (`cryptolstm.backtest.tables.confidence_sets`) on the active parent
    run: each forecaster's MCS p value (``mcs/mae/lstm.mean``...), the set and the block length as
    tags (``mcs.mae.included``, ``mcs.mae.block_days``), ``backtest/confidence_set.md``; returns it."""
    sets = confidence_sets(result)
    markdown = confidence_markdown(sets, result.config.coin)
    for loss, found in sets.items():
        mlflow.log_metrics({f"mcs/{loss}/{name}": p for name, p in found.pvalues.items()})
        mlflow.set_tags({f"mcs.{loss}.included": ",".join(found.included), f"mcs.{loss}.block_days": str(found.block),
                         f"mcs.{loss}.level": f"{1 - found.size:g}"})
    if markdown:
        mlflow.log_text(markdown, "backtest/confidence_set.md")
    return markdown


def _log_table(result: BacktestResult, kind: str, summary, name: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """A second table of the backtest (the metrics of ``kind`` of each fold, pooled) on the active
    parent run: its pooled rows as metrics, ``backtest/{name}.csv`` and ``summary``'s
    ``backtest/{name}.md``. Returns (the table, its pooled rows indexed by forecaster, the Markdown)."""
    table = metrics_table(result, kind)
    pooled_rows = table.loc[table["fold"] == "all"].set_index("forecaster").drop(columns=["fold", "first", "last"])
    mlflow.log_metrics(_metrics(pooled_rows))
    markdown = summary(table, result.config.coin)
    mlflow.log_text(table.to_csv(index=False), f"backtest/{name}.csv")
    mlflow.log_text(markdown, f"backtest/{name}.md")
    return table, pooled_rows, markdown


def log_horizon_summary(result: BacktestResult) -> str:
    """Per horizon, on the active parent run: the pooled metrics (``lstm.mean/h7/usd/mae_ratio``...),
    ``backtest/horizons.csv``, ``backtest/horizons.md`` and the ratio against the horizon with the
    seeds' spread; returns the Markdown table."""
    table, pooled_rows, markdown = _log_table(result, "horizons", horizon_summary_markdown, "horizons")
    ratio = pooled_rows["usd/mae_ratio"]
    horizons = np.arange(1, result.config.horizon + 1)

    def line(name: str) -> np.ndarray:
        return np.array([ratio.get(f"{name}/h{h}", np.nan) for h in horizons])

    seeds = sorted({label.split("/")[0] for label in ratio.index if label.startswith("lstm.seed")})
    baselines = [b for b in ("drift", "moving_average", "arima") if f"{b}/h1" in ratio.index]
    mlflow.log_figure(plots.ratio_by_horizon(horizons, np.array([line(s) for s in seeds]),
                                             {b: line(b) for b in baselines}, f"{result.config.coin} walk-forward, all folds"),
                      "plots/mae_ratio_by_horizon.png")
    return markdown


def log_interval_summary(result: BacktestResult) -> str:
    """The intervals' pooled metrics (``{forecaster}/crps``, ``lstm.mean/crps_ratio_garch``...),
    ``backtest/intervals.csv``, ``backtest/intervals.md`` and the coverage per fold, on the active
    parent run; returns the Markdown table."""
    table, _, markdown = _log_table(result, "intervals", interval_summary_markdown, "intervals")
    per_fold = table.loc[table["fold"] != "all"]
    labels = [f.period.label for f in result.folds]
    for nominal in (80, 95):
        cover = per_fold.pivot(index="fold", columns="forecaster", values=f"coverage_{nominal}")
        cover = cover.loc[[f.period.name for f in result.folds]]
        lines = {name: cover[name].to_numpy() for name in ("lstm.mean", *INTERVAL_BASELINES)
                 if name in cover}
        mlflow.log_figure(plots.coverage_per_fold(labels, lines, nominal), f"plots/coverage_{nominal}_per_fold.png")
    return markdown


def _days(result: FoldResult) -> tuple[np.ndarray, np.ndarray]:
    """(the fold's first target days, their actual USD closes)."""
    forecast, actual = result.forecasts.forecast(result.forecasts.forecasters[0], result.period.name)
    return forecast.dates, actual[:, 0]


def _log_figures(result: BacktestResult, ratios: pd.DataFrame, predictions: pd.DataFrame) -> None:
    """MAE ratio per fold with the seed spread, forecasts per fold, error distribution."""
    cfg = result.config
    seed_cols = [c for c in ratios.columns if c.startswith("lstm.seed")]
    labels = [f.period.label for f in result.folds]
    baselines = [b for b in ("drift", "moving_average", "arima") if b in ratios.columns]
    mlflow.log_figure(plots.ratio_per_fold(labels, ratios[seed_cols].to_numpy(), {b: ratios[b].to_numpy() for b in baselines}),
                      "plots/mae_ratio_per_fold.png")
    mlflow.log_figure(plots.backtest_forecasts([(f.period.label, *_days(f), _headline(f)) for f in result.folds],
                                               cfg.coin), "plots/forecasts_per_fold.png")
    errors = {name: predictions[name].to_numpy() / predictions["last_close"].to_numpy()
              - predictions["actual"].to_numpy() / predictions["last_close"].to_numpy()
              for name in ["persistence", "drift", "moving_average", *(["arima"] if "arima" in predictions else [])]}
    errors = {"LSTM (all seeds)": np.concatenate([
        (predictions[c] - predictions["actual"]).to_numpy() / predictions["last_close"].to_numpy() for c in seed_cols]),
        **errors}
    mlflow.log_figure(plots.error_distribution(errors, "return"), "plots/error_distribution.png")


def _log_cost(result: BacktestResult) -> str:
    """The epochs each LSTM seed trained (``lstm.seed202/epochs_run``, all folds) and the wall time of
    the fits and forecasts (``backtest/seconds``) as metrics; returns them in words (`cost_text`)."""
    epochs = result.epochs_trained()
    mlflow.log_metrics({f"{label}/epochs_run": n for label, n in epochs.items()} | {"backtest/seconds": result.seconds})
    return cost_text(epochs, result.seconds, backtest_params(result.options, result.config)["backtest.cluster"])


def backtest_params(options: BacktestOptions, fold_cfg: RunConfig) -> dict[str, str]:
    """The options as params ``backtest.*``, each the value used (an option left to its default says
    what the default was: the config's epochs, local processes)."""
    used = {k: v for k, v in vars(options).items() if k not in SOURCE_OPTIONS}
    used |= {"max_epochs": fold_cfg.epochs, "warm_epochs": options.warm_epochs or fold_cfg.epochs,
             "warm_patience": options.warm_patience or min(fold_cfg.patience, WARM_PATIENCE),
             "cluster": options.cluster or f"local ({options.workers} process{'es' if options.workers > 1 else ''})"}
    return {f"backtest.{k}": str(v) for k, v in used.items()}


def tracked_backtest(
    cfg: RunConfig,
    market: Market,
    options: BacktestOptions,
    source_tags: dict[str, str],
    on_fold: Callable[[FoldResult], None] | None = None,
    launched: str | None = None,
    planned: list | None = None,
    on_epoch: Sequence = (),
) -> tuple[str, BacktestResult, pd.DataFrame, str]:
    """Run the backtest inside one parent run; returns (run id, result, metrics table, Markdown).

    ``on_fold(result)`` after each fold is logged and ``on_epoch`` in the LSTM's fits (progress
    bars); ``launched``: the run ``mlflow run`` made; ``planned``: the folds, if the caller planned
    (and so checked) them already."""
    fold_cfg = backtest_config(cfg, options)
    if planned is None:
        planned = plan(fold_cfg, market, options)  # every fold checked before the run exists
    name = f"{cfg.coin}-backtest-{options.start}..{options.end}-{options.fold_months}m-x{options.seeds}"
    with run_scope(fold_cfg, options.experiment_name, name=name, launched=launched) as run:
        parent_id = run.info.run_id
        mlflow.set_tags({"coin": cfg.coin, "cryptolstm.entry": ENTRY, "protocol": "walk-forward",
                         "device": training_device(),
                         "backtest.source_protocol": cfg.protocol, **source_tags})
        mlflow.log_params(config_params(fold_cfg, market.last_date))
        mlflow.log_params(backtest_params(options, fold_cfg) | {"backtest.folds": len(planned)})
        mlflow.log_dict(fold_cfg.to_dict(), "config.yaml")
        log_dataset(market, fold_cfg)
        def fold_done(fold: FoldResult) -> None:
            log_fold(parent_id, fold)
            if on_fold is not None:
                on_fold(fold)

        result = run_backtest(cfg, market, options, fold_done, None, planned, on_epoch=on_epoch)
        table = metrics_table(result)
        markdown = log_summary(result, table)
    return parent_id, result, table, markdown
