"""Chronological periods of target days (no shuffled split exists): a window belongs to a `Period` only if
all its target days lie inside it, so no later price can change a fit's data. ``honest`` cuts the days
into train / val / test; ``seed`` makes the 2018 notebook's positional blocks; `folds` walk forward."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cryptolstm.errors import ConfigError

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Period:
    """Target days ``first..last`` (inclusive), named ``name`` (``val``, ``test``, a fold's number,
    ``live``); no window of it starts before ``inputs_from`` when that is given."""

    name: str
    first: pd.Timestamp
    last: pd.Timestamp
    inputs_from: pd.Timestamp | None = None

    @property
    def label(self) -> str:
        """``2019-01-01..2019-03-31``: the first and last target day."""
        return f"{self.first:%Y-%m-%d}..{self.last:%Y-%m-%d}"

    @property
    def before(self) -> pd.Timestamp:
        """The last day before the period: the last one a fit for it may read."""
        return self.first - DAY


def honest_periods(days: pd.DatetimeIndex, train_frac: float, val_frac: float) -> dict[str, Period]:
    """``train``, ``val`` and (when ``train_frac + val_frac < 1``) ``test`` periods over ``days``, cut on
    the days, not samples, so every ``window_len`` of a search is scored on the same days."""
    n = len(days)
    first_val = int(train_frac * n)
    first_test = int(round(train_frac + val_frac, 10) * n)
    periods = {"train": Period("train", days[0], days[max(first_val, 1) - 1])}
    periods["val"] = Period("val", days[min(first_val, n - 1)], days[min(first_test, n) - 1])
    if first_test < n:
        periods["test"] = Period("test", days[first_test], days[-1])
    return periods


def seed_periods(days: pd.DatetimeIndex, train_frac: float) -> dict[str, Period]:
    """The notebook's blocks: the first ``int(train_frac * days)`` days train, the rest validate (and
    are its test set: the flaw this protocol reproduces), each block's windows built inside it."""
    cut = max(int(train_frac * len(days)), 1)
    return {"train": Period("train", days[0], days[cut - 1], inputs_from=days[0]),
            "val": Period("val", days[min(cut, len(days) - 1)], days[-1], inputs_from=days[min(cut, len(days) - 1)])}


def _date(name: str, value: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(str(value)).normalize()
    except ValueError:
        raise ConfigError(f"{name} must be a date written YYYY-MM-DD, got {value!r}.") from None


def folds(start: str, end: str, fold_months: int) -> list[Period]:
    """Consecutive folds of ``fold_months`` calendar months covering ``start..end`` (inclusive),
    named ``0``, ``1``...; the last fold ends at ``end`` and may be shorter."""
    first, last = _date("start", start), _date("end", end)
    if fold_months < 1:
        raise ConfigError(f"fold_months must be an integer >= 1, got {fold_months}.")
    if last < first:
        raise ConfigError(f"end ({end}) must not be before start ({start}).")
    out, begin = [], first
    while begin <= last:
        stop = min(begin + pd.DateOffset(months=fold_months) - DAY, last)
        out.append(Period(str(len(out)), begin, stop))
        begin = stop + DAY
    return out


def pooled(periods: list[Period], name: str = "all") -> Period:
    """One period spanning ``periods`` (the pooled days of a backtest)."""
    return Period(name, periods[0].first, periods[-1].last)
