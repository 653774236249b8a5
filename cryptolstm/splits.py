"""Chronological splits. There is no shuffled split in this package.

``seed``: the 2018 notebook's 80/20 positional cut of the *days*, windows built
inside each block, the second block used as validation (and it is also the
notebook's test set: that is the flaw this protocol reproduces).

``honest``: the days are cut into train / val / test (``train_frac``, ``val_frac``,
rest) and each sample goes to the split of its target day. A sample's inputs end the day before its
target, so every train input and target lies on or before the last train
target day: changing any later price cannot change the training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from typing import TYPE_CHECKING

from cryptolstm.config import COINS
from cryptolstm.errors import DataError
from cryptolstm.windowing import WindowSet, target_windows

BLOCK = "a block of the seed split"

if TYPE_CHECKING:
    from cryptolstm.config import RunConfig


@dataclass(frozen=True)
class Splits:
    """Samples per split; ``test`` is None under the seed protocol."""

    train: WindowSet
    val: WindowSet
    test: WindowSet | None

    def items(self) -> list[tuple[str, WindowSet]]:
        """``[(split name, samples)]`` for the splits that exist."""
        pairs = [("train", self.train), ("val", self.val), ("test", self.test)]
        return [(name, ws) for name, ws in pairs if ws is not None]


def seed_split(frame: pd.DataFrame, cfg: RunConfig, coins: tuple[str, ...] = COINS) -> Splits:
    """The notebook's split: the first ``int(train_frac * days)`` days train, the rest validate."""
    cut = int(cfg.train_frac * len(frame))
    return Splits(
        train=target_windows(frame.iloc[:cut], cfg.coin, coins, cfg.window_len, cfg.rules.reference, BLOCK,
                             cfg.horizon),
        val=target_windows(frame.iloc[cut:], cfg.coin, coins, cfg.window_len, cfg.rules.reference, BLOCK,
                           cfg.horizon),
        test=None,
    )


def honest_split(frame: pd.DataFrame, cfg: RunConfig, coins: tuple[str, ...] = COINS) -> Splits:
    """Train / val / test by target day, in that order, with no overlap.

    The boundaries are cut on the *days* of ``frame`` (``train_frac``, ``val_frac``
    of them), not on samples, so every ``window_len`` gets the same validation and
    test days and trials of a search are compared on the same days (``test_frac`` 0: no
    test split, the validation days run to the end). A window belongs
    to a split only if all of its ``horizon`` target days do: the last H-1 windows
    before a boundary belong to none.
    """
    h = cfg.horizon
    samples = target_windows(frame, cfg.coin, coins, cfg.window_len, cfg.rules.reference, horizon=h)
    days = len(frame)
    first_target = np.arange(cfg.window_len, cfg.window_len + len(samples))  # position in frame of target day 1
    first_val = int(cfg.train_frac * days)
    first_test = int(round(cfg.train_frac + cfg.val_frac, 10) * days)
    # a window with first target at p has its last at p + h - 1
    train_end, val_start, val_end, test_start = np.searchsorted(
        first_target, [first_val - h + 1, first_val, first_test - h + 1, first_test])
    has_test = cfg.test_frac > 0
    if min(train_end, val_end - val_start, len(samples) - test_start if has_test else 1) < 1:
        raise DataError(
            f"{days} days are too few for a {cfg.train_frac}/{cfg.val_frac}/{cfg.test_frac} split "
            f"with window_len {cfg.window_len} and horizon {h}; widen merge_date..end_date."
        )
    return Splits(train=samples.take(slice(0, train_end)), val=samples.take(slice(val_start, val_end)),
                  test=samples.take(slice(test_start, None)) if has_test else None)


def make_splits(frame: pd.DataFrame, cfg: RunConfig, coins: tuple[str, ...] = COINS) -> Splits:
    """The splits of ``cfg``'s protocol."""
    return cfg.rules.split(frame, cfg, coins)
