"""The one scoring step: `Forecasts` -> every metric of every forecaster per group of periods and horizon, beside
persistence and the interval baselines, named as a run (`Scores.named`) or a backtest (`Scores.table`) logs them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptolstm.forecast import UNITS, USD, Forecast, other_units
from cryptolstm.forecasting import Chunk, Forecasts
from cryptolstm.intervals import LEVELS, gaussian_quantiles
from cryptolstm.metrics import DIRECTION, in_sample_scale, interval_scores, score_forecast
from cryptolstm.models.interval_baselines import INTERVAL
from cryptolstm.models.network import NetworkForecaster
from cryptolstm.splits import Period
from cryptolstm.windowing import Samples

INTERVAL_BASELINES = tuple(b.name for b in INTERVAL)  # what a forecast distribution is scored beside
UNCALIBRATED = ".uncalibrated"  # a forecaster's raw quantiles, before conformal calibration
# A run's metrics (`Scores.named`): in its primary units, and these also in the other units.
PRIMARY = ("mae", "rmse", "persistence_mae", "persistence_rmse", "mae_ratio", "dm_stat", "dm_p", "dm_mde")
BESIDE = ("mae", "persistence_mae", "mae_ratio")
PER_HORIZON = ("mae", "persistence_mae", "mae_ratio", "dm_stat", "dm_p", "dm_mde")
HORIZON_INTERVALS = ("coverage_80", "coverage_95", "width_95", "crps")  # and the ratios and DM p to each baseline
HORIZON_COLUMNS = ("usd/mae", "usd/persistence_mae", "usd/mae_ratio", "usd/dm_p", "return/mae_ratio",
                   "direction_accuracy")


def scales_before(closes: pd.Series, first: pd.Timestamp) -> dict[str, float]:
    """MASE's in-sample scale in each units: persistence's MAE on the closes before ``first``."""
    history = closes.loc[: first - pd.Timedelta(days=1)]
    return {units: in_sample_scale(history, units) for units in UNITS}


@dataclass
class Scores:
    """Every metric per (group, forecaster, horizon) in ``rows``; ``days``: origins per group; ``groups``: periods."""

    rows: dict[tuple[str, str, int], dict[str, float]]  # (group, forecaster, horizon) -> metrics
    units: str
    days: dict[str, int]
    groups: dict[str, list[str]]

    @property
    def frame(self) -> pd.DataFrame:
        """The metrics as columns, indexed by (group, forecaster, horizon)."""
        frame = pd.DataFrame.from_dict(self.rows, orient="index")
        frame.index = pd.MultiIndex.from_tuples(list(self.rows), names=["group", "forecaster", "horizon"])
        return frame

    def row(self, group: str, forecaster: str, h: int = 1) -> dict[str, float]:
        return self.rows[(group, forecaster, h)]

    def has(self, group: str, forecaster: str) -> bool:
        return (group, forecaster, 1) in self.rows

    def horizons(self, group: str, forecaster: str) -> list[int]:
        return [h for g, f, h in self.rows if g == group and f == forecaster]

    def named(self, forecaster: str, prefix: str = "") -> dict[str, float]:
        """``forecaster``'s metrics as a run logs them: ``{group}/{prefix}{metric}`` (``_{other}`` for the other
        units), ``{group}/{prefix}h{k}/...`` per horizon when H > 1."""
        other = other_units(self.units)
        out = {}
        for group in self.groups:
            if not self.has(group, forecaster):
                continue
            first = self.row(group, forecaster, 1)
            at = f"{group}/{prefix}"
            out |= {f"{at}{k}": first[f"{self.units}/{k}"] for k in PRIMARY}
            out |= {f"{at}{k}_{other}": first[f"{other}/{k}"] for k in BESIDE}
            out |= {f"{at}{k}": first[k] for k in DIRECTION}
            if self.units == USD:
                out[f"{at}mape"] = first["usd/mape"]
            out |= {f"{at}{k}": v for k, v in first.items() if _is_interval(k)}
            horizons = self.horizons(group, forecaster)
            for h in horizons if len(horizons) > 1 else ():
                row = self.row(group, forecaster, h)
                out |= {f"{at}h{h}/{k}": row[f"{self.units}/{k}"] for k in PER_HORIZON}
                out[f"{at}h{h}/direction_accuracy"] = row["direction_accuracy"]
                out |= {f"{at}h{h}/{k}": v for k, v in row.items() if _per_horizon_interval(k)}
        return {k: float(v) for k, v in out.items()}

    def table(self, kind: str = "accuracy") -> pd.DataFrame:
        """Rows indexed by group and forecaster: ``accuracy`` (point metrics of horizon 1), ``intervals`` (interval
        metrics of the forecasters with quantiles) or ``horizons`` (forecaster ``{name}/h{k}``)."""
        frame = self.frame
        if kind == "horizons":
            frame = frame.reset_index()
            frame["forecaster"] = frame["forecaster"] + "/h" + frame["horizon"].astype(str)
            return frame.set_index(["group", "forecaster"])[list(HORIZON_COLUMNS)]
        first = frame.xs(1, level="horizon")
        if kind == "intervals":
            keys = [k for k in first.columns if _is_interval(k) and "/" not in k and not k.startswith("raw_")]
            return first.loc[first["crps"].notna() if "crps" in first else [], keys]
        return first[[k for k in first.columns if not _is_interval(k)]]


def _is_interval(key: str) -> bool:
    return not (key.startswith(("usd/", "return/", "direction_")))


def _per_horizon_interval(key: str) -> bool:
    """Whether an interval metric is logged per horizon too (`HORIZON_INTERVALS`, CRPS ratios, DM p and MDE)."""
    return key.rsplit("/", 1)[-1] in HORIZON_INTERVALS or key.startswith(("crps_ratio_", "crps_dm_p_", "crps_dm_mde_"))


def score(forecasts: Forecasts, units: str, groups: Mapping[str, Sequence[str]] | None = None,
          scales: Mapping[str, dict[str, float]] | None = None) -> Scores:
    """Every metric of every forecaster per group of periods (``groups``: name -> period names; default: each
    period alone), the interval metrics in ``units``, MASE where ``scales`` gives a group's in-sample scales."""
    groups = {name: list(periods) for name, periods in (groups or {p: [p] for p in forecasts.period_names}).items()}
    comparators = [b for b in INTERVAL_BASELINES if b in forecasts.forecasters]
    rows, days = {}, {}
    for group, periods in groups.items():
        present = forecasts.table.loc[forecasts.table["period"].isin(periods), "forecaster"].unique()
        chosen = {name: forecasts.forecast(name, periods) for name in forecasts.forecasters
                  if name in present and not name.endswith(UNCALIBRATED)}
        baselines = {b: chosen[b][0] for b in comparators if b in chosen}
        for name, (forecast, actual) in chosen.items():
            raw = forecasts.forecast(name + UNCALIBRATED, periods)[0] if name + UNCALIBRATED in present else None
            for h in range(1, forecast.horizon + 1):
                row = score_forecast(forecast, actual[:, h - 1], (scales or {}).get(group), h)
                if forecast.has_intervals and baselines:  # a distribution is never scored alone
                    row |= interval_scores(forecast, actual[:, h - 1], units, baselines, raw, h)
                rows[(group, name, h)] = row
            days[group] = len(forecast)
    return Scores(rows, units, days, groups)


def logged_names(split: str, horizon: int, head, units: str) -> set[str]:
    """The ``{split}/...`` metric names a training run of ``horizon`` days and ``head`` logs in ``units``, read
    off a small made-up table scored as a run is, so the list can never drift from what is logged."""
    n, rng = 40, np.random.default_rng(0)
    dates = np.arange(1, n + 1).astype("datetime64[D]").astype("datetime64[ns]")
    ones = np.ones(n)
    actual = 1.0 + rng.normal(0, 0.01, (n, horizon))
    made = Samples((actual - 1.0).astype(np.float32), ones, np.zeros(n), actual, dates)
    period = Period(split, pd.Timestamp(dates[0]), pd.Timestamp(dates[-1]))
    point = Forecast(dates, ones, ones, rng.normal(0, 0.01, (n, horizon)))
    model = NetworkForecaster.name
    names = [model] + ([model + UNCALIBRATED, *INTERVAL_BASELINES] if head.distribution else [])
    spread = point.with_quantiles(gaussian_quantiles(point.returns, 0.01 * np.ones_like(point.returns)), LEVELS)
    chunks = [Chunk(name, period, made, spread if head.distribution else point) for name in names]
    return set(score(Forecasts.of(chunks), units).named(model))
