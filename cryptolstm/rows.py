"""A model's input rows: the raw daily columns it reads, checked as the file loader checks a price file,
and against the prices the model was trained on (the pyfunc refuses rows that fail)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptolstm import features
from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import DataError
from cryptolstm.windowing import min_rows

MAX_ROWS = 20_000  # the most daily rows one request may send (55 years): a larger one is refused, not read
PRICE_TOLERANCE = 1e-6  # the relative difference two copies of a price may have (they are 32-bit floats upstream)
RATIO_MARGIN = 4.0  # how far outside its training range the two coins' close ratio may go before rows are refused


def input_columns(cfg: RunConfig) -> list[str]:
    """The columns a model of ``cfg`` reads: ``date`` and its features' raw columns."""
    return ["date", *features.required(cfg.feature_names, COINS, cfg.coin)]


def prepare_rows(rows: pd.DataFrame, cfg: RunConfig, every_day: bool = False) -> pd.DataFrame:
    """The model's input columns of ``rows``, checked, indexed by date (the last `min_rows` unless ``every_day``)."""
    needed, fewest = input_columns(cfg), min_rows(cfg)
    if not isinstance(rows, pd.DataFrame):
        raise DataError("the input must be a table of daily rows.")
    missing = [c for c in needed if c not in rows.columns]
    if missing:
        raise DataError(f"the input lacks column(s) {', '.join(missing)}; it needs {', '.join(needed)}.")
    if len(rows) < fewest:
        raise DataError(f"the input has {len(rows)} row(s); this model needs at least {fewest} daily rows.")
    if len(rows) > MAX_ROWS:
        raise DataError(f"the input has {len(rows)} rows; a request may send at most {MAX_ROWS:,} daily rows.")
    dates = pd.to_datetime(rows["date"], errors="coerce", format="ISO8601")
    if dates.isna().any():
        raise DataError(f"the input's date {rows['date'][dates.isna()].iloc[0]!r} is not a YYYY-MM-DD date.")
    frame = rows[needed].assign(date=dates).sort_values("date")
    frame = (frame if every_day else frame.tail(fewest)).reset_index(drop=True)
    values = frame[needed[1:]].apply(pd.to_numeric, errors="coerce")
    if not (np.isfinite(values.to_numpy(float)).all() and (values.to_numpy(float) > 0).all()):
        raise DataError(f"every price and volume in {'the input' if every_day else 'the last rows'} "
                        "must be a number greater than 0.")
    for column in values.columns:  # the first value outside its field's plausible range
        (low, high), said = features.plausible_range(column.rsplit("_", 1)[1])
        outside = ~values[column].between(low, high)
        if outside.any():
            at = int(np.argmax(outside.to_numpy()))
            raise DataError(f"the input's {column} on {frame['date'].iloc[at]:%Y-%m-%d} is "
                            f"{values[column].iloc[at]:g}, outside the plausible range ({said}).")
    _check_day_ranges(rows.assign(date=dates), frame["date"])
    if (frame["date"].diff().dropna() != pd.Timedelta(days=1)).any():
        raise DataError("the input's rows must be consecutive days." if every_day
                        else f"the last {fewest} rows must be consecutive days.")
    return frame.assign(**{c: values[c].astype(float) for c in values}).set_index("date")


def _check_day_ranges(rows: pd.DataFrame, dates: pd.Series) -> None:
    """One sentence for the first of ``rows``' (parsed) days in ``dates`` whose high lies below its open, close or
    low, or its low above its open or close (`cryptolstm.data.schema`'s checks)."""
    kept = rows[rows["date"].isin(dates)].sort_values("date")
    for coin in COINS:
        given = {f: pd.to_numeric(kept[features.column(coin, f)], errors="coerce").to_numpy(float)
                 for f in ("open", "high", "low", "close") if features.column(coin, f) in kept.columns}
        bad = np.zeros(len(kept), bool)
        for other in ("open", "close", "low"):
            if "high" in given and other in given:
                bad |= given["high"] < given[other] * (1 - 1e-6)
        for other in ("open", "close"):
            if "low" in given and other in given:
                bad |= given["low"] > given[other] * (1 + 1e-6)
        if bad.any():
            day = kept["date"].iloc[int(np.argmax(bad))]
            raise DataError(f"the input's {coin} row of {day:%Y-%m-%d} is not a day's prices: its high must be at "
                            f"least its open, close and low, and its low at most its open and close.")


def trained_prices(record: dict) -> pd.DataFrame:
    """The prices a model was trained on (training.json's record): a raw column per column, a row per day."""
    prices = pd.DataFrame(record["columns"])
    return prices.set_axis(pd.date_range(record["first_date"], periods=len(prices), freq="D"))


def price_mismatch(trained: pd.DataFrame, frame: pd.DataFrame) -> str | None:
    """How ``frame``'s prices differ from ``trained`` on the days both hold, in words; None when they agree."""
    shared = trained.index.intersection(frame.index)
    for column in trained.columns.intersection(frame.columns):
        new, old = frame.loc[shared, column].to_numpy(float), trained.loc[shared, column].to_numpy(float)
        off = ~np.isclose(new, old, rtol=PRICE_TOLERANCE, atol=0, equal_nan=True)
        if off.any():
            return (f"{column} on {shared[int(np.argmax(off))].date()} is {new[off][0]:.10g} there but was "
                    f"{old[off][0]:.10g} ({int(off.sum())} of the {len(shared)} shared days differ)")
    return None


def check_trained_on(trained: pd.DataFrame | None, frame: pd.DataFrame) -> None:
    """Refuse rows that are not the prices the model trained on, or whose two coins' close ratio lies far
    (`RATIO_MARGIN`) outside its training days'."""
    if trained is None:
        return
    mismatch = price_mismatch(trained, frame)
    if mismatch is not None:
        raise DataError(f"the input's prices are not those this model was trained on: {mismatch}; send the "
                        f"coins' real daily prices.")
    closes = [features.column(coin, "close") for coin in COINS]
    if not (set(closes) <= set(trained.columns) and set(closes) <= set(frame.columns)):
        return
    seen = trained[closes[0]] / trained[closes[1]]
    ratio = frame[closes[0]] / frame[closes[1]]
    outside = ~ratio.between(seen.min() / RATIO_MARGIN, seen.max() * RATIO_MARGIN)
    if outside.any():
        day = ratio.index[int(np.argmax(outside.to_numpy()))]
        raise DataError(f"the input's {closes[0]} / {closes[1]} on {day:%Y-%m-%d} is {ratio[day]:.4g}, while it was "
                        f"{seen.min():.4g} to {seen.max():.4g} on the days this model trained on: these rows are not "
                        f"{COINS[0]}'s and {COINS[1]}'s prices in their columns.")
