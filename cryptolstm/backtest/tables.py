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
from cryptolstm.metrics import PROBABILISTIC_BASELINES, interval_scores, score_forecast
from cryptolstm.models.interval_baselines import interval_baselines

SEEDED = re.compile(r"^(?P<name>.+)\.seed\d+(?P<rest>/h\d+)?$")


def fold_metrics(result: FoldResult) -> pd.DataFrame:
    """One row per forecaster (``lstm.seed202``, ..., ``persistence``...) of one fold, metric columns."""
    rows = {name: score_forecast(forecast, result.actual, result.scales) for name, forecast in result.forecasts.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("forecaster")


HORIZON_COLUMNS = ("usd/mae", "usd/persistence_mae", "usd/mae_ratio", "usd/dm_p", "return/mae_ratio", "direction_accuracy")


def fold_horizon_metrics(result: FoldResult) -> pd.DataFrame:
    """One row per forecaster and horizon k = 1..H of one fold (index ``{forecaster}/h{k}``):
    `metrics.score` of the forecasts of day t+k against persistence's (the close of day t),
    the Diebold-Mariano test with the h - 1 lags that horizon needs."""
    rows = {}
    for name, forecast in result.forecasts.items():
        for h in range(1, result.horizon + 1):
            scored = score_forecast(forecast, result.targets[:, h - 1], result.scales, h)
            rows[f"{name}/h{h}"] = {k: scored[k] for k in HORIZON_COLUMNS}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("forecaster")


def fold_interval_metrics(result: FoldResult) -> pd.DataFrame:
    """One row per forecaster with intervals of one fold: `metrics.interval_scores` of horizon 1 in returns
    (coverage, widths, interval scores, CRPS; widths and CRPS also in USD), with the CRPS ratio
    and Diebold-Mariano test against each interval baseline (``garch``, ``empirical``)."""
    baselines = {b: result.forecasts[b] for b in PROBABILISTIC_BASELINES if b in result.forecasts}
    rows = {}
    for name, forecast in result.forecasts.items():
        if forecast.has_intervals:
            scored = interval_scores(forecast, result.actual, "return", baselines)
            rows[name] = {k: v for k, v in scored.items() if "/" not in k}  # a baseline's own scores: its row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("forecaster")


def with_seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (indexed by forecaster) with rows ``<name>.mean`` and ``<name>.std`` (sample sd; 0
    for one seed) after the per-seed rows of each seeded forecaster, then the others. Labels with
    a horizon (``lstm.seed7/h2``) are summarised per horizon (``lstm.mean/h2``)."""
    groups = [(m["name"], m["rest"] or "") if (m := SEEDED.match(label)) else None for label in table.index]
    parts, others = [], np.array([g is None for g in groups])
    for name, rest in dict.fromkeys(g for g in groups if g is not None):
        seeds = table.loc[np.array([g == (name, rest) for g in groups])]
        spread = seeds.std(ddof=1) if len(seeds) > 1 else 0.0 * seeds.mean()
        parts += [seeds, pd.DataFrame({f"{name}.mean{rest}": seeds.mean(), f"{name}.std{rest}": spread}).T]
    return pd.concat([*parts, table.loc[others]])


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
                        np.concatenate([f.dates for f in folds]), np.concatenate([f.targets for f in folds]), scales)
    merged.forecasts = {k: _concat([f.forecasts[k] for f in folds]) for k in folds[0].forecasts}
    return merged


def metrics_table(result: BacktestResult, metrics=fold_metrics) -> pd.DataFrame:
    """Long table: one row per (fold, forecaster), fold ``all`` for the pooled test days.

    Columns: fold, first, last, days, forecaster, then the ``metrics`` of a fold (`fold_metrics`:
    the point forecasts; `fold_interval_metrics`: the intervals).
    """
    frames = []
    for fold_result in [*result.folds, pooled(result)]:
        table = with_seed_summary(metrics(fold_result)).reset_index(names="forecaster")
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


def _interval_cells(rows: pd.DataFrame, name: str) -> list[str]:
    """Coverage at 80 % / 95 % and the CRPS in percent of forecaster ``name``'s row."""
    if name not in rows.index:
        return ["n/a", "n/a"]
    row = rows.loc[name]
    return [f"{_fmt(row['coverage_80'], 2)} / {_fmt(row['coverage_95'], 2)}", _fmt(100 * row["crps"], 3)]


def interval_summary_markdown(table: pd.DataFrame, coin: str) -> str:
    """A Markdown table of the intervals, one row per fold and one for all days: coverage of the
    80 % and 95 % intervals and the CRPS (percent of the last close) of the LSTM (seeds' mean)
    and each interval baseline, the LSTM's CRPS ratio to GARCH and to the empirical baseline
    with the Diebold-Mariano p-values (range over seeds)."""
    names = [n for n in ("lstm.mean", *interval_baselines()) if n in set(table["forecaster"])]
    header = ["fold", "test days"]
    for name in names:
        header += [f"{name.removesuffix('.mean')} cover 80/95", f"{name.removesuffix('.mean')} CRPS %"]
    header += ["LSTM/GARCH CRPS", "DM p", "LSTM/empirical CRPS", "DM p"]
    lines = [f"Prediction intervals ({coin}): coverage (nominal 0.80 / 0.95) and CRPS in percent of the last "
             "close; a CRPS ratio below 1 beats the baseline.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fold, rows in table.groupby("fold", sort=False):
        rows = rows.set_index("forecaster")
        seeds = rows.loc[rows.index.str.startswith("lstm.seed")]
        cells = [fold, f"{rows['first'].iloc[0]}..{rows['last'].iloc[0]}"]
        for name in names:
            cells += _interval_cells(rows, name)
        for baseline in PROBABILISTIC_BASELINES:
            p = seeds.get(f"crps_dm_p_{baseline}", pd.Series(dtype=float))
            cells += [_fmt(rows.loc["lstm.mean"].get(f"crps_ratio_{baseline}", np.nan)),
                      f"{_fmt(p.min(), 2, 'g')}-{_fmt(p.max(), 2, 'g')}" if len(p) > 1 else _fmt(p.iloc[0] if len(p) else np.nan, 2, "g")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def horizon_summary_markdown(table: pd.DataFrame, coin: str) -> str:
    """A Markdown table of the MAE ratio to persistence (USD) against the horizon: one row per
    fold and one for all days, the LSTM's seeds' mean (± sd with several seeds) per horizon,
    then the pooled ratio of each baseline per horizon. ``table``: `metrics_table` of
    `fold_horizon_metrics`."""
    labels = table["forecaster"].str.rsplit("/", n=1)
    table = table.assign(name=labels.str[0], horizon=labels.str[1])
    horizons = list(dict.fromkeys(table["horizon"]))
    several = (table["name"] == "lstm.std").any() and table.loc[table["name"] == "lstm.std", "usd/mae_ratio"].gt(0).any()
    lines = [f"MAE ratio to persistence in USD against the horizon ({coin}); below 1 beats persistence "
             "(day t+k forecast from day t; persistence forecasts the close of day t for every k).", "",
             "| fold | forecaster | " + " | ".join(horizons) + " |", "|---|---|" + "---|" * len(horizons)]
    for fold, rows in table.groupby("fold", sort=False):
        names = ["lstm.mean"] if fold != "all" else [n for n in dict.fromkeys(rows["name"])
                                                    if not SEEDED.match(n) and n not in ("lstm.std", "persistence")]
        for name in names:
            cells = []
            for h in horizons:
                row = rows.loc[(rows["name"] == name) & (rows["horizon"] == h)]
                value = _fmt(row["usd/mae_ratio"].iloc[0]) if len(row) else "n/a"
                if name == "lstm.mean" and several:
                    sd = rows.loc[(rows["name"] == "lstm.std") & (rows["horizon"] == h), "usd/mae_ratio"]
                    value += f" ± {_fmt(sd.iloc[0])}"
                cells.append(value)
            lines.append(f"| {fold} | {name.removesuffix('.mean')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
