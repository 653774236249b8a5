"""Forecast distributions as quantiles of the return on one grid, `LEVELS` (every forecaster scored alike), and
their split conformal calibration (conformalised quantile regression, Romano et al. 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEVELS: tuple[float, ...] = tuple(round(k / 40, 4) for k in range(1, 40))
INTERVALS: tuple[int, ...] = (80, 95)  # central interval coverages in percent that are reported


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
    z = np.array([NormalDist().inv_cdf(float(p)) for p in levels])  # the standard library's: no scipy to load
    return np.asarray(mean)[..., None] + np.asarray(scale)[..., None] * z


def empirical_quantiles(samples: np.ndarray, levels=LEVELS) -> np.ndarray:
    """(Q,) quantiles of the (m,) ``samples`` at ``levels`` (linear interpolation, numpy's default)."""
    return np.quantile(np.asarray(samples, dtype=np.float64), np.asarray(levels))


@dataclass(frozen=True)
class Calibration:
    """Conformal margins on the grid ``levels``: (H, P) ``margins`` in returns, added to the upper and subtracted
    from the lower quantile of pair p (levels p and Q - 1 - p; P = Q // 2), fitted on ``days`` days."""

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
        lower = np.arange(self.margins.shape[1])
        q[:, :, lower] -= self.margins[None, :, :]
        q[:, :, q.shape[2] - 1 - lower] += self.margins[None, :, :]
        return np.sort(q, axis=2)  # never crossing


def conformal_margin(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of (n,) nonconformity ``scores`` (coverage >= 1 - alpha on
    exchangeable days); the largest where that rank is past the end (no guarantee then), 0 with no days."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    if n == 0:
        return 0.0
    rank = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    return float(scores[min(max(rank, 1), n) - 1])


def fit_conformal(quantiles: np.ndarray, actual: np.ndarray, levels=LEVELS) -> Calibration:
    """Margins that calibrate (n, H, Q) quantile forecasts of (n, H) actual returns on a symmetric grid: each
    pair's score of a day is how far its actual return lies outside, ``max(lo - y, y - hi)``."""
    quantiles, actual = np.asarray(quantiles, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    n, horizon, q = quantiles.shape
    if actual.shape != (n, horizon):
        raise ValueError(f"actual must be (n, H) = ({n}, {horizon}), got {actual.shape}")
    margins = np.zeros((horizon, q // 2))
    for p in range(q // 2):
        lo, hi = levels[p], levels[q - 1 - p]
        if not math.isclose(lo + hi, 1.0, abs_tol=1e-9):
            raise ValueError(f"levels {lo} and {hi} are not a symmetric pair")
        scores = np.maximum(quantiles[:, :, p] - actual, actual - quantiles[:, :, q - 1 - p])  # (n, H)
        margins[:, p] = [conformal_margin(scores[:, h], alpha=1 - (hi - lo)) for h in range(horizon)]
    return Calibration(tuple(levels), margins, n)
