"""The interval baselines every distribution is scored beside: quantiles of days t + 1..t + H from closes up to
origin t only; ``compared``: a baseline's place among those a summary sets the network beside (0: none)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptolstm.errors import DataError
from cryptolstm.forecast import Forecast
from cryptolstm.garch import arch_model, fit_garch, percent_log_returns
from cryptolstm.intervals import LEVELS, empirical_quantiles, gaussian_quantiles
from cryptolstm.models.base import History
from cryptolstm.models.baselines import Unfitted, origins_in, quantiles_forecast
from cryptolstm.models.har import Har
from cryptolstm.windowing import Samples

MIN_DAYS = 30  # fewest past daily returns a rolling distribution is estimated from
SIMULATIONS = 2000  # GARCH paths per origin for the days after the first (an even number: antithetic pairs)
SIMULATION_BLOCK = 100  # origins simulated at once
SEED = 2018  # of the GARCH shocks: the same forecasts on every run


def _returns_before(samples: Samples, closes: pd.Series, n_days: int, name: str, k: int = 1) -> list[np.ndarray]:
    """Per sample, the k-day simple returns of the last ``n_days`` days up to its origin (>= min(n_days, MIN_DAYS))."""
    origin = origins_in(samples, closes)
    values = closes.to_numpy(np.float64)
    returns = values[k:] / values[:-k] - 1.0  # returns[j] is the k-day return of day j + k
    needed = min(n_days, MIN_DAYS)
    if origin.min() - (k - 1) < needed:
        first = pd.Timestamp(samples.dates[int(np.argmin(origin))]).date()
        what = "daily" if k == 1 else f"{k}-day"
        raise DataError(f"the {name} baseline needs {needed} {what} returns before each target day "
                        f"but {first} has {origin.min() - (k - 1)}; start the data earlier.")
    # Day s = j + k runs over max(k, p - n_days + 1)..p, the origin p included.
    return [returns[max(0, p - n_days + 1 - k) : p - k + 1] for p in origin]


class Empirical(Unfitted):
    """Random walk with the empirical distribution of the k-day returns of the last ``n_days`` days; nothing fitted."""

    name = "empirical"
    display = "empirical"
    compared = 3

    def __init__(self, n_days: int = 365) -> None:
        if n_days < 2:
            raise DataError(f"the empirical baseline needs n_days >= 2 returns, got {n_days}.")
        self.n_days = n_days
        self.params = {"n_days": float(n_days)}

    def predict(self, samples: Samples, history: History) -> Forecast:
        per_k = [[empirical_quantiles(w) for w in _returns_before(samples, history.closes, self.n_days, self.name, k)]
                 for k in range(1, samples.horizon + 1)]
        return quantiles_forecast(samples, np.asarray(per_k).transpose(1, 0, 2))  # (H, n, Q) -> (n, H, Q)


class RollingGaussian(Unfitted):
    """Persistence ± a Gaussian of sd sqrt(k) times that (ddof 1) of the last ``n_days`` daily returns; no fit."""

    name = "rolling_gaussian"
    display = "rolling Gaussian"
    compared = 0

    def __init__(self, n_days: int = 30) -> None:
        if n_days < 2:
            raise DataError(f"the rolling Gaussian baseline needs n_days >= 2 returns, got {n_days}.")
        self.n_days = n_days
        self.params = {"n_days": float(n_days)}

    def predict(self, samples: Samples, history: History) -> Forecast:
        windows = _returns_before(samples, history.closes, self.n_days, "rolling Gaussian")
        scale = np.array([np.std(w, ddof=1) for w in windows])[:, None] * np.sqrt(np.arange(1, samples.horizon + 1))
        return quantiles_forecast(samples, gaussian_quantiles(np.zeros_like(scale), scale, LEVELS))


class Garch:
    """GARCH(1,1)-t fitted on the training closes, then held fixed: horizon 1's quantiles are exact; later ones (no
    Student-t) come from `SIMULATIONS` paths per origin, the same antithetic shocks (`SEED`) for every origin."""

    name = "garch"
    display = "GARCH"
    compared = 1

    def __init__(self) -> None:
        self.params: dict[str, float] = {}
        self._fitted: np.ndarray | None = None  # arch's parameter vector, in arch's order

    def fit(self, history: History) -> Garch:
        self._fitted, self.params = fit_garch(history.closes)
        return self

    def predict(self, samples: Samples, history: History) -> Forecast:
        closes = history.closes
        if self._fitted is None:
            raise DataError("the GARCH baseline must be fitted before it predicts.")
        origin = origins_in(samples, closes)  # origin day p has return position p - 1
        if origin.min() < 1:
            raise DataError("the GARCH baseline needs a daily return before each target day; start the data earlier.")
        returns = percent_log_returns(closes)
        log_quantiles = self._one_day(origin, returns)[:, None, :]
        if samples.horizon > 1:
            later = self.simulated(origin, returns, samples.horizon)[:, 1:, :]
            log_quantiles = np.concatenate([log_quantiles, later], axis=1)
        return quantiles_forecast(samples, np.expm1(log_quantiles / 100.0))

    def _one_day(self, origin: np.ndarray, returns: pd.Series) -> np.ndarray:
        """(n, Q) exact quantiles of the next day's percent log return of each origin."""
        from arch.univariate import StudentsT

        # The fixed sample ends before the first target day, so the backcast sees no target day.
        fixed = arch_model(returns).fix(self._fitted, last_obs=int(origin.min()))
        forecast = fixed.forecast(horizon=1, start=int(origin.min()) - 1, reindex=False)
        days = returns.index[origin - 1]
        mean = forecast.mean["h.1"].reindex(days).to_numpy(np.float64)
        sigma = np.sqrt(forecast.variance["h.1"].reindex(days).to_numpy(np.float64))
        z = StudentsT().ppf(np.asarray(LEVELS), [self.params["nu"]])  # unit variance
        return mean[:, None] + sigma[:, None] * z[None, :]

    def simulated(self, origin: np.ndarray, returns: pd.Series, horizon: int) -> np.ndarray:
        """(n, H, Q) simulated quantiles of the percent log return from each origin to each of the H days after it."""
        nu = self.params["nu"]  # antithetic unit-variance Student-t shocks: the second half is minus the first
        half = np.random.default_rng(SEED).standard_t(nu, size=(SIMULATIONS // 2, horizon)) / np.sqrt(nu / (nu - 2.0))
        shocks = np.concatenate([half, -half])
        quantiles = np.empty((len(origin), horizon, len(LEVELS)))
        positions = np.unique(origin)
        # In blocks of origins, to bound the (origins, SIMULATIONS, H) paths arch keeps.
        for block in np.array_split(positions, -(-len(positions) // SIMULATION_BLOCK)):
            lo, hi = int(block[0]), int(block[-1])
            # Returns up to the block's last origin; the same fixed sample (and backcast) in every block.
            fixed = arch_model(returns.iloc[:hi]).fix(self._fitted, last_obs=int(origin.min()))
            forecast = fixed.forecast(horizon=horizon, start=lo - 1, method="simulation", simulations=SIMULATIONS,
                                      rng=lambda size: shocks, reindex=False)
            paths = np.cumsum(forecast.simulations.values, axis=2)  # (hi - lo + 1, SIMULATIONS, H)
            rows = np.flatnonzero((origin >= lo) & (origin <= hi))
            # (Q, m, H) -> (m, H, Q)
            quantiles[rows] = np.quantile(paths[origin[rows] - lo], LEVELS, axis=1).transpose(1, 2, 0)
        return quantiles


class Combination:
    """The equal-weight quantile average (Vincentization) of `Garch` and `Har`, each fitted on the same days."""

    name = "combination"
    display = "GARCH+HAR"
    compared = 4

    def __init__(self) -> None:
        self.parts = (Garch(), Har())
        self.params: dict[str, float] = {}

    def fit(self, history: History) -> Combination:
        self.params = {f"{part.name}.{k}": v for part in self.parts for k, v in part.fit(history).params.items()}
        return self

    def predict(self, samples: Samples, history: History) -> Forecast:
        return Forecast.mean_of([part.predict(samples, history) for part in self.parts])


INTERVAL = (Garch, Empirical, RollingGaussian, Har, Combination)  # in the tables' order
