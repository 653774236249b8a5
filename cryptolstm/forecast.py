"""`Forecast`: what every forecaster returns, for the H days after each origin, as returns on a *reference*
close (the last, or the window's first under the seed protocol): the USD close is ``reference * (1 + return)``."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cryptolstm.intervals import check_levels, interval_levels, level_index

USD, RETURN = "usd", "return"  # the units every error is measured in: USD closes, or returns on the reference close
UNITS = {USD: "USD", RETURN: "normalised units"}  # each units' name in prose


def other_units(units: str) -> str:
    """The units beside ``units`` (a run's metrics are in both)."""
    return RETURN if units == USD else USD


@dataclass(frozen=True)
class Forecast:
    """Forecasts of n origins: (n,) ``dates`` of horizon 1, USD ``reference`` and ``last_close`` (persistence's
    forecast); (n, H) point ``returns``; (n, H, Q) ``quantiles`` of them (or None) on ascending ``levels``."""

    dates: np.ndarray
    reference: np.ndarray
    last_close: np.ndarray
    returns: np.ndarray
    quantiles: np.ndarray | None = None
    levels: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        returns = np.asarray(self.returns, dtype=np.float64)
        object.__setattr__(self, "returns", returns[:, None] if returns.ndim == 1 else returns)
        n = len(self.returns)
        if not len(self.dates) == len(self.reference) == len(self.last_close) == n:
            raise ValueError(f"a Forecast needs dates, reference and last_close of {n} origins each")
        if self.quantiles is not None and self.quantiles.shape != (n, self.horizon, len(self.levels)):
            raise ValueError(f"quantiles must be (n, H, Q) = ({n}, {self.horizon}, {len(self.levels)})")

    def __len__(self) -> int:
        return len(self.returns)

    @property
    def horizon(self) -> int:
        """H, the number of days ahead each origin forecasts."""
        return self.returns.shape[1]

    def first(self, horizon: int) -> Forecast:
        """This forecast of the first ``horizon`` days only."""
        if horizon >= self.horizon:
            return self
        quantiles = None if self.quantiles is None else self.quantiles[:, :horizon, :]
        return replace(self, returns=self.returns[:, :horizon], quantiles=quantiles)

    def point(self, h: int = 1) -> np.ndarray:
        """(n,) forecast returns of horizon ``h`` (1-based)."""
        return self.returns[:, h - 1]

    def close(self, h: int = 1) -> np.ndarray:
        """(n,) forecast USD closes of horizon ``h``."""
        return self.reference * (1.0 + self.point(h))

    def with_quantiles(self, quantiles: np.ndarray, levels) -> Forecast:
        """This forecast with (n, H, Q) ``quantiles`` at ``levels`` (ascending, in (0, 1))."""
        return replace(self, quantiles=np.asarray(quantiles, dtype=np.float64), levels=check_levels(levels))

    def bounds(self, coverage: int, h: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(n,) lower and upper USD closes of the central ``coverage`` % interval of horizon ``h``."""
        lo, hi = (level_index(level, self.levels) for level in interval_levels(coverage))
        q = self.quantiles[:, h - 1, :]
        return self.reference * (1.0 + q[:, lo]), self.reference * (1.0 + q[:, hi])

    @property
    def has_intervals(self) -> bool:
        return self.quantiles is not None

    @classmethod
    def mean_of(cls, forecasts) -> Forecast:
        """The mean of several forecasts of the same samples: of their returns and each quantile (Vincentization)."""
        first = forecasts[0]
        mean = cls(first.dates, first.reference, first.last_close, np.mean([f.returns for f in forecasts], axis=0))
        if first.quantiles is None:
            return mean
        return mean.with_quantiles(np.mean([f.quantiles for f in forecasts], axis=0), first.levels)

    @classmethod
    def of_samples(cls, samples, returns: np.ndarray) -> Forecast:
        """The forecast of `Samples` whose (n,) or (n, H) ``returns`` are relative to their ``ref_close``."""
        return cls(samples.dates, samples.ref_close, samples.last_close(), returns)

    @classmethod
    def of_closes(cls, samples, closes_usd: np.ndarray) -> Forecast:
        """The forecast of ``samples`` that predicts the (n,) or (n, H) USD ``closes_usd``."""
        closes = np.asarray(closes_usd, dtype=np.float64)
        reference = samples.ref_close if closes.ndim == 1 else samples.ref_close[:, None]
        return cls.of_samples(samples, closes / reference - 1.0)
