"""Forecast accuracy beside persistence, in USD and in returns, and its significance.

Units: ``usd`` compares closes in US dollars; ``return`` compares next-day
returns ``close[t] / close[t-1] - 1`` (so persistence forecasts 0).

MASE divides the MAE by the in-sample MAE of persistence, i.e. the mean
absolute one-day change over the fold's *training* closes (Hyndman & Koehler,
2006). The Diebold-Mariano test compares absolute errors with persistence's,
with the small-sample correction of Harvey, Leybourne & Newbold (1997).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

UNITS = ("usd", "return")


def dm_test(errors_a: np.ndarray, errors_b: np.ndarray, h: int = 1, power: int = 1) -> tuple[float, float]:
    """Diebold-Mariano test of equal accuracy, HLN-corrected; returns (statistic, two-sided p).

    ``errors_*``: (n,) forecast errors on the same days; loss ``|e| ** power``.
    A negative statistic means ``a`` has the smaller loss. The long-run variance
    uses autocovariances up to lag ``h - 1``; the statistic is compared with
    Student's t with n - 1 degrees of freedom.
    """
    d = np.abs(np.asarray(errors_a, float)) ** power - np.abs(np.asarray(errors_b, float)) ** power
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    centred = d - d.mean()
    gamma = [np.sum(centred[k:] * centred[: n - k]) / n for k in range(h)]
    variance = (gamma[0] + 2.0 * sum(gamma[1:])) / n
    if not variance > 0:
        return float("nan"), float("nan")
    dm = d.mean() / math.sqrt(variance)
    correction = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    statistic = dm * correction
    return float(statistic), float(2.0 * stats.t.sf(abs(statistic), df=n - 1))


def direction(actual_move: np.ndarray, forecast_move: np.ndarray) -> dict[str, float]:
    """Share of days whose forecast move from the last close has the actual move's sign, with a
    95% Wilson interval and the binomial p-value against a coin flip (0.5).

    Days without an actual move are left out; a forecast of no move counts as wrong.
    A forecaster that never forecasts a move (persistence) has no direction: NaN.
    """
    keep = actual_move != 0
    hits = int(np.sum(np.sign(forecast_move[keep]) == np.sign(actual_move[keep])))
    n = int(keep.sum())
    if n == 0 or not np.any(forecast_move != 0):
        nan = float("nan")
        return {"direction": nan, "direction_low": nan, "direction_high": nan, "direction_p": nan}
    test = stats.binomtest(hits, n, 0.5)
    ci = test.proportion_ci(0.95, method="wilson")
    return {"direction": hits / n, "direction_low": ci.low, "direction_high": ci.high, "direction_p": test.pvalue}


def in_sample_scale(train_closes: pd.Series, units: str) -> float:
    """MAE of persistence on the training closes, in ``units``: MASE's denominator."""
    closes = train_closes.to_numpy(np.float64)
    moves = np.diff(closes) if units == "usd" else closes[1:] / closes[:-1] - 1.0
    return float(np.mean(np.abs(moves)))


def forecast_metrics(
    actual: np.ndarray, forecast: np.ndarray, last: np.ndarray, scale_usd: float, scale_return: float
) -> dict[str, float]:
    """Metrics of USD ``forecast`` against USD ``actual`` closes; ``last``: the last known close.

    All arrays (n,). Keys ``{units}/{metric}`` for units usd and return: mae,
    rmse, mape (percent, USD only), mase, mae_ratio (to persistence on the same days),
    dm_stat, dm_p (against persistence), and the unit-free direction keys.
    """
    out: dict[str, float] = {}
    views = {
        "usd": (actual, forecast, last, scale_usd),
        "return": (actual / last - 1.0, forecast / last - 1.0, np.zeros_like(last), scale_return),
    }
    for units, (a, f, naive, scale) in views.items():
        err, naive_err = f - a, naive - a
        mae = float(np.mean(np.abs(err)))
        naive_mae = float(np.mean(np.abs(naive_err)))
        stat, p = dm_test(err, naive_err)
        if units == "usd":  # a percentage of a return near 0 means nothing: MAPE in USD only
            out["usd/mape"] = float(np.mean(np.abs(err / a)) * 100.0)
        out.update({
            f"{units}/mae": mae,
            f"{units}/rmse": float(np.sqrt(np.mean(err**2))),
            f"{units}/mase": mae / scale if scale > 0 else float("nan"),
            f"{units}/mae_ratio": mae / naive_mae if naive_mae > 0 else float("nan"),
            f"{units}/dm_stat": stat,
            f"{units}/dm_p": p,
        })
    out.update(direction(actual - last, forecast - last))
    return out
