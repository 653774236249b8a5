"""A registered model scored one day ahead on the days after its training (`cryptolstm evaluate`), beside
persistence, by the forecasting loop that scored it in training (its test days give back its logged test
metrics). No MLflow here: the model and the record go through a `cryptolstm.registry.ModelStore`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptolstm.config import RunConfig
from cryptolstm.data import Market, load_market
from cryptolstm.data.prepare import ensure_data
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.features import column
from cryptolstm.forecast import USD, Forecast
from cryptolstm.forecasting import NEVER, Forecasts, fitted, fresh, historical_forecasts, once
from cryptolstm.models.interval_baselines import INTERVAL
from cryptolstm.registry import MIN_TAGGED_DAYS, ModelInfo, ModelStore, Opening, next_day
from cryptolstm.rows import price_mismatch, trained_prices
from cryptolstm.scoring import score
from cryptolstm.splits import Period

SPLIT = "live"  # the metrics' prefix: live/mae, live/mae_ratio, live/h2/mae_ratio...
MODEL = "model"  # the evaluated model's label in the table of forecasts


@dataclass
class Evaluation:
    """A model scored on the days ``first``..``last`` (ISO dates): its (and the interval baselines')
    ``forecasts``, ``metrics`` ``live/...``, `daily_table` ``days``, its record's ``run_id`` and seal ``opening``."""

    info: ModelInfo
    first: str
    last: str
    forecasts: Forecasts
    metrics: dict[str, float]
    days: pd.DataFrame
    run_id: str = ""
    opening: Opening | None = None

    @property
    def n_days(self) -> int:
        return len(self.days)

    @property
    def new_days(self) -> bool:
        """Whether every day scored came after the model's data."""
        return self.info.is_new(self.first)

    @property
    def tags_version(self) -> bool:
        """Whether it becomes the version's ``live.*`` tags: a version scored on `MIN_TAGGED_DAYS` new days or more."""
        return bool(self.info.version) and self.new_days and self.n_days >= MIN_TAGGED_DAYS


def evaluation_days(info: ModelInfo, market: Market, since: str | None, until: str | None, data_dir: str) -> tuple[str, str]:
    """(first, last) day to score: ``since`` (default: after the model's data) to ``until`` (default: the
    data's last day); one sentence for a day the model trained or validated on, or none left."""
    first, last = since or next_day(info.data_last), until or market.last_date
    if market.sealed_from and first >= market.sealed_from:
        raise DataError(f"the days from {market.sealed_from} on are sealed for {info.label}: score them once, beside "
                        f"every baseline, with --open-seal.")
    if first <= info.trained_until:
        raise ConfigError(f"{first} is not a new day for {info.label}: its training and validation used the days up "
                          f"to {info.trained_until}; score days from {next_day(info.trained_until)} on.")
    if first > market.last_date:
        raise DataError(f"no new day to score: the data in {data_dir} ends on {market.last_date} and "
                        f"{info.label} {'is scored from ' + first if since else 'trained on data up to ' + info.data_last}; "
                        f"fetch newer prices (cryptolstm fetch --data-dir {data_dir}).")
    if first > last:
        raise ConfigError(f"no day to score between {first} and {last}.")
    return first, min(last, market.last_date)


def check_prices(info: ModelInfo, frame: pd.DataFrame, data_dir: str) -> None:
    """One sentence when the prices in ``frame`` (from ``data_dir``) are not those ``info``'s model was trained
    on, on the days both hold; without shared days, when the close does not carry on from the last trained on."""
    trained = trained_prices(info.prices)
    mismatch = price_mismatch(trained, frame)
    if mismatch is not None:
        raise DataError(f"the prices in {data_dir} are not those {info.label} was trained on: {mismatch}; evaluate it "
                        f"on the data it was trained with, or refit it.")
    if len(trained.index.intersection(frame.index)):
        return
    # without shared days, the first new close must be within a daily move of 10 % compounded (at least 2x) of the last
    name = column(info.config.coin, "close")
    last, first = trained[name].iloc[-1], frame[name].iloc[0]
    days = max((frame.index[0] - trained.index[-1]).days, 1)
    allowed = max(2.0, 1.1 ** days)
    if not 1 / allowed <= first / last <= allowed:
        raise DataError(f"the prices in {data_dir} do not continue those {info.label} was trained on: {name} was "
                        f"{last:.10g} on {trained.index[-1].date()} and is {first:.10g} {days} day(s) later; "
                        f"is it another coin's file?")


def daily_table(forecast: Forecast, actual: np.ndarray) -> pd.DataFrame:
    """One row per target day of horizon 1: ``date``, ``origin``, the ``actual`` close, the model's and
    persistence's forecasts and errors in USD, ``abs_error_gap`` (below 0: the model was closer), its
    running sum ``cumulative_gap``, and under a distribution head the 80 % / 95 % bounds and ``inside_*``."""
    actual, predicted, last = actual[:, 0], forecast.close(1), forecast.last_close
    gap = np.abs(predicted - actual) - np.abs(last - actual)
    dates = forecast.dates.astype("datetime64[D]")
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


def score_days(forecaster, cfg: RunConfig, frame: pd.DataFrame, first: str, last: str,
               baselines: bool = True) -> tuple[Forecasts, dict[str, float]]:
    """(day-ahead forecasts, metrics ``live/...``) of the target days ``first..last`` of ``frame`` by the fitted
    ``forecaster``, beside persistence in USD and (``baselines``) the interval baselines fitted before
    ``first``; a model of H > 1 days is also scored per horizon on the windows whose H days all lie there."""
    period = Period(SPLIT, pd.Timestamp(first), pd.Timestamp(last))
    if frame.index.searchsorted(period.first) < cfg.window_len:
        raise DataError(f"the data starts on {frame.index[0].date()}: {first} needs the {cfg.window_len} days "
                        f"before it as the model's input.")
    made = historical_forecasts({MODEL: fitted(forecaster)}, frame, cfg, [period], NEVER, horizon=1)
    if not made.table.shape[0]:
        raise DataError(f"no 1-day target period lies within {first}..{last}.")
    if baselines and cfg.head_spec.distribution:
        makers = {b.name: fresh(b) for b in INTERVAL}
        made += historical_forecasts(makers, frame, cfg, [period], once([period]), horizon=1)
    metrics = score(made, USD).named(MODEL)
    if cfg.horizon > 1:
        ahead = historical_forecasts({MODEL: fitted(forecaster)}, frame, cfg, [period], NEVER)
        if len(ahead.table):
            metrics |= {k: v for k, v in score(ahead, USD).named(MODEL).items() if k.startswith(f"{SPLIT}/h")}
    return made, metrics


def evaluate(store: ModelStore, uri: str, data_dir: str, since: str | None = None, until: str | None = None,
             fetch_missing: bool = True, opening_by: str | None = None) -> Evaluation:
    """Score the model ``uri`` on the days after its training and record it in ``store`` (all checks come
    first); its sealed days are scored only when ``opening_by`` (a user) opens the seal."""
    info = store.resolve(uri)
    seal, opening = info.sealed_from, None
    if opening_by is not None:  # only an untouched seal opens
        if seal is None:
            raise ConfigError(f"{info.label} has no seal (it was trained and registered without --sealed-from): "
                              f"there is nothing to open; score it without --open-seal.")
        if info.data_last >= seal:
            raise ConfigError(f"{info.label} was trained on data up to {info.data_last}, across its seal from {seal}: "
                              f"its sealed days are not untouched, so there is no seal to open.")
        at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        opening = Opening(seal, at, opening_by or "unknown", info.openings)
    forecaster = store.load(info)
    cfg = info.config
    ensure_data(data_dir, fetch_missing)
    market = load_market(data_dir, cfg.merge_date, None, cfg.fill_gaps, sealed_from=None if opening else seal)
    check_prices(info, market.frame, data_dir)
    first, last = evaluation_days(info, market, seal if opening else since, until, data_dir)
    forecasts, metrics = score_days(forecaster, cfg, market.frame, first, last)
    days = daily_table(*forecasts.forecast(MODEL, SPLIT))
    evaluation = Evaluation(info, days["date"].iloc[0], days["date"].iloc[-1], forecasts, metrics, days,
                            opening=opening)
    evaluation.run_id = store.record_evaluation(evaluation, market, data_dir)
    return evaluation
