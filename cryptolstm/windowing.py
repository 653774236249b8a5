"""Windows of daily features and their targets, for both protocols.

Features are close and volume of every coin, in the notebook's column order
(BTC_close, BTC_volume, ETH_close, ETH_volume). Each window is divided by its
own first row, minus 1, so nothing is fitted across windows and no window sees
another window's days.

Notation: ``w`` = window_len, a window starting at day ``i`` covers days
``i .. i+w-1``; ``f`` = number of features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from cryptolstm.config import COINS, FEATURES
from cryptolstm.errors import DataError


@dataclass(frozen=True)
class WindowSet:
    """Model inputs and targets, with what is needed to score them in USD.

    X:           (n, w, f) float32, each window divided by its first row, minus 1
    y:           (n, H) float32 target returns of the H days after the window, relative to ``ref_close``
    ref_close:   (n,) USD close the target returns are relative to
    persistence: (n,) return that "tomorrow = today" predicts (last input close vs ``ref_close``)
    target_close:(n, H) USD closes on the H target days
    dates:       (n,) datetime64 first target day (horizon 1) of each window
    """

    X: np.ndarray
    y: np.ndarray
    ref_close: np.ndarray
    persistence: np.ndarray
    target_close: np.ndarray
    dates: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: slice | np.ndarray) -> WindowSet:
        """The samples at ``index`` (a slice keeps chronological order)."""
        return WindowSet(*(getattr(self, k)[index] for k in self.__dataclass_fields__))

    @property
    def horizon(self) -> int:
        """H, the number of target days after each window."""
        return self.y.shape[1]

    def actual(self, h: int = 1) -> np.ndarray:
        """(n,) USD closes of the target day of horizon ``h`` (1-based)."""
        return self.target_close[:, h - 1]

    def last_close(self) -> np.ndarray:
        """(n,) USD close on each window's last day: the persistence forecast in USD."""
        return self.ref_close * (1.0 + self.persistence)


def feature_columns(coins: tuple[str, ...]) -> list[str]:
    """Column names of the input features, coin-major as in the 2018 notebook."""
    return [f"{coin}_{feat}" for coin in coins for feat in FEATURES]


def input_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A merged market frame (date index, ``{COIN}_close`` / ``_volume``) as the registered model's
    input rows: a ``date`` column (YYYY-MM-DD) and the feature columns."""
    rows = frame[feature_columns(COINS)].reset_index()
    return rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d"))


def normalise(windows: np.ndarray) -> np.ndarray:
    """(n, w, f) raw windows -> the same divided by their first row, minus 1.

    Volumes are validated positive upstream; a zero base still cannot divide
    by zero here, it raises instead.
    """
    base = windows[:, :1, :]
    if np.any(base == 0):
        raise DataError("a window starts on a day with a zero price or volume; it cannot be normalised.")
    return windows / base - 1.0


def _windows(values: np.ndarray, window_len: int) -> np.ndarray:
    """(days, f) -> (days - w + 1, w, f) sliding windows, a copy."""
    return sliding_window_view(values, window_len, axis=0).transpose(0, 2, 1).copy()


def _require(days: int, needed: int, what: str) -> None:
    if days < needed:
        raise DataError(f"{what} has {days} day(s); at least {needed} are needed for these windows.")


def target_windows(frame: pd.DataFrame, coin: str, coins: tuple[str, ...], window_len: int, reference: str,
                   what: str = "the merged data", horizon: int = 1) -> WindowSet:
    """Every window of ``frame`` with the ``horizon`` days after it as its targets.

    Window i covers days i..i+w-1 and targets days i+w..i+w+H-1; n = days - w - H + 1 (a
    window whose last target day is not in ``frame`` is no sample). The target returns are
    relative to the window's ``reference`` close, ``"first"`` (the 2018 notebook's
    ``close[i+w] / close[i] - 1``) or ``"last"`` (returns on the last close ``close[t]``, for which
    persistence is 0): the protocol says which (`cryptolstm.protocols`).
    """
    w, h = window_len, horizon
    _require(len(frame), w + h, what)
    values = frame[feature_columns(coins)].to_numpy(np.float64)
    close = frame[f"{coin}_close"].to_numpy(np.float64)
    n = len(close) - w - h + 1
    last = close[w - 1 : w - 1 + n]
    ref = close[:n] if reference == "first" else last
    targets = np.stack([close[w - 1 + k : w - 1 + k + n] for k in range(1, h + 1)], axis=1)
    return WindowSet(
        X=normalise(_windows(values, w)[:n]).astype(np.float32),
        y=(targets / ref[:, None] - 1.0).astype(np.float32),
        ref_close=ref,
        persistence=last / ref - 1.0,
        target_close=targets,
        dates=frame.index.to_numpy()[w : w + n],
    )


def seed_windows(frame: pd.DataFrame, coin: str, coins: tuple[str, ...], window_len: int,
                 horizon: int = 1) -> WindowSet:
    """The 2018 notebook's samples over a block of consecutive days (targets relative to the first close)."""
    return target_windows(frame, coin, coins, window_len, "first", "a block of the seed split", horizon)


def next_day_windows(frame: pd.DataFrame, coin: str, coins: tuple[str, ...], window_len: int,
                     horizon: int = 1) -> WindowSet:
    """Honest samples: window ending on day t, targets ``close[t+k] / close[t] - 1``, k = 1..H."""
    return target_windows(frame, coin, coins, window_len, "last", horizon=horizon)


def origin_windows(frame: pd.DataFrame, coin: str, coins: tuple[str, ...], window_len: int, reference: str,
                   horizon: int = 1) -> WindowSet:
    """Every window of ``frame`` as an input, to forecast the ``horizon`` days after it: window i
    covers days i..i+w-1 and its origin is day i+w-1 (n = days - w + 1; the last one ends on the
    last day of ``frame``).

    Its targets are unknown (``y`` and ``target_close`` NaN); ``reference`` (``"first"`` or
    ``"last"``) names the window close the target returns are relative to, as the protocol says.
    """
    w = window_len
    _require(len(frame), w, "the input")
    values = frame[feature_columns(coins)].to_numpy(np.float64)
    close = frame[f"{coin}_close"].to_numpy(np.float64)
    n = len(close) - w + 1
    last = close[w - 1:]
    ref = close[:n] if reference == "first" else last
    return WindowSet(
        X=normalise(_windows(values, w)).astype(np.float32),
        y=np.full((n, horizon), np.nan, dtype=np.float32),
        ref_close=ref,
        persistence=last / ref - 1.0,
        target_close=np.full((n, horizon), np.nan),
        dates=(frame.index[w - 1:] + pd.Timedelta(days=1)).to_numpy(),
    )


def latest_window(frame: pd.DataFrame, coin: str, coins: tuple[str, ...], window_len: int, reference: str,
                  horizon: int = 1) -> WindowSet:
    """One sample: the last ``window_len`` days of ``frame`` as the input (`origin_windows`)."""
    _require(len(frame), window_len, "the input")
    return origin_windows(frame.iloc[-window_len:], coin, coins, window_len, reference, horizon)
