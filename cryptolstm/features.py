"""The model's inputs, declared once as `Feature` objects; a run config lists their names. Per-coin
features come for every coin, coin-major (``BTC_close, BTC_volume, ETH_close, ETH_volume``), and no
other module builds a raw column name (``BTC_close``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptolstm.errors import ConfigError, DataError

FIELDS = ("open", "high", "low", "close", "volume")  # a coin's raw daily columns, USD
# The plausible values of a raw field (USD; `cryptolstm.data.schema` explains them): every price file
# loaded, imported or fetched is checked by them, and so are a served model's input rows.
PRICE_RANGE = (1e-6, 1e9)  # USD per coin: open, high, low, close
VOLUME_RANGE = (1.0, 1e14)  # USD per day; 0 is allowed besides in a price file: CoinMarketCap's "not reported"
PLAUSIBLE = {"price": f"a price is {PRICE_RANGE[0]:g} to {PRICE_RANGE[1]:g} USD",
             "volume": f"a daily volume is 0 or {VOLUME_RANGE[0]:g} to {VOLUME_RANGE[1]:g} USD"}


def plausible_range(field: str) -> tuple[tuple[float, float], str]:
    """(the plausible (low, high) of raw ``field``, the sentence that says it)."""
    return (VOLUME_RANGE, PLAUSIBLE["volume"]) if field == "volume" else (PRICE_RANGE, PLAUSIBLE["price"])
DEFAULT = ("close", "volume")  # the 2018 tutorial's inputs
RATIO, DIFFERENCE, NONE = "ratio", "difference", "none"
GARCH_WARMUP = 100  # days before garch_vol's first value: arch's backcast reads the first 75 returns

State = dict[str, dict]  # column -> what its feature fitted (JSON-able)
Compute = Callable[[pd.DataFrame, str, dict], pd.Series]


def column(coin: str, name: str) -> str:
    """The frame's column of ``coin``'s raw field or feature ``name``: ``BTC_close``."""
    return f"{coin}_{name}"


def raw(frame: pd.DataFrame, coin: str, name: str) -> pd.Series:
    """``coin``'s raw daily ``name`` (a `FIELDS` entry) from a merged market frame."""
    return frame[column(coin, name)].astype(np.float64)


def closes(frame: pd.DataFrame, coin: str) -> pd.Series:
    """``coin``'s daily USD closes: what every target and every baseline is made of."""
    return raw(frame, coin, "close")


@dataclass(frozen=True)
class Feature:
    """One declared input.

    ``fields``: the raw daily columns it reads per coin; ``compute(frame, coin, state)``: its value on
    each day, from that day's and earlier rows only; ``normalise``: ``ratio`` (divided by the window's
    first row, minus 1: the 2018 rule), ``difference`` (minus the first row) or ``none`` (already
    unit-free); ``warmup``: days of history before its first value; ``fit(frame, coin)``: the state it
    fits on training days only (GARCH's), saved with the model."""

    name: str
    fields: tuple[str, ...]
    compute: Compute
    normalise: str = NONE
    warmup: int = 0
    per_coin: bool = True
    fit: Callable[[pd.DataFrame, str], dict] | None = None
    doc: str = field(default="", compare=False)
    packages: tuple[str, ...] = ()  # what computing it needs beyond the pyfunc's own (a served model's requirements)


def _log_return(frame, coin, state):
    return np.log(closes(frame, coin)).diff()


def _range(frame, coin):
    return np.log(raw(frame, coin, "high") / raw(frame, coin, "low"))


def parkinson(frame: pd.DataFrame, coin: str, state: dict | None = None) -> pd.Series:
    """Parkinson's volatility of each day from its high and low: sqrt(ln(high / low)^2 / (4 ln 2))."""
    return np.sqrt(_range(frame, coin) ** 2 / (4.0 * math.log(2.0)))


def _garman_klass(frame, coin, state):
    body = np.log(raw(frame, coin, "close") / raw(frame, coin, "open"))
    variance = 0.5 * _range(frame, coin) ** 2 - (2.0 * math.log(2.0) - 1.0) * body ** 2
    return np.sqrt(variance.clip(lower=0.0))


def _realized(days: int) -> Compute:
    def compute(frame, coin, state):
        return np.sqrt((_log_return(frame, coin, state) ** 2).rolling(days, min_periods=days).mean())

    return compute


def _garch_fit(frame: pd.DataFrame, coin: str) -> dict:
    from cryptolstm.garch import fit_garch

    params, named = fit_garch(closes(frame, coin))
    return {"params": params.tolist(), **named}


def _garch_vol(frame, coin, state):
    from cryptolstm.garch import next_day_volatility

    if "params" not in state:
        raise DataError("garch_vol has not been fitted on training days; fit the features first.")
    sigma = next_day_volatility(np.asarray(state["params"]), closes(frame, coin))
    return sigma.where(np.arange(len(sigma)) >= GARCH_WARMUP)


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("close", ("close",), lambda frame, coin, state: closes(frame, coin), RATIO, doc="the close (USD)"),
    Feature("volume", ("volume",), lambda frame, coin, state: raw(frame, coin, "volume"), RATIO,
            doc="24-hour volume (USD)"),
    Feature("log_return", ("close",), _log_return, warmup=1, doc="log(close / previous close)"),
    Feature("abs_return", ("close",), lambda f, c, s: _log_return(f, c, s).abs(), warmup=1, doc="|log return|"),
    Feature("parkinson", ("high", "low"), parkinson, doc="Parkinson's range volatility of the day"),
    Feature("garman_klass", ("open", "high", "low", "close"), _garman_klass,
            doc="Garman-Klass volatility of the day (range and open-to-close)"),
    Feature("realized_vol_5", ("close",), _realized(5), warmup=5, doc="root mean square log return, 5 days"),
    Feature("realized_vol_22", ("close",), _realized(22), warmup=22, doc="root mean square log return, 22 days"),
    Feature("log_volume", ("volume",), lambda f, c, s: np.log(raw(f, c, "volume")), DIFFERENCE, doc="log volume"),
    Feature("volume_change", ("volume",), lambda f, c, s: np.log(raw(f, c, "volume")).diff(), warmup=1,
            doc="log(volume / previous volume)"),
    Feature("day_of_week", (), lambda f, c, s: pd.Series(f.index.dayofweek / 6.0, index=f.index), per_coin=False,
            doc="weekday, 0 (Monday) to 1 (Sunday)"),
    Feature("garch_vol", ("close",), _garch_vol, warmup=GARCH_WARMUP, fit=_garch_fit,
            doc="GARCH(1,1)-t's volatility forecast for the next day, fitted on training days",
            packages=("arch", "scipy")),
)}
NAMES = tuple(FEATURES)
# Named sets a config or a search space may give instead of a list (``features: ranges``).
SETS: dict[str, tuple[str, ...]] = {
    "tutorial": DEFAULT,
    "returns": ("log_return", "abs_return", "log_volume", "volume_change", "day_of_week"),
    "ranges": ("log_return", "abs_return", "parkinson", "garman_klass", "realized_vol_5", "realized_vol_22"),
    "garch": ("log_return", "abs_return", "parkinson", "realized_vol_22", "garch_vol"),
    "all": ("log_return", "abs_return", "parkinson", "garman_klass", "realized_vol_5", "realized_vol_22",
            "log_volume", "volume_change", "day_of_week", "garch_vol"),
}


def parse(names) -> tuple[str, ...]:
    """A feature list (``"log_return,parkinson"``, a sequence, or the name of a set in `SETS`) as a
    tuple of known, distinct names; one sentence for an unknown, repeated or empty one."""
    items = names.split(",") if isinstance(names, str) else list(names)
    found = tuple(str(n).strip() for n in items if str(n).strip())
    if len(found) == 1 and found[0] in SETS:
        return SETS[found[0]]
    if sets := [n for n in found if n in SETS]:  # a set stands alone: in a list it would read as a feature
        raise ConfigError(f"{sets[0]!r} is a set of features ({','.join(SETS[sets[0]])}), which stands alone: pass "
                          f"--features {sets[0]}, or list its features with the others.")
    if unknown := [n for n in found if n not in FEATURES]:
        raise ConfigError(f"unknown feature {unknown[0]!r}; features are {', '.join(NAMES)} (or one of the sets "
                          f"{', '.join(SETS)}, alone).")
    if not found:
        raise ConfigError(f"features must name at least one of {', '.join(NAMES)}.")
    if len(set(found)) < len(found):
        raise ConfigError(f"features name {next(n for n in found if found.count(n) > 1)!r} twice.")
    return found


def _inputs(names: tuple[str, ...], coins: tuple[str, ...]) -> list[tuple[str, str]]:
    """(coin, feature) of each input column, in `columns` order; coin "" for a coin-free feature."""
    return [(coin, n) for coin in (*coins, "") for n in names if FEATURES[n].per_coin == bool(coin)]


def columns(names: tuple[str, ...], coins: tuple[str, ...]) -> list[str]:
    """The input columns of ``names`` for ``coins``, coin-major, then the coin-free features."""
    return [column(coin, n) if coin else n for coin, n in _inputs(names, coins)]


def required(names: tuple[str, ...], coins: tuple[str, ...], coin: str) -> list[str]:
    """The raw columns a model of ``coin`` with features ``names`` reads: its features' fields for
    every coin, and ``coin``'s close (the target), in `FIELDS` order per coin."""
    needed = {f for n in names for f in FEATURES[n].fields}
    return [column(c, f) for c in coins for f in FIELDS if f in needed or (c == coin and f == "close")]


def warmup(names: tuple[str, ...]) -> int:
    """Days of history the features need before their first value."""
    return max(FEATURES[n].warmup for n in names)


def fit(names: tuple[str, ...], frame: pd.DataFrame, coins: tuple[str, ...]) -> State:
    """What the features with parameters fit on ``frame`` (the training days only)."""
    return {column(coin, n): FEATURES[n].fit(frame, coin) for coin in coins for n in names
            if FEATURES[n].fit is not None and FEATURES[n].per_coin}


def values(names: tuple[str, ...], frame: pd.DataFrame, coins: tuple[str, ...], state: State | None = None) -> np.ndarray:
    """(days, f) float64 values of the features on every day of ``frame`` (NaN before a feature's
    first value), in `columns` order; one sentence when ``frame`` lacks a raw column they read."""
    state = state or {}
    if absent := [(n, column(coin, f)) for coin in coins for n in names if FEATURES[n].per_coin
                  for f in FEATURES[n].fields if column(coin, f) not in frame]:
        n, missing = absent[0]
        raise DataError(f"feature {n} reads the column {missing}, which the data lacks; drop {n} from "
                        f"features or use data that has it.")
    out = [FEATURES[n].compute(frame, coin, state.get(column(coin, n), {})) for coin, n in _inputs(names, coins)]
    return np.stack([np.asarray(v, dtype=np.float64) for v in out], axis=1)


def normalise(windows: np.ndarray, names: tuple[str, ...], coins: tuple[str, ...]) -> np.ndarray:
    """(n, w, f) raw windows, each column normalised as its feature says; `DataError` for a ratio from 0."""
    kinds = np.asarray([FEATURES[n].normalise for _, n in _inputs(names, coins)])
    base = windows[:, :1, :]
    if (kinds == RATIO).all():  # the 2018 rule on every column (the default), in one step
        return _ratio(windows, base)
    out = windows.copy()
    for kind, how in ((RATIO, _ratio), (DIFFERENCE, np.subtract)):
        index = np.flatnonzero(kinds == kind)
        out[:, :, index] = how(windows[:, :, index], base[:, :, index])
    return out


def _ratio(windows: np.ndarray, base: np.ndarray) -> np.ndarray:
    if np.any(base == 0):
        raise DataError("a window starts on a day with a zero price or volume; it cannot be normalised.")
    return windows / base - 1.0
