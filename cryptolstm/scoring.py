"""The one scoring step: any table of forecasts (`cryptolstm.forecasting.Forecasts`) -> every metric
of every forecaster, beside persistence and beside every interval baseline in the table.

`score` computes, per group of periods (a training split, a backtest fold, all folds pooled, the
new days of `evaluate`), per forecaster and per horizon: the point metrics of
`cryptolstm.metrics.score` in USD and in returns (against persistence, on the same days) and,
for a forecast distribution, the interval metrics of `cryptolstm.metrics.interval_scores` beside
each interval baseline the table holds (its CRPS ratio and Diebold-Mariano test), and the
coverage of its uncalibrated quantiles where the table has them (``<name>.uncalibrated``).

The views name the same numbers as each consumer logs them: `Scores.named` (a run's
``val/mae_ratio``, ``test/h3/mae_ratio``, ``val/crps_ratio_garch``...), `Scores.table` (a
backtest's rows per fold and forecaster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptolstm.forecast import UNITS, USD, Forecast, other_units
from cryptolstm.forecasting import Forecasts
from cryptolstm.models.network import NetworkForecaster
from cryptolstm.metrics import in_sample_scale, interval_scores, score_forecast
from cryptolstm.models.interval_baselines import INTERVAL

INTERVAL_BASELINES = tuple(b.name for b in INTERVAL)  # what a forecast distribution is scored beside
UNCALIBRATED = ".uncalibrated"  # a forecaster's raw quantiles, before conformal calibration
# A run's metrics (`Scores.named`): in its primary units, and these also in the other units.
PRIMARY = ("mae", "rmse", "persistence_mae", "persistence_rmse", "mae_ratio", "dm_stat", "dm_p", "dm_mde")
BESIDE = ("mae", "persistence_mae", "mae_ratio")
DIRECTION = ("direction_accuracy", "direction_low", "direction_high", "direction_p")
PER_HORIZON = ("mae", "persistence_mae", "mae_ratio", "dm_stat", "dm_p", "dm_mde")
HORIZON_INTERVALS = ("coverage_80", "coverage_95", "width_95", "crps")  # and the ratios and DM p to each baseline
HORIZON_COLUMNS = ("usd/mae", "usd/persistence_mae", "usd/mae_ratio", "usd/dm_p", "return/mae_ratio",
                   "direction_accuracy")


def scales_before(closes: pd.Series, first: pd.Timestamp) -> dict[str, float]:
    """MASE's in-sample scale in each units: persistence's MAE on the closes before ``first``."""
    history = closes.loc[: first - pd.Timedelta(days=1)]
    return {units: in_sample_scale(history, units) for units in UNITS}


def _comparators(forecasts: Forecasts) -> list[str]:
    return [b for b in INTERVAL_BASELINES if b in forecasts.forecasters]


def _score_one(forecast: Forecast, actual: np.ndarray, baselines: dict[str, Forecast], raw: Forecast | None,
               units: str, scales: dict[str, float] | None) -> list[dict[str, float]]:
    """One dict of metrics per horizon of one forecaster's forecast: its interval metrics only beside
    interval baselines (a distribution is never scored alone)."""
    rows = []
    for h in range(1, forecast.horizon + 1):
        row = score_forecast(forecast, actual[:, h - 1], scales, h)
        if forecast.has_intervals and baselines:
            row |= interval_scores(forecast, actual[:, h - 1], units, baselines, raw, h)
        rows.append(row)
    return rows


Key = tuple[str, str, int]  # (group, forecaster, horizon)


@dataclass
class Scores:
    """Every metric per group of periods, forecaster and horizon (``rows``), the interval metrics in
    ``units``; ``days``: samples (origins) per group; ``groups``: group -> its periods."""

    rows: dict[Key, dict[str, float]]
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
        """``forecaster``'s metrics as a run logs them: ``{group}/{metric}`` in the primary units,
        ``{group}/{metric}_{other}`` beside, ``{group}/h{k}/...`` per horizon when H > 1, and the
        interval metrics under the same names (``prefix``: before the metric, ``member0/``...)."""
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
            out |= self._per_horizon(group, forecaster, at)
        return {k: float(v) for k, v in out.items()}

    def _per_horizon(self, group: str, forecaster: str, at: str) -> dict[str, float]:
        horizons = self.horizons(group, forecaster)
        out = {}
        for h in horizons if len(horizons) > 1 else ():
            row = self.row(group, forecaster, h)
            out |= {f"{at}h{h}/{k}": row[f"{self.units}/{k}"] for k in PER_HORIZON}
            out[f"{at}h{h}/direction_accuracy"] = row["direction_accuracy"]
            out |= {f"{at}h{h}/{k}": v for k, v in row.items() if _per_horizon_interval(k)}
        return out

    def table(self, kind: str = "accuracy") -> pd.DataFrame:
        """One row per group and forecaster (``accuracy``: every point-forecast metric of horizon 1; ``intervals``:
        the interval metrics of the forecasters with quantiles; ``horizons``: one row per forecaster and
        horizon, ``{forecaster}/h{k}``), indexed by group then forecaster."""
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
    """Whether an interval metric is logged per horizon too: coverage, the 95 % width and the CRPS
    (the model's and each baseline's, ``garch/crps``), and the CRPS ratios, DM p-values and detectable effects."""
    return key.rsplit("/", 1)[-1] in HORIZON_INTERVALS or key.startswith(("crps_ratio_", "crps_dm_p_", "crps_dm_mde_"))


def score(forecasts: Forecasts, units: str, groups: Mapping[str, Sequence[str]] | None = None,
          scales: Mapping[str, dict[str, float]] | None = None) -> Scores:
    """Every metric of every forecaster of ``forecasts`` (module docstring), per group of periods
    (``groups``: name -> period names; default: each period alone), with MASE where ``scales``
    gives a group's in-sample scales."""
    groups = {name: list(periods) for name, periods in (groups or {p: [p] for p in forecasts.period_names}).items()}
    comparators = _comparators(forecasts)
    rows, days = {}, {}
    for group, periods in groups.items():
        present = forecasts.table.loc[forecasts.table["period"].isin(periods), "forecaster"].unique()
        chosen = {name: forecasts.forecast(name, periods) for name in forecasts.forecasters
                  if name in present and not name.endswith(UNCALIBRATED)}
        baselines = {b: chosen[b][0] for b in comparators if b in chosen}
        for name, (forecast, actual) in chosen.items():
            raw = forecasts.forecast(name + UNCALIBRATED, periods)[0] if name + UNCALIBRATED in present else None
            for h, row in enumerate(_score_one(forecast, actual, baselines, raw, units, (scales or {}).get(group)), 1):
                rows[(group, name, h)] = row
            days[group] = len(forecast)
    return Scores(rows, units, days, groups)


def logged_names(split: str, horizon: int, head, units: str) -> set[str]:
    """The ``{split}/...`` metric names a training run of ``horizon`` days and ``head`` (a
    `cryptolstm.heads.Head`) logs in ``units``, read off a small made-up table scored as a run is,
    so that the list can never drift from what is logged."""
    from cryptolstm.forecasting import Chunk
    from cryptolstm.intervals import LEVELS, gaussian_quantiles
    from cryptolstm.splits import Period
    from cryptolstm.windowing import Samples

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
