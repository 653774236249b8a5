"""GARCH(1,1)-t on daily log returns in percent (`arch`), fitted once and filtered forward with its parameters
held fixed; shared by the GARCH interval baseline and the ``garch_vol`` feature, so both see the same model."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from cryptolstm.errors import DataError

log = logging.getLogger(__name__)

GARCH_MIN_FIT = 100  # fewest training returns GARCH(1,1)-t is fitted on


def percent_log_returns(closes: pd.Series) -> pd.Series:
    """``100 * log(close[t] / close[t-1])``, indexed by day t (the first close has none)."""
    return (100.0 * np.log(closes.astype(np.float64))).diff().iloc[1:]


def arch_model(returns: pd.Series):
    """arch's GARCH(1,1) with a constant mean and Student-t innovations on ``returns`` (percent)."""
    from arch import arch_model as make

    return make(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t")


def fit_garch(closes: pd.Series) -> tuple[np.ndarray, dict[str, float]]:
    """(arch's parameter vector, ``{mu, omega, alpha, beta, nu}``) fitted on the daily ``closes`` (`DataError`
    with fewer than `GARCH_MIN_FIT` returns); a fit that does not converge is logged and used as it is."""
    from arch.utility.exceptions import ConvergenceWarning, DataScaleWarning

    returns = percent_log_returns(closes)
    if len(returns) < GARCH_MIN_FIT:
        raise DataError(f"GARCH(1,1) needs at least {GARCH_MIN_FIT + 1} training closes, "
                        f"got {len(closes)}; start the data earlier.")
    with warnings.catch_warnings():
        # Percent returns are on the scale arch wants; non-convergence is logged below instead.
        warnings.simplefilter("ignore", DataScaleWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = arch_model(returns).fit(disp="off", show_warning=False)
    if result.convergence_flag != 0:
        log.warning("GARCH fit on %s..%s did not converge (%s); its parameters are used as they are",
                    returns.index[0].date(), returns.index[-1].date(), result.optimization_result.message)
    return result.params.to_numpy(np.float64), {k.split("[")[0]: float(v) for k, v in result.params.items()}


def next_day_volatility(params: np.ndarray, closes: pd.Series) -> pd.Series:
    """GARCH's forecast on each day t of ``closes`` of the sd of day t + 1's log return (a fraction; NaN on the
    first day), ``params`` held fixed; from arch's backcast (the first 75 returns) and returns up to t only."""
    returns = percent_log_returns(closes)
    forecast = arch_model(returns).fix(params).forecast(horizon=1, start=0, reindex=False)
    sigma = np.sqrt(forecast.variance["h.1"].to_numpy(np.float64)) / 100.0
    return pd.Series(sigma, index=returns.index).reindex(closes.index)
