"""A backtest's metrics as tables, per fold and pooled: every forecaster (metric columns of
`cryptolstm.metrics.score`: ``usd/mae_ratio``...), and for seeds (``lstm.seed202``...) ``lstm.mean``, ``lstm.std``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptolstm.backtest.runner import BacktestResult, pooled_period
from cryptolstm.forecasting import QUANTILE_COLUMNS
from cryptolstm.models.network import MEAN, SEEDED
from cryptolstm.scoring import UNCALIBRATED, Scores
from cryptolstm.snooping import ConfidenceSet, confidence_set, row_losses


def fold_table(scores: Scores, group: str, kind: str = "accuracy") -> pd.DataFrame:
    """One row per forecaster of one fold (or ``all``), ``<name>.mean`` and ``<name>.std`` (sample sd; 0 for one seed)
    after each seeded forecaster's seeds, then the others; ``kind``: ``accuracy``, ``intervals`` (those with quantiles,
    in returns) or ``horizons`` (rows ``{forecaster}/h{k}``; ``lstm.mean/h2`` of ``lstm.seed7/h2``...)."""
    table = scores.table(kind)
    table = (table.xs(group, level="group") if group in table.index.get_level_values("group")
             else table.iloc[:0].droplevel("group")).rename_axis("forecaster")
    groups = [(m["name"], m["rest"] or "") if (m := SEEDED.match(label)) else None for label in table.index]
    parts, others = [], np.array([g is None for g in groups])
    for name, rest in dict.fromkeys(g for g in groups if g is not None):
        seeds = table.loc[np.array([g == (name, rest) for g in groups])]
        spread = seeds.std(ddof=1) if len(seeds) > 1 else 0.0 * seeds.mean()
        parts += [seeds, pd.DataFrame({f"{name}.mean{rest}": seeds.mean(), f"{name}.std{rest}": spread}).T]
    return pd.concat([*parts, table.loc[others]])


def metrics_table(result: BacktestResult, kind: str = "accuracy") -> pd.DataFrame:
    """Long table, a row per (fold, forecaster), fold ``all`` pooled: fold, first, last, days, forecaster, metrics."""
    frames = []
    for group, period in [(f.period.name, f.period) for f in result.folds] + [("all", pooled_period(result))]:
        table = fold_table(result.scores, group, kind).reset_index(names="forecaster")
        facts = {"fold": group, "first": period.first.date().isoformat(), "last": period.last.date().isoformat(),
                 "days": result.scores.days[group]}
        frames.append(pd.DataFrame(facts, index=table.index).join(table))
    return pd.concat(frames, ignore_index=True)


def predictions_frame(result: BacktestResult) -> pd.DataFrame:
    """One row per test day: fold, date, actual close, last close, every forecast of horizon 1 (USD)."""
    table = result.forecasts.table
    first = table[table["horizon"] == 1]
    wide = first.assign(close=first["reference"] * (1.0 + first["forecast"])).pivot_table(
        index=["period", "origin"], columns="forecaster", values="close", sort=False)
    facts = first.drop_duplicates(["period", "origin"]).set_index(["period", "origin"])
    order = sorted(wide.index, key=lambda key: (int(key[0]), key[1]))
    frame = pd.DataFrame({"fold": [int(p) for p, _ in order],
                          "date": [pd.Timestamp(o + pd.Timedelta(days=1)).strftime("%Y-%m-%d") for _, o in order],
                          "actual": facts.loc[order, "actual"].to_numpy(), "last_close": facts.loc[order, "last_close"].to_numpy()})
    return frame.assign(**{name: wide.loc[order, name].to_numpy() for name in result.forecasts.forecasters})


def confidence_sets(result: BacktestResult) -> dict[str, ConfidenceSet]:
    """The model confidence set of the forecasters (seeds, their mean, baselines) on each loss of horizon 1: ``mae``
    in USD (all), ``crps`` in returns (those with quantiles); the seeds are joined by ``lstm.mean``, their forecasts
    and quantiles averaged day by day."""
    table = result.forecasts.table
    first = table[(table["horizon"] == 1) & ~table["forecaster"].str.endswith(UNCALIBRATED)]
    seeds = first[first["forecaster"].map(lambda name: SEEDED.match(name) is not None)]
    if seeds["forecaster"].nunique() > 1:
        mean = seeds.groupby(["period", "origin"], sort=False).mean(numeric_only=True).reset_index()
        first = pd.concat([first, mean.assign(forecaster=MEAN)], ignore_index=True)
    losses = {"mae": _by_day(first, "mae")}
    if set(QUANTILE_COLUMNS) <= set(first.columns) and first[QUANTILE_COLUMNS].notna().all(axis=1).any():
        losses["crps"] = _by_day(first.dropna(subset=QUANTILE_COLUMNS), "crps")
    return {loss: confidence_set(frame) for loss, frame in losses.items() if frame.shape[1] > 1}


def _by_day(rows: pd.DataFrame, loss: str) -> pd.DataFrame:
    """(days, forecasters) of ``rows``' per-day ``loss``."""
    return rows.assign(loss=row_losses(rows, loss)).pivot_table(index=["period", "origin"], columns="forecaster",
                                                                values="loss", sort=False)
