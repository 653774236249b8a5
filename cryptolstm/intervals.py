"""Forecast distributions as quantiles: the grid every forecaster fills, quantiles of
parametric forecasts, and split conformal calibration of the intervals.

Every probabilistic forecast in the harness is a set of quantiles of the target
return on one grid, `LEVELS` (0.025, 0.05, ..., 0.975: 39 levels spaced 1/40), so
that every forecaster is scored the same way and the 80 % and 95 % central
intervals are two pairs of its levels.

Calibration (split conformal, conformalised quantile regression, Romano et al.
2019): on calibration days, for each symmetric pair of levels (tau, 1 - tau), the
score of a day is how far its actual return lies outside that interval,
``max(lo - y, y - hi)`` (negative inside). The pair is widened (or narrowed) by the
``ceil((n + 1)(1 - alpha)) / n`` empirical quantile of the scores, alpha = 2 tau,
which gives coverage of at least 1 - alpha on exchangeable later days. The
median is left alone; the calibrated quantiles are sorted per day so they never
cross.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEVELS: tuple[float, ...] = tuple(round(k / 40, 4) for k in range(1, 40))
INTERVALS: tuple[int, ...] = (80, 95)  # central interval coverages in percent that are reported


_NORMAL = NormalDist()


def interval_levels(coverage: int) -> tuple[float, float]:
    """(lower, upper) quantile levels of the central ``coverage`` % interval, e.g. 80 -> (0.1, 0.9)."""
    tail = (100 - coverage) / 200
    return round(tail, 4), round(1 - tail, 4)


def level_index(level: float, levels: tuple[float, ...] = LEVELS) -> int:
    """Position of ``level`` in ``levels``; ``ValueError`` if it is not on the grid."""
    for i, value in enumerate(levels):
        if math.isclose(value, level, abs_tol=1e-9):
            return i
    raise ValueError(f"quantile level {level} is not on the grid {levels}")


def check_levels(levels) -> tuple[float, ...]:
    """``levels`` as an ascending tuple of distinct values in (0, 1); ``ValueError`` naming the bad one."""
    values = tuple(float(v) for v in levels)
    for v in values:
        if not 0.0 < v < 1.0:
            raise ValueError(f"a quantile level must be in (0, 1), got {v}")
    if list(values) != sorted(set(values)):
        raise ValueError(f"quantile levels must be distinct and ascending, got {values}")
    return values


def gaussian_quantiles(mean: np.ndarray, scale: np.ndarray, levels=LEVELS) -> np.ndarray:
    """(..., Q) quantiles of Normal(``mean``, ``scale``) at ``levels``; ``mean``, ``scale`` (...)."""
    z = np.array([_NORMAL.inv_cdf(float(p)) for p in levels])  # the standard library's: no scipy to load
    return np.asarray(mean)[..., None] + np.asarray(scale)[..., None] * z


def empirical_quantiles(samples: np.ndarray, levels=LEVELS) -> np.ndarray:
    """(Q,) quantiles of the (m,) ``samples`` at ``levels`` (linear interpolation, numpy's default)."""
    return np.quantile(np.asarray(samples, dtype=np.float64), np.asarray(levels))


@dataclass(frozen=True)
class Calibration:
    """Conformal margins of each symmetric pair of levels, per horizon.

    levels:  (Q,) the quantile grid the margins belong to
    margins: (H, P) return units added to the upper and subtracted from the lower quantile
             of pair p (pair p = levels[p] and levels[Q - 1 - p]); P = Q // 2
    days:    the number of calibration days
    """

    levels: tuple[float, ...]
    margins: np.ndarray
    days: int

    def to_dict(self) -> dict:
        """Plain JSON-able form (saved beside a model)."""
        return {"levels": list(self.levels), "margins": self.margins.tolist(), "days": self.days}

    @classmethod
    def from_dict(cls, values: dict) -> Calibration:
        return cls(tuple(values["levels"]), np.asarray(values["margins"], dtype=np.float64), int(values["days"]))

    def apply(self, quantiles: np.ndarray) -> np.ndarray:
        """(n, H, Q) raw quantiles -> (n, H, Q) calibrated quantiles, sorted along Q."""
        q = np.array(quantiles, dtype=np.float64, copy=True)
        pairs = self.margins.shape[1]
        lower = np.arange(pairs)
        upper = q.shape[2] - 1 - lower
        q[:, :, lower] -= self.margins[None, :, :]
        q[:, :, upper] += self.margins[None, :, :]
        return np.sort(q, axis=2)


def conformal_margin(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile of (n,) nonconformity ``scores`` for miscoverage ``alpha``:
    the ``ceil((n + 1)(1 - alpha))``-th smallest score. With fewer than ``1 / alpha - 1`` days
    that rank is past the end and the largest score is used (the guarantee then does not hold);
    with no days, no margin."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    if n == 0:
        return 0.0
    rank = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    return float(scores[min(max(rank, 1), n) - 1])


def fit_conformal(quantiles: np.ndarray, actual: np.ndarray, levels=LEVELS) -> Calibration:
    """Margins that calibrate (n, H, Q) quantile forecasts of (n, H) actual returns (module docstring).

    Needs a symmetric grid (levels[p] + levels[Q-1-p] = 1)."""
    quantiles, actual = np.asarray(quantiles, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    n, horizon, q = quantiles.shape
    if actual.shape != (n, horizon):
        raise ValueError(f"actual must be (n, H) = ({n}, {horizon}), got {actual.shape}")
    margins = np.zeros((horizon, q // 2))
    for p in range(q // 2):
        lo, hi = levels[p], levels[q - 1 - p]
        if not math.isclose(lo + hi, 1.0, abs_tol=1e-9):
            raise ValueError(f"levels {lo} and {hi} are not a symmetric pair")
        for h in range(horizon):
            scores = np.maximum(quantiles[:, h, p] - actual[:, h], actual[:, h] - quantiles[:, h, q - 1 - p])
            margins[h, p] = conformal_margin(scores, alpha=1 - (hi - lo))
    return Calibration(tuple(levels), margins, n)
