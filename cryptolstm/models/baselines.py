"""The point baselines an LSTM must beat, each forecasting days t + 1..t + H from closes up to origin t only;
``name`` is its label in every table, metric and tag, ``display`` its name in prose."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from cryptolstm.errors import DataError
from cryptolstm.forecast import Forecast
from cryptolstm.intervals import LEVELS, level_index
from cryptolstm.models.base import History
from cryptolstm.windowing import Samples


def day_before(closes: pd.Series, samples: Samples, values: pd.Series) -> np.ndarray:
    """``values`` (aligned with ``closes``) on each sample's origin, the day before its first target day."""
    days = pd.DatetimeIndex(samples.dates) - pd.Timedelta(days=1)
    missing = days.difference(closes.index)
    if len(missing):
        raise DataError(f"no close on {missing[0].date()}, the day before a target day.")
    return values.reindex(days).to_numpy(np.float64)


def every_horizon(samples: Samples, values: np.ndarray) -> np.ndarray:
    """(n,) ``values`` forecast for every horizon alike: (n, H)."""
    return np.repeat(np.asarray(values, dtype=np.float64)[:, None], samples.horizon, axis=1)


class Unfitted:
    """A baseline with nothing to fit: `fit` leaves it as it is."""

    def fit(self, history: History | None = None) -> Unfitted:
        return self


class Persistence(Unfitted):
    """"Tomorrow = today": every target day's close equals the origin's close."""

    name = "persistence"
    display = "persistence"
    params: dict[str, float] = {}

    def predict(self, samples: Samples, history: History | None = None) -> Forecast:
        return Forecast.of_samples(samples, every_horizon(samples, samples.persistence))


class Drift:
    """Random walk with drift on log prices: close[t] * exp(k * mu), mu the training closes' mean log return."""

    name = "drift"
    display = "drift"

    def __init__(self) -> None:
        self.params: dict[str, float] = {}

    def fit(self, history: History) -> Drift:
        log_returns = np.diff(np.log(history.closes.to_numpy(np.float64)))
        if len(log_returns) < 1:
            raise DataError("the drift baseline needs at least two training closes.")
        self.params = {"mu": float(np.mean(log_returns))}
        return self

    def predict(self, samples: Samples, history: History | None = None) -> Forecast:
        growth = np.exp(self.params["mu"] * np.arange(1, samples.horizon + 1))  # (H,)
        return Forecast.of_closes(samples, samples.last_close()[:, None] * growth[None, :])


class MovingAverage(Unfitted):
    """Every target day = the mean of the last ``k`` closes up to the origin. Nothing is fitted."""

    name = "moving_average"
    display = "moving average"

    def __init__(self, k: int = 7) -> None:
        if k < 1:
            raise DataError(f"the moving average needs k >= 1 closes, got {k}.")
        self.k = k
        self.params = {"k": float(k)}

    def predict(self, samples: Samples, history: History) -> Forecast:
        closes = history.closes
        forecast = day_before(closes, samples, closes.rolling(self.k, min_periods=self.k).mean())
        if np.isnan(forecast).any():
            raise DataError(f"the moving average of {self.k} closes needs {self.k} days before each target day.")
        return Forecast.of_closes(samples, every_horizon(samples, forecast))


class Arima:
    """ARIMA(p, 1, q) with drift on log closes (statsmodels), fitted on the training closes and then held fixed; for
    H > 1 the Kalman state predicted for t + 1 is carried on, as ``predict(dynamic=True)``, for every origin at once."""

    name = "arima"
    display = "ARIMA"

    def __init__(self, order: tuple[int, int, int] = (1, 1, 1)) -> None:
        self.order = order
        self.params: dict[str, float] = {}
        self._result = None

    @staticmethod
    def _log_daily(closes: pd.Series) -> pd.Series:
        series = np.log(closes.astype(np.float64))
        return series.asfreq("D") if series.index.freq is None else series

    def fit(self, history: History) -> Arima:
        from statsmodels.tsa.arima.model import ARIMA

        with warnings.catch_warnings(action="ignore", category=UserWarning):  # statsmodels' ConvergenceWarning too
            self._result = ARIMA(self._log_daily(history.closes), order=self.order, trend="t").fit()
        # statsmodels calls the drift of a differenced model's trend "x1"
        self.params = {{"x1": "drift"}.get(str(k), str(k)): float(v) for k, v in self._result.params.items()}
        return self

    def predict(self, samples: Samples, history: History) -> Forecast:
        closes = history.closes
        if samples.horizon > 1:
            return Forecast.of_closes(samples, np.exp(self._paths(samples, closes)))
        with warnings.catch_warnings(action="ignore", category=UserWarning):
            applied = self._result.apply(self._log_daily(closes))  # same parameters, more days
        one_step = applied.predict().reindex(pd.DatetimeIndex(samples.dates))  # day d's uses closes up to d - 1
        return Forecast.of_closes(samples, np.exp(one_step.to_numpy(np.float64)))

    def _paths(self, samples: Samples, closes: pd.Series) -> np.ndarray:
        """(n, H) forecast log closes of days t + 1..t + H of each sample's origin t."""
        h = samples.horizon
        origins = pd.DatetimeIndex(samples.dates) - pd.Timedelta(days=1)
        day_before(closes, samples, closes)  # every origin has a close
        series = self._log_daily(closes)
        # Missing days after the data (a forecast of days not yet seen) let the filter run on
        # through them; a filter only looks back, so no forecast changes by it.
        last = max(series.index[-1], origins.max() + pd.Timedelta(days=h))
        series = series.reindex(pd.date_range(series.index[0], last, freq="D", name=series.index.name))
        with warnings.catch_warnings(action="ignore", category=UserWarning):
            applied = self._result.apply(series)
        ssm = applied.model.ssm
        design, transition = ssm["design"], ssm["transition"]
        if design.ndim == 3 or transition.ndim == 3 or np.any(ssm["state_intercept"] != 0):
            raise RuntimeError("ARIMA's multi-day paths assume statsmodels' time-invariant state space form.")
        t = series.index.get_indexer(origins)
        state = applied.filter_results.predicted_state[:, t + 1]  # (m, n): state of t + 1 from closes up to t
        paths = np.empty((len(t), h))
        for k in range(h):
            paths[:, k] = (design @ state)[0] + ssm["obs_intercept"][0, t + 1 + k]  # obs_intercept: the drift's trend
            state = transition @ state
        return paths


POINT = (Drift, MovingAverage, Arima)  # the point baselines a backtest runs beside persistence, in its tables' order
PERSISTENCE = Persistence.name  # what every ratio is relative to


def origins_in(samples: Samples, closes: pd.Series) -> np.ndarray:
    """(n,) positions in ``closes`` of the day before each sample's target day (its origin)."""
    positions = pd.Series(np.arange(len(closes), dtype=np.float64), index=closes.index)
    return day_before(closes, samples, positions).astype(np.int64)


def quantiles_forecast(samples: Samples, on_last: np.ndarray) -> Forecast:
    """The forecast of ``samples`` from (n, H, Q) quantiles of returns on the last close; its point: the median."""
    last, ref = samples.last_close(), samples.ref_close
    quantiles = (last / ref)[:, None, None] * (1.0 + np.asarray(on_last, dtype=np.float64)) - 1.0
    return Forecast(samples.dates, ref, last, quantiles[:, :, level_index(0.5)], quantiles, LEVELS)
