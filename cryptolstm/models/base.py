"""The one interface every forecaster has: the LSTM, each baseline and a registered model alike.

``fit(history)`` learns from ``history.frame``, the market's rows up to the last day before the
days it will forecast (nothing later is in it); the network cuts its samples from the periods
``history.train`` and ``history.val`` (early stopping, calibration), a baseline uses the closes.
``predict(samples, history) -> Forecast`` forecasts each sample's ``samples.horizon`` target days
(its origin's next H days) using only data up to the origin, for every horizon
(``history.frame`` may run on through the days being forecast: they are inputs of later
forecasts). ``params`` says what was fitted (logged beside the forecasts). A loop over
forecasters never asks which one it holds (`cryptolstm.forecasting`).
"""

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
    """What a forecaster may read: the market ``frame`` (rows up to the last day it may see), the
    ``coin`` it forecasts and, when it is fitted, the training and validation periods."""

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
        """Learn from the days of ``history`` (see the module docstring)."""
        ...

    def predict(self, samples: Samples, history: History) -> Forecast:
        """Forecast every sample's target days."""
        ...
