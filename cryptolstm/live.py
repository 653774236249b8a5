"""A trained model on days after its training: one-step-ahead forecasts, scored beside persistence.

No MLflow here (`cryptolstm.tracking.live` loads the registered model and logs the result).
The model is any callable that forecasts every window of daily rows at once, as the pyfunc
does with ``params={"every_day": True}`` (`cryptolstm.forecaster.forecast`): a table of one
row per origin day and horizon, USD closes, quantile columns under a distribution head.

The days scored are the target days ``first..last``, each by the window that ends the day
before it (so each forecast uses only data up to the day before the day it forecasts); a
model of H > 1 days is also scored per horizon on the windows whose H days all lie there. The samples are those the honest protocol makes
(`cryptolstm.windowing.target_windows`), so a model's test days scored here give the test
metrics it logged when it was trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import DataError
from cryptolstm.forecast import Forecast
from cryptolstm.intervals import LEVELS
from cryptolstm.metrics import interval_metrics, split_metrics
from cryptolstm.windowing import WindowSet, input_rows, target_windows

SPLIT = "live"  # the metrics' prefix: live/mae, live/mae_ratio, live/h2/mae_ratio...
EveryDay = Callable[[pd.DataFrame], pd.DataFrame]  # daily rows -> every window's forecast


@dataclass
class LiveResult:
    """The score of a model on the days ``first``..``last`` (ISO dates).

    ``samples``: the windows scored, one per day (horizon 1); ``forecast``: their `Forecast` (returns
    on each sample's reference close, quantiles under a distribution head); ``metrics``:
    ``{"live/<metric>": value}`` (`metrics.split_metrics`, and `metrics.interval_metrics` beside
    the interval baselines when the model has intervals); ``days``: the per-day table
    (`daily_table`); ``baselines``: interval baseline name -> `Forecast` of the same days.
    """

    first: str
    last: str
    samples: WindowSet
    forecast: Forecast
    metrics: dict[str, float]
    days: pd.DataFrame
    baselines: dict[str, Forecast] = field(default_factory=dict)

    @property
    def n_days(self) -> int:
        return len(self.samples)


def _input_start(frame: pd.DataFrame, first: str, window_len: int) -> int:
    """Position in ``frame`` of the first input day of the window that forecasts ``first``."""
    start = int(frame.index.searchsorted(pd.Timestamp(first)))
    if start < window_len:
        raise DataError(f"the data starts on {frame.index[0].date()}: {first} needs the {window_len} days "
                        f"before it as the model's input.")
    return start - window_len


def scored_samples(frame: pd.DataFrame, cfg: RunConfig, first: str, last: str, horizon: int = 1) -> WindowSet:
    """The windows of ``cfg`` whose ``horizon`` target days all lie in ``first..last`` (ISO dates),
    built from ``frame``'s days up to ``last``: with ``horizon`` 1, one window per day scored.
    `DataError` when there is none."""
    window = frame.iloc[_input_start(frame, first, cfg.window_len):].loc[: pd.Timestamp(last)]
    if len(window) < cfg.window_len + horizon:
        raise DataError(f"no {horizon}-day target period lies within {first}..{last}.")
    return target_windows(window, cfg.coin, COINS, cfg.window_len, cfg.rules.reference, horizon=horizon)


def forecast_of_table(table: pd.DataFrame, samples: WindowSet) -> Forecast:
    """The `Forecast` of ``samples`` read from the pyfunc's ``every_day`` table (one row per origin
    and horizon, USD), relative to each sample's reference close as in training."""
    h = samples.horizon
    origins = (samples.dates - np.timedelta64(1, "D")).astype("datetime64[D]")
    table = table.assign(origin=pd.to_datetime(table["origin"]).to_numpy().astype("datetime64[D]"))
    table = table.set_index(["origin", "horizon"]).sort_index()
    try:
        picked = table.loc[pd.MultiIndex.from_product([pd.to_datetime(origins), range(1, h + 1)])]
    except KeyError:
        raise DataError("the model did not forecast every window it was given.") from None
    closes = picked["forecast_close"].to_numpy(np.float64).reshape(len(samples), h)
    forecast = Forecast.of_closes(samples, closes)
    quantile_columns = [c for c in table.columns if c.startswith("q") and c[1:2].isdigit()]
    if not quantile_columns:
        return forecast
    usd = picked[quantile_columns].to_numpy(np.float64).reshape(len(samples), h, len(quantile_columns))
    return forecast.with_quantiles(usd / samples.ref_close[:, None, None] - 1.0, LEVELS)


def daily_table(samples: WindowSet, forecast: Forecast) -> pd.DataFrame:
    """One row per target day of horizon 1: its ``date``, the ``origin`` (the day before), the
    ``actual`` close, the model's ``forecast`` and persistence's (the origin's close, USD), both
    errors, ``abs_error_gap`` (|model error| - |persistence error|: below 0 the model was closer)
    and its running sum ``cumulative_gap``; the 80 % / 95 % bounds and whether the actual close
    fell inside, under a distribution head (``samples``: one window per day, horizon 1)."""
    actual, predicted, last = samples.actual(1), forecast.close(1), forecast.last_close
    gap = np.abs(predicted - actual) - np.abs(last - actual)
    dates = samples.dates.astype("datetime64[D]")
    days = pd.DataFrame({"date": np.datetime_as_string(dates, unit="D"),
                         "origin": np.datetime_as_string(dates - 1, unit="D"),
                         "actual": actual, "forecast": predicted, "persistence": last,
                         "error": predicted - actual, "persistence_error": last - actual,
                         "abs_error_gap": gap, "cumulative_gap": np.cumsum(gap)})
    if forecast.has_intervals:
        for coverage in (80, 95):
            lower, upper = forecast.bounds(coverage)
            days[f"lower_{coverage}"], days[f"upper_{coverage}"] = lower, upper
            days[f"inside_{coverage}"] = (actual >= lower) & (actual <= upper)
    return days


def score_live(forecast_every_day: EveryDay, cfg: RunConfig, frame: pd.DataFrame, first: str, last: str,
               interval_baselines: dict[str, type] | None = None) -> LiveResult:
    """Score the model ``forecast_every_day`` (of config ``cfg``) on the target days
    ``first..last`` of ``frame`` (the merged market, from well before ``first``): one call
    forecasts every window, the metrics stand beside persistence on the same days (in USD),
    and under a distribution head beside the ``interval_baselines`` (name -> maker), fitted on
    the closes before ``first``.

    Every day is scored one day ahead; a model of H > 1 days is also scored per horizon
    (``live/h<k>/...``) on the windows whose H target days all lie in the range."""
    inputs = frame.iloc[_input_start(frame, first, cfg.window_len):].loc[: pd.Timestamp(last) - pd.Timedelta(days=1)]
    table = forecast_every_day(input_rows(inputs))
    samples = scored_samples(frame, cfg, first, last)
    forecast = forecast_of_table(table, samples)
    metrics = split_metrics(SPLIT, forecast, samples.target_close, "usd")
    if cfg.horizon > 1 and len(samples) >= cfg.horizon:
        full = scored_samples(frame, cfg, first, last, cfg.horizon)
        per_horizon = split_metrics(SPLIT, forecast_of_table(table, full), full.target_close, "usd")
        metrics |= {k: v for k, v in per_horizon.items() if k.startswith(f"{SPLIT}/h")}
    baselines = {}
    if forecast.has_intervals and interval_baselines:
        closes = frame[f"{cfg.coin}_close"].loc[: pd.Timestamp(last)]
        history = closes.loc[: pd.Timestamp(first) - pd.Timedelta(days=1)]
        baselines = {name: make().fit(None, history).predict(samples, closes) for name, make in interval_baselines.items()}
        metrics |= interval_metrics(SPLIT, forecast, samples.target_close, "usd", baselines)
    dates = samples.dates.astype("datetime64[D]")
    return LiveResult(str(dates[0]), str(dates[-1]), samples, forecast, metrics, daily_table(samples, forecast),
                      baselines)


def next_day(day: str) -> str:
    """The ISO date after ``day``."""
    return (pd.Timestamp(day) + pd.Timedelta(days=1)).date().isoformat()
