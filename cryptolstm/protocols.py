"""The two protocols as objects: everything that differs between them is declared here, once.

``seed`` reproduces the 2018 notebook: an 80/20 positional cut of the days, the
second block used as validation (and, in the notebook, as the test set), a target
relative to the window's *first* close, a fixed number of epochs, metrics in the
notebook's normalised units. ``honest`` cuts target days into train / val / test,
predicts the next day's return relative to the window's *last* close, stops early
on validation loss, and reports in USD. No other module branches on a protocol's
name: they ask the `Protocol` of a config (``cfg.rules``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from cryptolstm.errors import ConfigError
from cryptolstm.forecast import RETURN, USD
from cryptolstm.splits import Period, honest_periods, seed_periods


@dataclass(frozen=True)
class Protocol:
    """What a protocol decides.

    ``cut(days, train_frac, val_frac)``: its periods (train, val and maybe test) over the days of
    the data; ``reference``: which close of an input window the target return is relative to
    (``"first"`` or ``"last"``); ``early_stopping``: stop on validation loss and restore the best
    weights, else train every epoch; ``units``: the primary units of its metrics (``"usd"`` or
    ``"return"``); ``has_test``: whether a test split exists (read once, after training).
    """

    name: str
    cut: Callable[[pd.DatetimeIndex, float, float], dict[str, Period]]
    reference: str
    early_stopping: bool
    units: str
    has_test: bool

    def periods(self, days: pd.DatetimeIndex, train_frac: float, val_frac: float) -> dict[str, Period]:
        """The protocol's periods over ``days``: ``train``, ``val`` and perhaps ``test``."""
        return self.cut(days, train_frac, val_frac)


SEED = Protocol("seed", lambda days, train_frac, val_frac: seed_periods(days, train_frac), reference="first",
                early_stopping=False, units=RETURN, has_test=False)
HONEST = Protocol("honest", honest_periods, reference="last", early_stopping=True, units=USD, has_test=True)
PROTOCOLS = {p.name: p for p in (HONEST, SEED)}


def protocol(name: str) -> Protocol:
    """The protocol called ``name``; one sentence for an unknown name."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {name!r}.") from None
