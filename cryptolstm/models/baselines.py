"""The baselines an LSTM must beat, with the interface of `cryptolstm.models.base`.

Persistence (tomorrow = today), drift (a random walk with drift on log prices),
the moving average of the last k closes, and ARIMA(p, 1, q) with drift.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from cryptolstm.errors import DataError
from cryptolstm.forecast import Forecast
from cryptolstm.windowing import WindowSet


def day_before(closes: pd.Series, samples: WindowSet, values: pd.Series) -> np.ndarray:
    """``values`` at the day before each sample's target day (a series aligned with ``closes``)."""
    days = pd.DatetimeIndex(samples.dates) - pd.Timedelta(days=1)
    missing = days.difference(closes.index)
    if len(missing):
        raise DataError(f"no close on {missing[0].date()}, the day before a target day.")
    return values.reindex(days).to_numpy(np.float64)


class Persistence:
    """"Tomorrow = today": the target day's close equals the last known close."""

    name = "persistence"
    params: dict[str, float] = {}

    def fit(self, splits=None, closes: pd.Series | None = None) -> Persistence:
        return self

    def predict(self, samples: WindowSet, closes: pd.Series | None = None) -> Forecast:
        """The forecast that keeps the last close."""
        return Forecast.of_samples(samples, samples.persistence)


class Drift:
    """Random walk with drift on log prices: tomorrow = today * exp(mean daily log return).

    The drift is the mean of ``diff(log close)`` over the training closes.
    """

    name = "drift"

    def __init__(self) -> None:
        self.params: dict[str, float] = {}

    def fit(self, splits, closes: pd.Series) -> Drift:
        log_returns = np.diff(np.log(closes.to_numpy(np.float64)))
        if len(log_returns) < 1:
            raise DataError("the drift baseline needs at least two training closes.")
        self.params = {"mu": float(np.mean(log_returns))}
        return self

    def predict(self, samples: WindowSet, closes: pd.Series | None = None) -> Forecast:
        return Forecast.of_closes(samples, samples.last_close() * np.exp(self.params["mu"]))


class MovingAverage:
    """Tomorrow = the mean of the last ``k`` closes. Nothing is fitted."""

    name = "moving_average"

    def __init__(self, k: int = 7) -> None:
        if k < 1:
            raise DataError(f"the moving average needs k >= 1 closes, got {k}.")
        self.k = k
        self.params = {"k": float(k)}

    def fit(self, splits=None, closes: pd.Series | None = None) -> MovingAverage:
        return self

    def predict(self, samples: WindowSet, closes: pd.Series) -> Forecast:
        mean = closes.rolling(self.k, min_periods=self.k).mean()
        forecast = day_before(closes, samples, mean)
        if np.isnan(forecast).any():
            raise DataError(f"the moving average of {self.k} closes needs {self.k} days before each target day.")
        return Forecast.of_closes(samples, forecast)


class Arima:
    """ARIMA(p, 1, q) with drift on log closes (statsmodels), fitted on the training closes.

    The test days are forecast one step ahead with the fitted parameters held
    fixed, each from the closes before it (``ARIMAResults.apply``).
    """

    name = "arima"

    def __init__(self, order: tuple[int, int, int] = (1, 1, 1)) -> None:
        self.order = order
        self.params: dict[str, float] = {}
        self._result = None

    @staticmethod
    def _log_daily(closes: pd.Series) -> pd.Series:
        series = np.log(closes.astype(np.float64))
        return series.asfreq("D") if series.index.freq is None else series

    def fit(self, splits, closes: pd.Series) -> Arima:
        from statsmodels.tools.sm_exceptions import ConvergenceWarning
        from statsmodels.tsa.arima.model import ARIMA

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            self._result = ARIMA(self._log_daily(closes), order=self.order, trend="t").fit()
        # statsmodels calls the drift of a differenced model's trend "x1"
        self.params = {{"x1": "drift"}.get(str(k), str(k)): float(v) for k, v in self._result.params.items()}
        return self

    def predict(self, samples: WindowSet, closes: pd.Series) -> Forecast:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            applied = self._result.apply(self._log_daily(closes))  # same parameters, more days
        one_step = applied.predict()  # value at day d uses closes up to d - 1
        forecast = np.exp(one_step.reindex(pd.DatetimeIndex(samples.dates)).to_numpy(np.float64))
        return Forecast.of_closes(samples, forecast)
