"""What a backtest records (each fold's child run; the parent's pooled metrics, tags, tables, figures and
Markdown summary), made in the core so that the tracking layer only writes it, as `cryptolstm.outputs` does.

Metric names: ``{forecaster}/{units}/{metric}`` (``lstm.mean/usd/mae_ratio``), ``{forecaster}/direction_accuracy``,
``lstm.mean/h7/usd/mae_ratio``, ``{forecaster}/crps``, ``lstm.mean/crps_ratio_garch``, ``mcs/mae/lstm.mean``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cryptolstm import plots
from cryptolstm.backtest.runner import BacktestResult, FoldResult, retrain_policy
from cryptolstm.backtest.tables import confidence_sets, fold_table, metrics_table, predictions_frame
from cryptolstm.config import RunConfig
from cryptolstm.forecast import RETURN
from cryptolstm.models.network import MEAN, SEEDED, is_network
from cryptolstm.models.baselines import PERSISTENCE, POINT
from cryptolstm.models.lstm import WARM_PATIENCE
from cryptolstm.options import SCRATCH, BacktestOptions
from cryptolstm.outputs import RunRecord
from cryptolstm.render import (NOTE, backtest_text, confidence_markdown, cost_text, horizon_summary_markdown,
                               interval_summary_markdown, policy_text, run_name, summary_markdown)
from cryptolstm.scoring import INTERVAL_BASELINES

SOURCE_OPTIONS = ("config", "coin", "data_dir", "experiment_name")  # where the config comes from: tags, not params


def backtest_params(options: BacktestOptions, fold_cfg: RunConfig) -> dict[str, str]:
    """The options as params ``backtest.*``, each the value used (a default says what it was: local processes)."""
    used = {k: v for k, v in vars(options).items() if k not in SOURCE_OPTIONS}
    used |= {"max_epochs": fold_cfg.epochs, "warm_epochs": retrain_policy(fold_cfg, options).warm_epochs,
             "warm_patience": options.warm_patience or min(fold_cfg.patience, WARM_PATIENCE),
             "cluster": options.cluster or f"local ({options.workers} process{'es' if options.workers > 1 else ''})"}
    return {f"backtest.{k}": str(v) for k, v in used.items() if v is not None}  # no seal: no sealed_from


def parent_name(cfg: RunConfig, options: BacktestOptions) -> str:
    """The parent run's name while it runs (`summary` puts the result first once it is known)."""
    return f"{cfg.coin}-backtest-{options.start}..{options.end}-{options.fold_months}m-x{options.seeds}"


def _metrics(rows: pd.DataFrame) -> dict[str, float]:
    """``{forecaster/metric: value}`` from a table indexed by forecaster (NaNs left out)."""
    return {f"{forecaster}/{metric}": float(value) for forecaster, row in rows.iterrows() for metric, value in row.items()
            if isinstance(value, (int, float, np.floating)) and math.isfinite(float(value))}


def _pooled(table: pd.DataFrame) -> pd.DataFrame:
    """The pooled rows (fold ``all``) of a long table, indexed by forecaster."""
    return table.loc[table["fold"] == "all"].set_index("forecaster").drop(columns=["fold", "first", "last"])


def _headline(result: FoldResult) -> dict[str, np.ndarray]:
    """The USD forecasts a plot shows: the seeds' mean network forecast and the point baselines."""
    closes = {name: result.forecasts.forecast(name, result.period.name)[0].close()
              for name in result.forecasts.forecasters}
    seeds = [c for c in closes if SEEDED.match(c)]
    return {"LSTM (seed mean)": np.mean([closes[c] for c in seeds], axis=0),
            **{k: v for k, v in closes.items() if k not in seeds and k not in INTERVAL_BASELINES}}


def _days(result: FoldResult) -> tuple[np.ndarray, np.ndarray]:
    """(the fold's first target days, their actual USD closes)."""
    forecast, actual = result.forecasts.forecast(result.forecasts.forecasters[0], result.period.name)
    return forecast.dates, actual[:, 0]


def _fitted(result: FoldResult) -> tuple[dict[str, str], dict[str, float]]:
    """(params, metrics) of what each forecaster fitted for the fold: a baseline's values as params, a seed's
    epochs and loss as metrics and its start as a param (``lstm.seed202.init``: ``scratch`` or ``fold 3``)."""
    params, metrics = {}, {}
    for fit in result.fits:
        values = {f"{fit.forecaster}.{k}": v for k, v in fit.params.items()}
        if is_network(fit.forecaster):
            metrics |= values
            params[f"{fit.forecaster}.init"] = SCRATCH if fit.init == SCRATCH else f"fold {fit.init}"
            params.setdefault("init.from_fold", fit.init)  # every seed's chain starts the same way
        else:
            params |= values
    made = result.forecasts.table
    for label, at in made.loc[made["horizon"] == 1].groupby("forecaster", sort=False)["fit"].first().items():
        if is_network(label) and at != result.period.name:  # forecast with an earlier fold's fit
            params[f"{label}.fitted_at"] = f"fold {at}"
    return params, metrics


def fold(result: FoldResult) -> RunRecord:
    """A fold's child run: its name and description, dates and sizes, fitted values, metrics and forecast plot."""
    period = result.period
    params, fitted = _fitted(result)
    starts = sorted({v for k, v in params.items() if k.endswith(".init")}) or [SCRATCH]
    metrics = {k: float(v) for k, v in fitted.items()}
    for kind in ("accuracy", "intervals", "horizons"):
        metrics |= _metrics(fold_table(result.scores, period.name, kind))
    ratio = metrics.get(f"{MEAN}/usd/mae_ratio", float("nan"))  # the seeds' mean
    params |= {"fold.first": period.first.date().isoformat(), "fold.last": period.last.date().isoformat(),
               "fold.n_train": result.n_train, "fold.n_val": result.n_val, "fold.n_test": result.days}
    note = (f"Fold {period.name} of the backtest: test days {period.label} ({result.days}); the LSTM's MAE ratio to "
            f"persistence {ratio:.3f} (seeds' mean), fitted on the {result.n_train} training and {result.n_val} "
            f"validation samples before it, starting from {', '.join(starts)}.")
    figure = plots.fold_forecasts(*_days(result), _headline(result), f"fold {period.name}: {period.label}")
    return RunRecord(metrics, {"cryptolstm.entry": "backtest-fold", "fold": period.name, NOTE: note,
                               "mlflow.runName": f"fold {int(period.name):02d} · {ratio:.3f} · {period.label}"},
                     {"plots/forecast.png": figure}, params={k: str(v) for k, v in params.items()})


def summary(result: BacktestResult) -> tuple[RunRecord, pd.DataFrame, str]:
    """The parent run's record once every fold is done, its `metrics_table` and its Markdown summary."""
    cfg, options = result.config, result.options
    table = metrics_table(result)
    pooled = _pooled(table)
    ratios = table.loc[table["fold"] != "all"].pivot(index="fold", columns="forecaster", values="usd/mae_ratio")
    ratios = ratios.loc[[f.period.name for f in result.folds]]
    beaten, ratio = f"{int((ratios[MEAN] < 1).sum())}/{len(ratios)}", float(pooled.loc[MEAN, "usd/mae_ratio"])
    seeds = pooled.loc[[bool(SEEDED.match(n)) for n in pooled.index]]
    policy = policy_text(options.retrain, options.retrain_every, retrain_policy(cfg, options).warm_epochs,
                         options.warm_patience or min(cfg.patience, WARM_PATIENCE), cfg.ensemble)
    epochs = result.epochs_trained()
    cost = cost_text(epochs, result.seconds, backtest_params(options, cfg)["backtest.cluster"])
    markdown = summary_markdown(table, cfg.coin, policy=policy) + "\n" + cost + "\n"
    predictions = predictions_frame(result)
    made = RunRecord(
        _metrics(pooled) | {f"{label}/epochs_run": n for label, n in epochs.items()} | {"backtest/seconds": result.seconds},
        {"backtest.folds_beating_persistence": beaten, "backtest.beats_persistence": str(ratio < 1).lower(),
         NOTE: backtest_text(ratio, beaten, float(seeds["usd/dm_p"].min()), float(seeds["usd/dm_mde"].median()), policy),
         "mlflow.runName": f"backtest {ratio:.3f} · {run_name(cfg)} · {len(ratios)} folds x{options.seeds} "
                           f"{options.retrain}"},
        _figures(result, ratios, predictions),
        texts={"backtest/metrics.csv": table.to_csv(index=False), "backtest/summary.md": markdown,
               "backtest/predictions.csv": predictions.to_csv(index=False)})
    if cfg.head_spec.distribution:
        markdown += "\n" + _table(made, result, "intervals", interval_summary_markdown, _coverage_figures)
    if cfg.horizon > 1:
        markdown += "\n" + _table(made, result, "horizons", horizon_summary_markdown, _horizon_figure)
    return made, table, markdown + "\n" + _confidence_sets(made, result)


def _table(made: RunRecord, result: BacktestResult, kind: str, markdown, figures) -> str:
    """The ``kind`` `metrics_table` into ``made`` (pooled rows as metrics, ``backtest/{kind}.csv`` and ``.md``
    from ``markdown``, the figures ``figures`` draws of it); returns the Markdown."""
    table = metrics_table(result, kind)
    made.metrics |= _metrics(_pooled(table))
    text = markdown(table, result.config.coin)
    made.texts |= {f"backtest/{kind}.csv": table.to_csv(index=False), f"backtest/{kind}.md": text}
    made.figures |= figures(result, table)
    return text


def _confidence_sets(made: RunRecord, result: BacktestResult) -> str:
    """The MCS into ``made`` (p values as metrics; set, block, level as tags; confidence_set.md); returns the text."""
    sets = confidence_sets(result)
    markdown = confidence_markdown(sets, result.config.coin)
    for loss, found in sets.items():
        made.metrics |= {f"mcs/{loss}/{name}": p for name, p in found.pvalues.items()}
        made.tags |= {f"mcs.{loss}.included": ",".join(found.included), f"mcs.{loss}.block_days": str(found.block),
                      f"mcs.{loss}.level": f"{1 - found.size:g}"}
    if markdown:
        made.texts["backtest/confidence_set.md"] = markdown
    return markdown


def _horizon_figure(result: BacktestResult, table: pd.DataFrame) -> dict:
    """The pooled MAE ratio against the horizon, each seed and each point baseline."""
    ratio = _pooled(table)["usd/mae_ratio"]
    horizons = np.arange(1, result.config.horizon + 1)
    curves = ratio.set_axis(ratio.index.str.split("/h", expand=True)).unstack().reindex(columns=horizons.astype(str))
    seeds = sorted(name for name in curves.index if SEEDED.match(name))
    baselines = [b.name for b in POINT if f"{b.name}/h1" in ratio.index]
    return {"plots/mae_ratio_by_horizon.png": plots.ratio_by_horizon(
        horizons, curves.loc[seeds].to_numpy(), {b: curves.loc[b].to_numpy() for b in baselines},
        f"{result.config.coin} walk-forward, all folds")}


def _coverage_figures(result: BacktestResult, table: pd.DataFrame) -> dict:
    """The coverage of the 80 % and 95 % intervals per fold, the network's and each interval baseline's."""
    per_fold, labels, out = table.loc[table["fold"] != "all"], [f.period.label for f in result.folds], {}
    for nominal in (80, 95):
        cover = per_fold.pivot(index="fold", columns="forecaster", values=f"coverage_{nominal}")
        cover = cover.loc[[f.period.name for f in result.folds]]
        lines = {name: cover[name].to_numpy() for name in (MEAN, *INTERVAL_BASELINES) if name in cover}
        out[f"plots/coverage_{nominal}_per_fold.png"] = plots.coverage_per_fold(labels, lines, nominal)
    return out


def _figures(result: BacktestResult, ratios: pd.DataFrame, predictions: pd.DataFrame) -> dict:
    """MAE ratio per fold with the seed spread, forecasts per fold, error distribution."""
    seed_cols = [c for c in ratios.columns if SEEDED.match(c)]
    labels = [f.period.label for f in result.folds]
    baselines = [b.name for b in POINT if b.name in ratios.columns]
    usd = predictions.drop(columns=["fold", "date"])
    gaps = usd.sub(usd["actual"], axis=0).div(usd["last_close"], axis=0)  # each forecast's error in returns
    errors = {"LSTM (all seeds)": gaps[seed_cols].to_numpy().T.ravel(),  # seed after seed
              **{name: gaps[name].to_numpy() for name in [PERSISTENCE, *(b.name for b in POINT)] if name in gaps}}
    return {"plots/mae_ratio_per_fold.png": plots.ratio_per_fold(labels, ratios[seed_cols].to_numpy(),
                                                                 {b: ratios[b].to_numpy() for b in baselines}),
            "plots/forecasts_per_fold.png": plots.backtest_forecasts(
                [(f.period.label, *_days(f), _headline(f)) for f in result.folds], result.config.coin),
            "plots/error_distribution.png": plots.error_distribution(errors, RETURN)}
