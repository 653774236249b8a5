"""A backtest's metrics as tables: per fold and pooled, every forecaster, the seeds' spread.

Metric columns are those of `cryptolstm.metrics.score` (``usd/mae_ratio``,
``return/dm_p``, ``direction_accuracy``...). A forecaster fitted with several seeds
(``lstm.seed202``, ``lstm.seed203``...) also gets rows ``lstm.mean`` and ``lstm.std``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from cryptolstm.backtest.folds import Fold
from cryptolstm.backtest.runner import BacktestResult, FoldResult
from cryptolstm.forecast import Forecast
from cryptolstm.metrics import score_forecast

SEEDED = re.compile(r"^(?P<name>.+)\.seed\d+$")


def fold_metrics(result: FoldResult) -> pd.DataFrame:
    """One row per forecaster (``lstm.seed202``, ..., ``persistence``...) of one fold, metric columns."""
    rows = {name: score_forecast(forecast, result.actual, result.scales) for name, forecast in result.forecasts.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("forecaster")


def with_seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (indexed by forecaster) with rows ``<name>.mean`` and ``<name>.std`` (sample sd; 0
    for one seed) after the per-seed rows of each seeded forecaster, then the others."""
    seeded = np.array([m["name"] if (m := SEEDED.match(label)) else "" for label in table.index])
    parts = []
    for name in dict.fromkeys(n for n in seeded if n):
        seeds = table.loc[seeded == name]
        spread = seeds.std(ddof=1) if len(seeds) > 1 else 0.0 * seeds.mean()
        parts += [seeds, pd.DataFrame({f"{name}.mean": seeds.mean(), f"{name}.std": spread}).T]
    return pd.concat([*parts, table.loc[seeded == ""]])


def _concat(forecasts: list[Forecast]) -> Forecast:
    """One forecast of every origin of ``forecasts`` (folds in order), quantiles included."""
    joined = {k: np.concatenate([getattr(f, k) for f in forecasts]) for k in ("dates", "reference", "last_close",
                                                                                 "returns")}
    has_quantiles = all(f.quantiles is not None for f in forecasts)
    quantiles = np.concatenate([f.quantiles for f in forecasts]) if has_quantiles else None
    return Forecast(**joined, quantiles=quantiles, levels=forecasts[0].levels if has_quantiles else ())


def pooled(result: BacktestResult) -> FoldResult:
    """All folds' test days as one (its scales: the mean of the folds' in-sample scales)."""
    folds = result.folds
    scales = {units: float(np.mean([f.scales[units] for f in folds])) for units in folds[0].scales}
    merged = FoldResult(Fold(-1, folds[0].fold.first, folds[-1].fold.last), 0, 0,
                        np.concatenate([f.dates for f in folds]), np.concatenate([f.actual for f in folds]), scales)
    merged.forecasts = {k: _concat([f.forecasts[k] for f in folds]) for k in folds[0].forecasts}
    return merged


def metrics_table(result: BacktestResult) -> pd.DataFrame:
    """Long table: one row per (fold, forecaster), fold ``all`` for the pooled test days.

    Columns: fold, first, last, days, forecaster, then the metrics.
    """
    frames = []
    for fold_result in [*result.folds, pooled(result)]:
        table = with_seed_summary(fold_metrics(fold_result)).reset_index(names="forecaster")
        fold = fold_result.fold
        table.insert(0, "days", len(fold_result.dates))
        table.insert(0, "last", fold.last.date().isoformat())
        table.insert(0, "first", fold.first.date().isoformat())
        table.insert(0, "fold", "all" if fold.index < 0 else str(fold.index))
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def predictions_frame(result: BacktestResult) -> pd.DataFrame:
    """One row per test day: fold, date, actual close, last close, every forecast (USD)."""
    frames = []
    for fold in result.folds:
        frame = pd.DataFrame({"fold": fold.fold.index, "date": pd.to_datetime(fold.dates).strftime("%Y-%m-%d"),
                              "actual": fold.actual, "last_close": fold.last})
        frames.append(frame.assign(**fold.closes()))
    return pd.concat(frames, ignore_index=True)


def _fmt(value: float, digits: int = 3, style: str = "f") -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}{style}}"


def _summary_row(fold: str, rows: pd.DataFrame, baselines: list[str], units: str) -> list[str]:
    ratio = f"{units}/mae_ratio"
    seeds = rows.loc[rows.index.str.startswith("lstm.seed")]
    mean, sd = rows.loc["lstm.mean", ratio], rows.loc["lstm.std", ratio]
    beats = int((seeds[ratio] < 1).sum())
    p_values = seeds[f"{units}/dm_p"]
    several = len(seeds) > 1  # one seed: its values, without a spread that is not there
    return [
        fold, f"{rows['first'].iloc[0]}..{rows['last'].iloc[0]}", str(rows["days"].iloc[0]),
        f"{_fmt(mean)} ± {_fmt(sd)} ({_fmt(seeds[ratio].min())}-{_fmt(seeds[ratio].max())})" if several else _fmt(mean),
        f"{beats}/{len(seeds)} seeds" if several else ("yes" if beats else "no"),
        *[_fmt(rows.loc[b, ratio]) for b in baselines],
        f"{_fmt(p_values.min(), 2, 'g')}-{_fmt(p_values.max(), 2, 'g')}" if several else _fmt(p_values.iloc[0], 2, "g"),
        _fmt(rows.loc["lstm.mean", "direction_accuracy"]),
    ]


def summary_markdown(table: pd.DataFrame, coin: str, units: str = "usd") -> str:
    """A Markdown table, one row per fold and one for all days: the LSTM's MAE ratio to persistence
    (seeds' mean ± sd, min-max), each baseline's ratio, the LSTM's DM p-values against
    persistence (range over seeds) and its direction accuracy (seeds' mean)."""
    baselines = [b for b in ("drift", "moving_average", "arima") if b in set(table["forecaster"])]
    header = ["fold", "test days", "days", "LSTM MAE ratio", "beats persistence",
              *[f"{b} ratio" for b in baselines], "LSTM DM p", "LSTM direction"]
    lines = [f"MAE ratio to persistence in {units.upper()} ({coin}); below 1 beats persistence.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fold, rows in table.groupby("fold", sort=False):
        lines.append("| " + " | ".join(_summary_row(fold, rows.set_index("forecaster"), baselines, units)) + " |")
    return "\n".join(lines) + "\n"
