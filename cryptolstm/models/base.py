"""The one interface every forecaster has: ``fit`` on the rows before the days it forecasts, ``predict`` of
each sample's H target days from data up to its origin only, and ``params`` (what was fitted, logged)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from cryptolstm import features
from cryptolstm.forecast import Forecast
from cryptolstm.splits import Period
from cryptolstm.windowing import Samples


@dataclass(frozen=True)
class History:
    """What a forecaster may read: the ``frame`` up to the last day it may see, its ``coin``, and fit periods."""

    frame: pd.DataFrame
    coin: str
    train: Period | None = None
    val: Period | None = None

    @property
    def closes(self) -> pd.Series:
        """The coin's daily USD closes."""
        return features.closes(self.frame, self.coin)


class Forecaster(Protocol):
    """What the forecasting loop, training, the search and the registry's pyfunc call."""

    name: str
    params: dict[str, float]

    def fit(self, history: History) -> Forecaster:
        """Learn from the days of ``history``."""
        ...

    def predict(self, samples: Samples, history: History) -> Forecast:
        """Forecast every sample's target days."""
        ...
