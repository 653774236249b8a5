"""Every metric of a forecast, defined once, beside persistence on the same days, in ``usd`` and ``return`` units
(``close / reference - 1``). MASE: MAE over persistence's on the training closes (Hyndman & Koehler 2006);
Diebold-Mariano with the HLN (1997) correction; direction accuracy counts a forecast of no move as wrong."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from cryptolstm.forecast import RETURN, USD, Forecast, other_units
from cryptolstm.intervals import INTERVALS, interval_levels, level_index

NAN = float("nan")
DIRECTION = ("direction_accuracy", "direction_low", "direction_high", "direction_p")  # what `direction` gives


def mae(errors: np.ndarray) -> float:
    """Mean absolute error of (n,) errors."""
    return float(np.mean(np.abs(errors)))


def rmse(errors: np.ndarray) -> float:
    """Root mean squared error of (n,) errors."""
    return float(np.sqrt(np.mean(np.square(errors))))


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``; NaN when the baseline is not positive."""
    return value / baseline if baseline > 0 else NAN


def in_sample_scale(train_closes: pd.Series | np.ndarray, units: str) -> float:
    """MAE of persistence on the training closes, in ``units``: MASE's denominator."""
    closes = np.asarray(train_closes, dtype=np.float64)
    moves = np.diff(closes) if units == USD else closes[1:] / closes[:-1] - 1.0
    return float(np.mean(np.abs(moves)))


SIZE, POWER = 0.05, 0.80  # the minimum detectable effect's test: two-sided at 5 %, detected 80 % of the time


def dm_test(errors_a: np.ndarray, errors_b: np.ndarray, h: int = 1, power: int = 1) -> tuple[float, float, float]:
    """Diebold-Mariano test (HLN, t with n - 1 df, lags to ``h - 1``) of equal mean loss ``|e| ** power`` of (n,)
    errors. Returns (statistic, negative when ``a`` is better; two-sided p; minimum detectable effect: the
    difference in mean loss, relative to ``b``'s, detected with probability `POWER` at size `SIZE`)."""
    d = np.abs(np.asarray(errors_a, float)) ** power - np.abs(np.asarray(errors_b, float)) ** power
    n = len(d)
    if n < 2:
        return NAN, NAN, NAN
    centred = d - d.mean()
    gamma = [np.sum(centred[k:] * centred[: n - k]) / n for k in range(h)]
    variance = (gamma[0] + 2.0 * sum(gamma[1:])) / n
    if not variance > 0:
        return NAN, NAN, NAN
    se = math.sqrt(variance) / math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)  # HLN: the corrected error
    statistic = d.mean() / se
    detectable = (stats.t.ppf(1 - SIZE / 2, n - 1) + stats.t.ppf(POWER, n - 1)) * se
    base = float(np.mean(np.abs(np.asarray(errors_b, float)) ** power))
    return float(statistic), float(2.0 * stats.t.sf(abs(statistic), df=n - 1)), ratio(float(detectable), base)


def direction(actual_move: np.ndarray, forecast_move: np.ndarray) -> dict[str, float]:
    """Share of the days the actual close moved whose (n,) forecast move has its sign (NaN for a forecaster
    that never moves), with its 95 % Wilson interval and binomial p against 0.5."""
    actual_move, forecast_move = np.asarray(actual_move), np.asarray(forecast_move)
    keep = actual_move != 0
    n = int(keep.sum())
    if n == 0 or not np.any(forecast_move != 0):
        return dict.fromkeys(DIRECTION, NAN)
    hits = int(np.sum(np.sign(forecast_move[keep]) == np.sign(actual_move[keep])))
    test = stats.binomtest(hits, n, 0.5)
    ci = test.proportion_ci(0.95, method="wilson")
    return dict(zip(DIRECTION, (hits / n, ci.low, ci.high, test.pvalue)))


def score(actual: np.ndarray, forecast: np.ndarray, last: np.ndarray, reference: np.ndarray | None = None,
          scales: dict[str, float] | None = None, h: int = 1) -> dict[str, float]:
    """Every metric of (n,) USD ``forecast`` closes against ``actual`` beside persistence's ``last``, ``h`` days
    ahead: ``{units}/{mae, rmse, persistence_mae, persistence_rmse, mae_ratio, dm_stat, dm_p, dm_mde}`` in both
    units (returns on ``reference``, default ``last``), ``{units}/mase`` where ``scales`` has the in-sample
    scale, ``usd/mape`` (a percentage of a return near 0 means nothing) and the `DIRECTION` keys."""
    actual, forecast, last = (np.asarray(a, dtype=np.float64) for a in (actual, forecast, last))
    reference = last if reference is None else np.asarray(reference, dtype=np.float64)
    views = {USD: (actual, forecast, last), RETURN: tuple(x / reference - 1.0 for x in (actual, forecast, last))}
    out = {"usd/mape": float(np.mean(np.abs(forecast - actual) / actual) * 100.0)}
    for units, (a, f, naive) in views.items():
        err, naive_err = f - a, naive - a
        statistic, p, detectable = dm_test(err, naive_err, h=h)
        accuracy = {"mae": mae(err), "rmse": rmse(err), "persistence_mae": mae(naive_err),
                    "persistence_rmse": rmse(naive_err), "dm_stat": statistic, "dm_p": p, "dm_mde": detectable}
        accuracy["mae_ratio"] = ratio(accuracy["mae"], accuracy["persistence_mae"])
        if scales and scales.get(units) is not None:
            accuracy["mase"] = ratio(accuracy["mae"], scales[units])
        out |= {f"{units}/{k}": v for k, v in accuracy.items()}
    return out | direction(actual - last, forecast - last)


def score_forecast(forecast: Forecast, actual: np.ndarray, scales: dict[str, float] | None = None,
                   h: int = 1) -> dict[str, float]:
    """`score` of horizon ``h`` of a `Forecast` against the (n,) USD ``actual`` closes of that horizon."""
    return score(actual, forecast.close(h), forecast.last_close, forecast.reference, scales, h)


# --- forecast distributions: quantiles on a grid (cryptolstm.intervals) ---------------------

def pinball(quantiles: np.ndarray, actual: np.ndarray, levels) -> np.ndarray:
    """(n, Q) pinball (quantile) losses of (n, Q) ``quantiles`` at ``levels`` for (n,) ``actual``."""
    diff = np.asarray(actual, dtype=np.float64)[:, None] - np.asarray(quantiles, dtype=np.float64)
    tau = np.asarray(levels, dtype=np.float64)[None, :]
    return np.maximum(tau * diff, (tau - 1.0) * diff)


def crps_quantiles(quantiles: np.ndarray, actual: np.ndarray, levels) -> np.ndarray:
    """(n,) CRPS from (n, Q) quantiles: twice the pinball loss integrated over tau by the midpoint rule (the
    outer 1.25 % of each tail weighs nothing: within 0.4 % of a Gaussian's closed form to 3 sd, 1.3 % low at 5,
    where weights tiling (0, 1) would read 0.5-0.8 % high on ordinary days)."""
    edges = np.concatenate([[0.0], np.asarray(levels, dtype=np.float64), [1.0]])
    weights = (edges[2:] - edges[:-2]) / 2.0
    return 2.0 * pinball(quantiles, actual, levels) @ weights


def crps_gaussian(mean: np.ndarray, scale: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """(n,) closed-form CRPS of Normal(mean, scale) forecasts of (n,) ``actual`` (Gneiting et al. 2005)."""
    scale = np.asarray(scale, dtype=np.float64)
    z = (np.asarray(actual, dtype=np.float64) - mean) / scale
    return scale * (z * (2.0 * stats.norm.cdf(z) - 1.0) + 2.0 * stats.norm.pdf(z) - 1.0 / math.sqrt(math.pi))


def interval_score(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, coverage: int) -> np.ndarray:
    """(n,) interval (Winkler) score: the width plus ``2 / alpha`` times how far ``actual`` falls outside."""
    alpha = 1.0 - coverage / 100.0
    return (upper - lower) + 2.0 / alpha * (np.maximum(lower - actual, 0.0) + np.maximum(actual - upper, 0.0))


def distribution_scores(quantiles: np.ndarray, actual: np.ndarray, levels) -> dict[str, np.ndarray | float]:
    """Scores of (n, Q) quantile forecasts of (n,) ``actual`` (the same units): ``coverage_{c}``, ``width_{c}`` and
    ``interval_score_{c}`` per reported interval, mean ``pinball`` and ``crps``, and ``crps_days`` (n,) for DM."""
    actual = np.asarray(actual, dtype=np.float64)
    out: dict[str, np.ndarray | float] = {}
    for c in INTERVALS:
        lower, upper = (quantiles[:, level_index(level, levels)] for level in interval_levels(c))
        out[f"coverage_{c}"] = float(np.mean((actual >= lower) & (actual <= upper)))
        out[f"width_{c}"] = float(np.mean(upper - lower))
        out[f"interval_score_{c}"] = float(np.mean(interval_score(lower, upper, actual, c)))
    out["pinball"] = float(np.mean(pinball(quantiles, actual, levels)))
    out["crps_days"] = crps_quantiles(quantiles, actual, levels)
    out["crps"] = float(np.mean(out["crps_days"]))
    return out


def central_coverage(forecast: Forecast, actual: np.ndarray, h: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(P,) nominal and (P,) observed coverages of the grid's central intervals: a reliability diagram's points."""
    q = _quantiles_in(forecast, USD, h)
    levels, pairs = np.asarray(forecast.levels), len(forecast.levels) // 2
    nominal = np.array([levels[-1 - p] - levels[p] for p in range(pairs)])
    observed = np.array([np.mean((actual >= q[:, p]) & (actual <= q[:, -1 - p])) for p in range(pairs)])
    order = np.argsort(nominal)
    return nominal[order], observed[order]


def _quantiles_in(forecast: Forecast, units: str, h: int) -> np.ndarray:
    """(n, Q) quantiles of horizon ``h`` in ``units`` (USD closes or returns on the reference)."""
    q = forecast.quantiles[:, h - 1, :]
    return forecast.reference[:, None] * (1.0 + q) if units == USD else q


def forecast_distribution_scores(forecast: Forecast, actual: np.ndarray, units: str, h: int = 1) -> dict:
    """`distribution_scores` of horizon ``h`` of a `Forecast` against (n,) USD ``actual`` closes, in ``units``."""
    y = np.asarray(actual, dtype=np.float64)
    y = y if units == USD else y / forecast.reference - 1.0
    return distribution_scores(_quantiles_in(forecast, units, h), y, forecast.levels)


SCORED = (*(f"{k}_{c}" for k in ("coverage", "width", "interval_score") for c in INTERVALS), "pinball", "crps")


def interval_scores(forecast: Forecast, actual: np.ndarray, units: str, baselines: dict[str, Forecast],
                    raw: Forecast | None = None, h: int = 1) -> dict[str, float]:
    """Interval metrics of horizon ``h`` against (n,) USD ``actual`` closes in ``units``, the ``raw`` one's coverage,
    and each of ``baselines`` (name -> `Forecast`) as ``{name}/{metric}``, with CRPS ratio and DM test on daily CRPS."""
    other = other_units(units)
    mine = forecast_distribution_scores(forecast, actual, units, h)
    mine_other = forecast_distribution_scores(forecast, actual, other, h)
    out = {k: float(mine[k]) for k in SCORED}
    out |= {f"{k}_{other}": float(mine_other[k]) for k in ("width_80", "width_95", "interval_score_95", "crps")}
    if raw is not None:
        raw_scores = forecast_distribution_scores(raw, actual, units, h)
        out |= {f"raw_{k}": float(raw_scores[k]) for k in ("coverage_80", "coverage_95", "crps")}
    for name, baseline in baselines.items():
        theirs = forecast_distribution_scores(baseline, actual, units, h)
        out |= {f"{name}/{k}": float(theirs[k]) for k in SCORED}
        out[f"crps_ratio_{name}"] = ratio(mine["crps"], theirs["crps"])
        dm = dm_test(mine["crps_days"], theirs["crps_days"], h=h)
        out |= {f"crps_dm_{k}_{name}": v for k, v in zip(("stat", "p", "mde"), dm)}
    return out


# --- what a run logs: the names a search objective may use ---------------------------------

LOWER_IS_BETTER = ("mae", "rmse", "mape", "mase", "crps", "pinball", "interval_score")


def is_minimised(name: str) -> bool:
    """Whether lower is better for metric ``name`` (``val/h7/mae_ratio``, ``val/crps_ratio_garch``...)."""
    return name.rsplit("/", 1)[-1].startswith(LOWER_IS_BETTER)
