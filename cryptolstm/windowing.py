"""The samples of a period and their input windows: the one way samples are built (`samples`,
`forecast_samples`). A sample is a forecast origin t and its H target days t+1..t+H; its window
covers days t-w+1..t (``w`` = window_len), ``f`` input columns, normalised by itself only (the 2018
rule: divided by its own first row, minus 1), so nothing is fitted across windows."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from cryptolstm import features
from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import DataError
from cryptolstm.splits import Period


@dataclass(frozen=True)
class Samples:
    """Forecast origins and their targets, with what is needed to score them in USD.

    y:           (n, H) float32 target returns of the H days after each origin, relative to ``ref_close``
    ref_close:   (n,) USD close the target returns are relative to
    persistence: (n,) return that "tomorrow = today" predicts (the origin's close vs ``ref_close``)
    target_close:(n, H) USD closes on the H target days (NaN for days not in the data yet)
    dates:       (n,) datetime64 first target day (horizon 1) of each origin, the day after it
    """

    y: np.ndarray
    ref_close: np.ndarray
    persistence: np.ndarray
    target_close: np.ndarray
    dates: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: slice | np.ndarray) -> Samples:
        """The samples at ``index`` (a slice keeps chronological order)."""
        return Samples(*(getattr(self, f.name)[index] for f in fields(self)))

    @property
    def horizon(self) -> int:
        """H, the number of target days after each origin."""
        return self.y.shape[1]

    @property
    def origins(self) -> np.ndarray:
        """(n,) datetime64 origin of each sample: the last day of its input window."""
        return (self.dates - np.timedelta64(1, "D")).astype(self.dates.dtype)

    def actual(self, h: int = 1) -> np.ndarray:
        """(n,) USD closes of the target day of horizon ``h`` (1-based)."""
        return self.target_close[:, h - 1]

    def last_close(self) -> np.ndarray:
        """(n,) USD close on each origin: the persistence forecast in USD."""
        return self.ref_close * (1.0 + self.persistence)


@dataclass(frozen=True)
class Splits:
    """The samples of a fit: ``train``, its validation tail ``val``, and the periods they came from."""

    train: Samples
    val: Samples
    periods: tuple[Period, Period]


def samples(frame: pd.DataFrame, cfg: RunConfig, period: Period) -> Samples:
    """Every sample of ``cfg`` whose target days all lie in ``period`` and whose window lies in ``frame``
    (after the features' warm-up and ``period.inputs_from``); reads no row after ``period.last``. Targets
    are returns on the close the protocol names (``cfg.rules.reference``)."""
    frame = frame.loc[: period.last]
    inputs_from = 0 if period.inputs_from is None else int(frame.index.searchsorted(period.inputs_from))
    # origin t: its first target t + 1 >= period.first and its last t + h <= the period's (and data's) last day
    lo = max(min_rows(cfg) - 1, inputs_from + cfg.window_len - 1, int(frame.index.searchsorted(period.first)) - 1)
    return _at(frame, cfg, np.arange(lo, len(frame) - cfg.horizon))


def _at(frame: pd.DataFrame, cfg: RunConfig, origin: np.ndarray) -> Samples:
    """Samples of origins at positions ``origin`` of ``frame`` (target closes NaN past its end)."""
    close = features.closes(frame, cfg.coin).to_numpy(np.float64)
    padded = np.concatenate([close, np.full(cfg.horizon, np.nan)])
    targets = np.stack([padded[origin + k] for k in range(1, cfg.horizon + 1)], axis=1)
    last = close[origin]
    ref = close[origin - cfg.window_len + 1] if cfg.rules.reference == "first" else last
    dates = (frame.index[origin] + pd.Timedelta(days=1)).to_numpy() if len(origin) else frame.index[:0].to_numpy()
    return Samples(y=(targets / ref[:, None] - 1.0).astype(np.float32), ref_close=ref,
                   persistence=last / ref - 1.0, target_close=targets, dates=dates)


def min_rows(cfg: RunConfig) -> int:
    """The fewest consecutive daily rows a model of ``cfg`` forecasts from: its window and warm-up."""
    return cfg.window_len + features.warmup(cfg.feature_names)


def forecast_samples(frame: pd.DataFrame, cfg: RunConfig, every_day: bool = False) -> Samples:
    """Samples of the days after the data: the last day of ``frame`` as the origin (or every day a
    window ends on, with ``every_day``), targets unknown where they lie after ``frame``."""
    first_origin = min_rows(cfg) - 1  # its window starts on the first day after the warm-up
    if len(frame) <= first_origin:
        raise DataError(f"the input has {len(frame)} row(s); this model needs at least {min_rows(cfg)} "
                        f"consecutive daily rows.")
    return _at(frame, cfg, np.arange(first_origin if every_day else len(frame) - 1, len(frame)))


def inputs(frame: pd.DataFrame, cfg: RunConfig, state: features.State | None, at: Samples) -> np.ndarray:
    """(n, w, f) float32 input windows of the samples ``at`` (each ending on its origin), from
    ``cfg``'s features (``state``: what they fitted on training days), each window normalised."""
    w, names = cfg.window_len, cfg.feature_names
    if len(at) == 0:
        return np.zeros((0, w, len(features.columns(names, COINS))), dtype=np.float32)
    end = frame.index.get_indexer(pd.DatetimeIndex(at.origins))
    if (end < w - 1).any():
        raise DataError("a sample's input window is not in the data it was given.")
    # Features over every row up to the last origin: a value depends on its own and earlier rows only.
    values = features.values(names, frame.iloc[: int(end.max()) + 1], COINS, state)
    windows = values[end[:, None] + np.arange(-w + 1, 1)[None, :]]
    if np.isnan(windows).any():
        raise DataError("an input window reaches a day before its features' first value; start the data earlier.")
    return features.normalise(windows, names, COINS).astype(np.float32)


def input_rows(frame: pd.DataFrame, cfg: RunConfig | None = None) -> pd.DataFrame:
    """A merged market frame (date index) as a registered model's input rows: a ``date`` column
    (YYYY-MM-DD) and the raw columns ``cfg``'s features read (the default model's without ``cfg``)."""
    names = cfg.feature_names if cfg else features.DEFAULT
    coin = cfg.coin if cfg else COINS[0]
    return market_rows(frame[features.required(names, COINS, coin)])


def protocol_samples(frame: pd.DataFrame, cfg: RunConfig) -> tuple[dict[str, Period], dict[str, Samples]]:
    """The protocol's periods over ``frame`` and their samples; one sentence when one is empty."""
    periods = cfg.rules.periods(frame.index, cfg.train_frac, cfg.val_frac)
    made = {name: samples(frame, cfg, period) for name, period in periods.items()}
    if min(len(s) for s in made.values()) < 1:
        raise DataError(f"{len(frame)} days are too few for a {cfg.train_frac}/{cfg.val_frac}/{cfg.test_frac} split "
                        f"({cfg.protocol} protocol) with window_len {cfg.window_len} and horizon {cfg.horizon}; "
                        f"widen merge_date..end_date.")
    return periods, made


def market_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Every raw column of a merged market frame as a model's input rows (it ignores what it does not read)."""
    kept = [c for c in (features.column(coin, field) for coin in COINS for field in features.FIELDS) if c in frame]
    return frame[kept].reset_index().assign(date=lambda rows: rows["date"].dt.strftime("%Y-%m-%d"))


def fit_splits(frame: pd.DataFrame, cfg: RunConfig, train: Period, val: Period) -> Splits:
    """The samples of ``train`` and ``val`` (a fit's); one sentence when either is empty."""
    made = Splits(samples(frame, cfg, train), samples(frame, cfg, val), (train, val))
    if len(made.train) < 1 or len(made.val) < 1:
        raise DataError(f"{len(made.train)} training and {len(made.val)} validation sample(s) between "
                        f"{train.first.date()} and {val.last.date()} with window_len {cfg.window_len} and horizon "
                        f"{cfg.horizon}; widen merge_date..end_date.")
    return made
