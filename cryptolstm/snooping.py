"""Tests for the best of many forecasters tried: the model confidence set (Hansen, Lunde and Nason 2011)
and Hansen's (2005) test of superior predictive ability, both with ``arch``'s stationary bootstrap, its
block length chosen from the losses (Politis and White)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SIZE = 0.10  # the model confidence set's level: 90 %
REPS = 1000  # bootstrap replications
SEED = 0  # the bootstrap's seed: the same losses give the same set and p value


@dataclass(frozen=True)
class ConfidenceSet:
    """The forecasters the losses cannot tell from the best (``included``) and each one's MCS p value."""

    included: tuple[str, ...]
    pvalues: dict[str, float]
    block: int
    size: float
    days: int


@dataclass(frozen=True)
class SuperiorAbility:
    """Hansen's SPA test of ``benchmark`` against ``models`` forecasters: the consistent ``pvalue`` (small:
    the ``best``, lowest mean loss, beats it beyond what trying so many explains) and its loss ratio."""

    pvalue: float
    best: str
    best_ratio: float
    benchmark: str
    models: int
    block: int
    days: int


def row_losses(rows: pd.DataFrame, loss: str) -> np.ndarray:
    """(n,) per-day losses of (n) rows of a table of forecasts (`cryptolstm.forecasting.Forecasts`):
    ``mae`` the absolute error of the forecast close (USD), ``crps`` the CRPS of its quantiles
    (returns), ``persistence`` the absolute error of the last close (USD)."""
    from cryptolstm.forecasting import QUANTILE_COLUMNS
    from cryptolstm.intervals import LEVELS
    from cryptolstm.metrics import crps_quantiles

    actual = rows["actual"].to_numpy(float)
    if loss == "crps":
        returns = actual / rows["reference"].to_numpy(float) - 1.0
        return crps_quantiles(rows[QUANTILE_COLUMNS].to_numpy(float), returns, LEVELS)
    predicted = rows["last_close"] if loss == "persistence" else rows["reference"] * (1.0 + rows["forecast"])
    return np.abs(predicted.to_numpy(float) - actual)


def block_length(differences: pd.DataFrame) -> int:
    """The stationary bootstrap's mean block length for (days, k) loss ``differences``: the median of
    Politis and White's optimal lengths, rounded up, at least 1."""
    from arch.bootstrap import optimal_block_length

    varying = differences.loc[:, differences.std() > 0]
    if varying.empty:
        return 1
    lengths = optimal_block_length(varying.to_numpy(float))["stationary"]
    return max(1, math.ceil(float(np.median(lengths))))


def _clean(losses: pd.DataFrame) -> pd.DataFrame:
    """The days on which every forecaster has a finite loss."""
    return losses.replace([np.inf, -np.inf], np.nan).dropna()


def confidence_set(losses: pd.DataFrame, size: float = SIZE, reps: int = REPS, seed: int = SEED) -> ConfidenceSet:
    """The model confidence set of (days, forecasters) ``losses`` at level ``1 - size``; forecasters with
    the very same losses (an interval baseline's median and persistence) are tested once."""
    from arch.bootstrap import MCS

    losses = _clean(losses)
    same = {name: next(first for first in losses.columns if losses[first].equals(losses[name])) for name in losses}
    unique = losses[list(dict.fromkeys(same.values()))]
    block = block_length(unique.sub(unique.mean(axis=1), axis=0))
    if unique.shape[1] == 1:  # nothing to tell apart
        return ConfidenceSet(tuple(map(str, losses.columns)), {str(n): 1.0 for n in losses}, block, size, len(losses))
    test = MCS(unique, size=size, reps=reps, block_size=block, method="R", bootstrap="stationary", seed=seed)
    test.compute()
    tested = test.pvalues["Pvalue"]
    pvalues = {str(name): float(tested[same[name]]) for name in losses.columns}
    included = tuple(str(name) for name in losses.columns if same[name] in set(test.included))
    return ConfidenceSet(included, pvalues, block, size, len(losses))


def superior_ability(benchmark: pd.Series, models: pd.DataFrame, reps: int = REPS, seed: int = SEED) -> SuperiorAbility:
    """Hansen's SPA p value of "no column of (days, k) ``models`` losses beats the ``benchmark``
    losses (days,)" (lower is better; the days both hold)."""
    from arch.bootstrap import SPA

    both = _clean(pd.concat([benchmark.rename("__benchmark__"), models], axis=1))
    base, rest = both.pop("__benchmark__"), both
    block = block_length(rest.rsub(base, axis=0))
    test = SPA(base, rest, block_size=block, reps=reps, bootstrap="stationary", studentize=True, seed=seed)
    test.compute()
    means = rest.mean()
    best = str(means.idxmin())
    return SuperiorAbility(float(test.pvalues["consistent"]), best, float(means[best] / base.mean()),
                           str(benchmark.name), rest.shape[1], block, len(rest))
