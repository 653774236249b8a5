"""The two protocols as objects, declared here once (no other module branches on a name: ``cfg.rules``).

``seed`` reproduces the 2018 notebook (80/20 positional blocks, target relative to the window's first
close, fixed epochs); ``honest`` cuts train / val / test, relative to the last close, stops early, in USD."""

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

    ``periods(days, train_frac, val_frac)``: its train, val and maybe test periods; ``reference``: the
    window's close the target return is relative to (``"first"`` or ``"last"``); ``early_stopping``: stop
    on validation loss, restoring the best weights; ``units``: its metrics' primary units; ``has_test``:
    whether a test split exists."""

    name: str
    periods: Callable[[pd.DatetimeIndex, float, float], dict[str, Period]]
    reference: str
    early_stopping: bool
    units: str
    has_test: bool


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
