"""The interval baselines every forecast distribution is scored beside, with the interface of
`cryptolstm.models.base`.

Each forecasts the next day's close as quantiles on `cryptolstm.intervals.LEVELS` of the
return on the last close, from closes strictly before the target day, and returns them
relative to the samples' reference close (the last close under the honest protocol, the
window's first close under the seed protocol). The point forecast is the median.

- `Empirical`: a random walk whose next-day return has the empirical distribution of the
  last ``n_days`` daily returns (nothing fitted; the distribution moves with the window).
- `RollingGaussian`: persistence ± a Gaussian with the standard deviation of the last
  ``n_days`` daily returns.
- `Garch`: GARCH(1,1) with Student-t innovations and a constant mean on daily log returns
  in percent (`arch`), fitted on the training closes, its variance filtered through later
  closes with the parameters held fixed.

All three forecast horizon 1 only: a quantile of tomorrow's return, never of a later day's.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from cryptolstm.errors import DataError
from cryptolstm.forecast import Forecast
from cryptolstm.intervals import LEVELS, empirical_quantiles, gaussian_quantiles, level_index
from cryptolstm.models.baselines import day_before
from cryptolstm.windowing import WindowSet

log = logging.getLogger(__name__)

MIN_DAYS = 30  # fewest past daily returns a rolling distribution is estimated from
GARCH_MIN_FIT = 100  # fewest training returns GARCH(1,1)-t is fitted on
ARCH_NAMES = {"mu": "mu", "omega": "omega", "alpha[1]": "alpha", "beta[1]": "beta", "nu": "nu"}


def interval_baselines() -> dict[str, type]:
    """name -> maker of a fresh, unfitted interval baseline (a class with default arguments)."""
    return {"garch": Garch, "empirical": Empirical, "rolling_gaussian": RollingGaussian}


def _origins(samples: WindowSet, closes: pd.Series) -> np.ndarray:
    """(n,) positions in ``closes`` of the day before each sample's target day (its origin)."""
    positions = pd.Series(np.arange(len(closes), dtype=np.float64), index=closes.index)
    return day_before(closes, samples, positions).astype(np.int64)


def _of_quantiles(samples: WindowSet, on_last: np.ndarray) -> Forecast:
    """The forecast of ``samples`` from (n, Q) quantiles of the return on each last close.

    A return r on the last close is ``last / ref * (1 + r) - 1`` on the reference close; the
    map is increasing, so the quantiles stay quantiles. Point forecast: the median."""
    last, ref = samples.last_close(), samples.ref_close
    quantiles = (last / ref)[:, None] * (1.0 + np.asarray(on_last, dtype=np.float64)) - 1.0
    median = quantiles[:, level_index(0.5)]
    return Forecast(samples.dates, ref, last, median, quantiles[:, None, :], LEVELS)


def _windows_of_returns(samples: WindowSet, closes: pd.Series, n_days: int, name: str) -> list[np.ndarray]:
    """For each sample, the last ``n_days`` (at least ``min(n_days, MIN_DAYS)``) daily simple
    returns ending on its origin: ``close[t] / close[t-1] - 1`` for days t before the target."""
    origin = _origins(samples, closes)
    values = closes.to_numpy(np.float64)
    returns = values[1:] / values[:-1] - 1.0  # returns[j] is the return of day j + 1
    needed = min(n_days, MIN_DAYS)
    if origin.min() < needed:
        first = pd.Timestamp(samples.dates[int(np.argmin(origin))]).date()
        raise DataError(f"the {name} baseline needs {needed} daily returns before each target day "
                        f"but {first} has {origin.min()}; start the data earlier.")
    return [returns[max(0, p - n_days):p] for p in origin]


class Empirical:
    """Random walk with the empirical distribution of recent returns (horizon 1 only).

    The next-day return's quantiles are the empirical quantiles of the last ``n_days`` daily
    simple returns before the target day (fewer if the data starts later, at least 30).
    Nothing is fitted.
    """

    name = "empirical"

    def __init__(self, n_days: int = 365) -> None:
        if n_days < 2:
            raise DataError(f"the empirical baseline needs n_days >= 2 returns, got {n_days}.")
        self.n_days = n_days
        self.params = {"n_days": float(n_days)}

    def fit(self, splits=None, closes: pd.Series | None = None) -> Empirical:
        return self

    def predict(self, samples: WindowSet, closes: pd.Series) -> Forecast:
        windows = _windows_of_returns(samples, closes, self.n_days, self.name)
        return _of_quantiles(samples, np.stack([empirical_quantiles(w, LEVELS) for w in windows]))


class RollingGaussian:
    """Persistence ± a zero-mean Gaussian scaled by recent volatility (horizon 1 only).

    The scale is the sample standard deviation (ddof 1) of the last ``n_days`` daily simple
    returns before the target day (fewer if the data starts later, at least 30). Nothing is fitted.
    """

    name = "rolling_gaussian"

    def __init__(self, n_days: int = 30) -> None:
        if n_days < 2:
            raise DataError(f"the rolling Gaussian baseline needs n_days >= 2 returns, got {n_days}.")
        self.n_days = n_days
        self.params = {"n_days": float(n_days)}

    def fit(self, splits=None, closes: pd.Series | None = None) -> RollingGaussian:
        return self

    def predict(self, samples: WindowSet, closes: pd.Series) -> Forecast:
        windows = _windows_of_returns(samples, closes, self.n_days, "rolling Gaussian")
        scale = np.array([np.std(w, ddof=1) for w in windows])
        return _of_quantiles(samples, gaussian_quantiles(np.zeros_like(scale), scale, LEVELS))


def _percent_log_returns(closes: pd.Series) -> pd.Series:
    """``100 * log(close[t] / close[t-1])``, indexed by day t (the first close has none)."""
    return (100.0 * np.log(closes.astype(np.float64))).diff().iloc[1:]


def _arch_model(returns: pd.Series):
    from arch import arch_model

    return arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t")


class Garch:
    """GARCH(1,1) with Student-t innovations and a constant mean on daily log returns in
    percent (`arch`), horizon 1 only.

    ``fit`` estimates (mu, omega, alpha, beta, nu) on the training closes only. ``predict``
    holds them fixed (`ARCHModel.fix`) and filters the conditional variance through the
    closes it is given; the forecast of target day d is arch's one-step forecast made at day
    d - 1, which uses returns up to d - 1. The recursion starts from arch's backcast of the
    first (up to 75) returns before the first target day. Quantiles of the log return are
    ``mu + sigma * t_nu`` with arch's unit-variance Student-t, then ``exp(q / 100) - 1``.
    """

    name = "garch"

    def __init__(self) -> None:
        self.params: dict[str, float] = {}
        self._fitted: np.ndarray | None = None  # arch's parameter vector, in arch's order

    def fit(self, splits, closes: pd.Series) -> Garch:
        from arch.utility.exceptions import ConvergenceWarning, DataScaleWarning

        returns = _percent_log_returns(closes)
        if len(returns) < GARCH_MIN_FIT:
            raise DataError(f"the GARCH baseline needs at least {GARCH_MIN_FIT + 1} training closes, "
                            f"got {len(closes)}; start the data earlier.")
        with warnings.catch_warnings():
            # Percent returns are on the scale arch wants; non-convergence is logged below instead.
            warnings.simplefilter("ignore", DataScaleWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            result = _arch_model(returns).fit(disp="off", show_warning=False)
        if result.convergence_flag != 0:
            log.warning("GARCH fit on %s..%s did not converge (%s); its parameters are used as they are",
                        returns.index[0].date(), returns.index[-1].date(), result.optimization_result.message)
        self._fitted = result.params.to_numpy(np.float64)
        self.params = {ARCH_NAMES[k]: float(v) for k, v in result.params.items()}
        return self

    def predict(self, samples: WindowSet, closes: pd.Series) -> Forecast:
        from arch.univariate import StudentsT
        from arch.utility.exceptions import DataScaleWarning

        if self._fitted is None:
            raise DataError("the GARCH baseline must be fitted before it predicts.")
        origin = _origins(samples, closes)  # origin day p has return position p - 1
        if origin.min() < 1:
            raise DataError("the GARCH baseline needs a daily return before each target day; start the data earlier.")
        returns = _percent_log_returns(closes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataScaleWarning)
            # The fixed sample ends before the first target day, so the backcast sees no target day.
            fixed = _arch_model(returns).fix(self._fitted, last_obs=int(origin.min()))
            forecast = fixed.forecast(horizon=1, start=int(origin.min()) - 1, reindex=False)
        days = closes.index[origin]
        mean = forecast.mean["h.1"].reindex(days).to_numpy(np.float64)
        sigma = np.sqrt(forecast.variance["h.1"].reindex(days).to_numpy(np.float64))
        z = StudentsT().ppf(np.asarray(LEVELS), [self.params["nu"]])  # unit variance
        log_quantiles = mean[:, None] + sigma[:, None] * z[None, :]
        return _of_quantiles(samples, np.expm1(log_quantiles / 100.0))
