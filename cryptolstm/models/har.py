"""The HAR interval baseline (Corsi 2009): OLS of tomorrow's Parkinson volatility on the day's, week's and month's,
times sqrt(k) and the empirical quantiles of the training days' standardized log returns (the data's tails)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptolstm.errors import DataError
from cryptolstm.features import closes, parkinson
from cryptolstm.forecast import Forecast
from cryptolstm.intervals import LEVELS, empirical_quantiles
from cryptolstm.models.base import History
from cryptolstm.models.baselines import origins_in, quantiles_forecast
from cryptolstm.windowing import Samples

LAGS = (1, 5, 22)  # the day, the week, the month: HAR's three averages of past volatility
MIN_FIT = 100  # fewest training days HAR is fitted on
FLOOR = 1e-4  # the lowest daily volatility it forecasts (a fitted line can cross zero)


def regressors(volatility: pd.Series) -> pd.DataFrame:
    """HAR's regressors on day t: ``vol_k``, the mean volatility of days t-k+1..t for each k in `LAGS`."""
    return pd.DataFrame({f"vol_{k}": volatility.rolling(k, min_periods=k).mean() for k in LAGS})


class Har:
    """HAR on Parkinson volatility with empirical standardized-return quantiles (module docstring)."""

    name = "har"
    display = "HAR"
    compared = 2

    def __init__(self) -> None:
        self.params: dict[str, float] = {}
        self.coefficients: np.ndarray | None = None  # (1 + len(LAGS),): the constant, then each average's
        self.z_quantiles: np.ndarray | None = None  # (Q,) of the standardized training returns

    def volatility(self, frame: pd.DataFrame, coin: str) -> pd.Series:
        """HAR's forecast of the next day's volatility made on each day t of ``frame``."""
        X = regressors(parkinson(frame, coin)).to_numpy()
        return pd.Series(np.maximum(self.coefficients[0] + X @ self.coefficients[1:], FLOOR), index=frame.index)

    def fit(self, history: History) -> Har:
        import statsmodels.api as sm

        vol = parkinson(history.frame, history.coin)
        table = regressors(vol).assign(target=vol.shift(-1)).dropna()
        if len(table) < MIN_FIT:
            raise DataError(f"the HAR baseline needs at least {MIN_FIT + max(LAGS)} training days with a high and a "
                            f"low, got {len(history.frame)}; start the data earlier.")
        fitted = sm.OLS(table["target"], sm.add_constant(table[[f"vol_{k}" for k in LAGS]])).fit()
        self.coefficients = fitted.params.to_numpy(np.float64)
        self.params = {str(k): float(v) for k, v in fitted.params.items()}
        forecast = self.volatility(history.frame, history.coin).shift(1)  # made the day before each day
        z = (np.log(closes(history.frame, history.coin)).diff() / forecast).dropna()
        self.z_quantiles = empirical_quantiles(z.to_numpy(), LEVELS)
        return self

    def predict(self, samples: Samples, history: History) -> Forecast:
        if self.coefficients is None:
            raise DataError("the HAR baseline must be fitted before it predicts.")
        sigma = self.volatility(history.frame, history.coin).to_numpy()[origins_in(samples, history.closes)]
        if np.isnan(sigma).any():
            raise DataError(f"the HAR baseline needs {max(LAGS)} days with a high and a low before each target day.")
        k = np.sqrt(np.arange(1, samples.horizon + 1))
        log_quantiles = sigma[:, None, None] * k[None, :, None] * self.z_quantiles[None, None, :]
        return quantiles_forecast(samples, np.expm1(log_quantiles))
