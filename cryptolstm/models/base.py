"""The one interface every forecaster has: the LSTM and each baseline alike.

``fit(splits, closes)`` learns from the training days only: ``splits`` are the
samples of a split or fold (``train`` and its ``val`` tail for early stopping),
``closes`` the coin's daily USD closes up to (not including) the first day to
be forecast. ``predict(samples, closes) -> Forecast`` forecasts each sample's
``samples.horizon`` target days (its origin's next H days) using only closes up to
the origin, the day before the first target day, for every horizon (``closes`` may
run on through the days being forecast: they are inputs of later forecasts). ``params`` says
what was fitted (logged beside the forecasts). A loop over forecasters never
asks which one it holds.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd

from cryptolstm.forecast import Forecast
from cryptolstm.splits import Splits
from cryptolstm.windowing import WindowSet


class Forecaster(Protocol):
    """What the backtest, training, search and the registry's pyfunc call."""

    name: str
    params: dict[str, float]

    def fit(self, splits: Splits | None, closes: pd.Series | None) -> Forecaster:
        """Learn from the training days (see the module docstring)."""
        ...

    def predict(self, samples: WindowSet, closes: pd.Series | None) -> Forecast:
        """Forecast every sample's target day."""
        ...
