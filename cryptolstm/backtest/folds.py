"""Expanding-window walk-forward folds.

Fold k tests the target days ``[first_k, last_k]`` (consecutive calendar blocks of
``fold_months`` months from ``start`` to ``end``, so no target day is in two
folds). Its model and every fitted baseline see only the days *before*
``first_k``: those days' samples are cut into a training part and a validation
tail (for early stopping) in the proportion ``train_frac : val_frac`` of the run's
config. A test window's inputs are the days before its target, as they would
be known when the forecast is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.splits import Splits
from cryptolstm.windowing import target_windows


@dataclass(frozen=True)
class Fold:
    """One fold: its number (0-based) and the first and last target day it tests."""

    index: int
    first: pd.Timestamp
    last: pd.Timestamp

    @property
    def label(self) -> str:
        """``2019-01-01..2019-03-31``: the fold's first and last target day."""
        return f"{self.first:%Y-%m-%d}..{self.last:%Y-%m-%d}"


def _date(name: str, value: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(str(value)).normalize()
    except ValueError:
        raise ConfigError(f"{name} must be a date written YYYY-MM-DD, got {value!r}.") from None


def make_folds(start: str, end: str, fold_months: int) -> list[Fold]:
    """Consecutive folds of ``fold_months`` calendar months covering ``start..end`` (inclusive);
    the last fold ends at ``end`` and may be shorter."""
    first, last = _date("start", start), _date("end", end)
    if fold_months < 1:
        raise ConfigError(f"fold_months must be an integer >= 1, got {fold_months}.")
    if last < first:
        raise ConfigError(f"end ({end}) must not be before start ({start}).")
    folds, begin = [], first
    while begin <= last:
        stop = min(begin + pd.DateOffset(months=fold_months) - pd.Timedelta(days=1), last)
        folds.append(Fold(len(folds), begin, stop))
        begin = stop + pd.Timedelta(days=1)
    return folds


def fold_splits(frame: pd.DataFrame, cfg: RunConfig, fold: Fold, coins: tuple[str, ...] = COINS) -> Splits:
    """The fold's samples: train and a validation tail from the days before ``fold.first``,
    test on the origins whose every target day (``cfg.horizon`` of them) is in ``fold.first..fold.last``.

    Only ``frame``'s rows up to ``fold.last`` are read at all; train and validation samples
    (inputs and all targets) end before ``fold.first``, and the H-1 windows between train and
    validation, whose targets would cross into the validation days, are dropped.
    """
    h = cfg.horizon
    visible = frame.loc[: fold.last]
    samples = target_windows(visible, cfg.coin, coins, cfg.window_len, cfg.rules.reference, horizon=h)
    dates = pd.DatetimeIndex(samples.dates)
    before = int(np.searchsorted(dates, fold.first - pd.Timedelta(days=h - 1)))  # every target before the fold
    test_start = int(np.searchsorted(dates, fold.first))
    val_share = cfg.val_frac / (cfg.train_frac + cfg.val_frac)
    n_train = int(round(before * (1.0 - val_share)))
    val_start = n_train + h - 1
    if n_train < 1 or before - val_start < 1 or test_start == len(samples):
        raise DataError(
            f"fold {fold.label} has {n_train} training, {max(0, before - val_start)} validation and "
            f"{len(samples) - test_start} test sample(s) with window_len {cfg.window_len} and horizon {h}; it "
            f"needs at least one of each: start the backtest later or the data (merge_date) earlier."
        )
    return Splits(
        train=samples.take(slice(0, n_train)),
        val=samples.take(slice(val_start, before)),
        test=samples.take(slice(test_start, None)),
    )
