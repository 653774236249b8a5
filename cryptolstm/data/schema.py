"""The daily price file format (``date,open,high,low,close,volume``; one row per UTC day; USD) and
its validation: types, OHLC consistency, plausible values and one-day jumps, cut-off lines. Errors
name the file, the line (1 = header) and the column."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from cryptolstm.errors import DataError
from cryptolstm.features import PLAUSIBLE, PRICE_RANGE, VOLUME_RANGE

log = logging.getLogger(__name__)

COLUMNS = ("date", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
# A one-day move by more than this factor is a broken value: ../shared/data's largest is 4.0 for a price and
# 12 for a volume, while a value cut to its first k of n digits moves by a factor of about 10**(n - k).
JUMP = 50.0
LISTED_LINES = 3  # lines a volume warning names before "and N more"
# Two prices of one coin and day agree within this (relative; absolute USD): a float32 copy differs by about
# 1e-7 of it, an export rounded to the cent by under half a cent; a revised or another coin's, by far more.
AGREE_RTOL, AGREE_ATOL = 1e-6, 0.005
# The plausible ranges (`cryptolstm.features.PRICE_RANGE`, `VOLUME_RANGE`): ../shared/data runs from 0.42 to
# 68,790 USD a price and 1.0e5 to 3.5e11 USD a volume, a margin of over 1,000 below and 250 above; they also
# keep any two values' ratio (what a window feeds the network) inside float32, so no inf reaches training.


def _plausible(kind: str, low: float, high: float, zero: bool = False) -> pa.Check:
    """A pandera check that values lie in [low, high] (or are 0 if ``zero``), named "plausible <kind>"."""
    return pa.Check(lambda s: s.between(low, high) | (zero & (s == 0)), name=f"plausible {kind}")


_SCHEMA = pa.DataFrameSchema(
    {
        "date": pa.Column("datetime64[ns]", nullable=False, unique=True),
        **{c: pa.Column(float, _plausible("price", *PRICE_RANGE), nullable=False) for c in PRICE_COLUMNS},
        # CoinMarketCap wrote 0 where it had no volume (BTC before 2013-12-27).
        "volume": pa.Column(float, _plausible("volume", *VOLUME_RANGE, zero=True), nullable=False),
    },
    checks=[
        pa.Check(lambda d: d["low"] <= d[["open", "close"]].min(axis=1) * (1 + 1e-6), name="low <= min(open, close)"),
        pa.Check(lambda d: d["high"] >= d[["open", "close"]].max(axis=1) * (1 - 1e-6), name="high >= max(open, close)"),
    ],
)


def read_daily_csv(path: Path, warn: bool = True, before: str | None = None) -> pd.DataFrame:
    """One coin's validated daily CSV, indexed by ascending ``date``: open..close (USD), volume (USD/24 h);
    `DataError`, one sentence naming file, line and column, when it does not validate.

    ``warn``: log implausible volume jumps; ``before``: drop rows from this sealed day on (`seal`)."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
        if not text.strip():
            raise DataError(f"{path} is empty.")
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)  # every cell a string
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable CSV file ({str(exc).splitlines()[0]}).") from None
    if missing := [c for c in COLUMNS if c not in raw.columns]:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}; the header must be {','.join(COLUMNS)}.")
    if raw.empty:
        raise DataError(f"{path} has a header but no rows.")
    check_fields(path, text)
    check_cut_tail(path, raw, text)
    frame = _parse(path, raw[list(COLUMNS)])
    if before is not None:
        frame = seal(path, frame, before)
    check_frame(path, frame, warn)
    return frame.sort_values("date").set_index("date")


def seal(path: Path, frame: pd.DataFrame, before: str) -> pd.DataFrame:
    """The rows of ``frame`` dated before ``before``, dropped before any check or workflow sees them;
    `DataError` if the seal would hide every day, or none."""
    sealed = frame["date"] >= pd.Timestamp(before)
    if sealed.all():
        raise DataError(f"the seal from {before} hides every day of {path} (its first is "
                        f"{frame['date'].min().date()}); seal a later day.")
    if not sealed.any():
        raise DataError(f"the seal from {before} is after the last day of {path} ({frame['date'].max().date()}): "
                        f"it would hide nothing; seal a day the data holds.")
    return frame[~sealed]


def check_cut_tail(path: Path, raw: pd.DataFrame, text: str, number: Callable[[str], float] = float) -> None:
    """Raise if ``text`` (read as ``raw``, all strings) may be cut inside its last field: no final newline
    and its last value (``number`` parses it) below 1/`JUMP` of the line before's."""
    if text.endswith(("\n", "\r")) or len(raw) < 2:
        return
    column = raw.columns[-1]
    cut, before = str(raw[column].iloc[-1]).strip(), str(raw[column].iloc[-2]).strip()
    try:
        value, previous = number(cut), number(before)
    except (ValueError, IndexError):  # not numbers: the parsers name them
        return
    if previous > 0 and 0 <= value < previous / JUMP:
        raise DataError(f"{path} line {text.count(chr(10)) + 1} looks cut off: the file does not end with a newline "
                        f"and its last {column} {cut!r} is below 1/{JUMP:g} of the line before's ({before!r}).")


def check_frame(path: Path, frame: pd.DataFrame, warn: bool = True) -> None:
    """Validate parsed rows (index: 0-based file rows) against the schema and for jumps; `DataError` names the line."""
    try:
        _SCHEMA.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DataError(_describe(path, frame, exc.failure_cases)) from None
    by_day = frame.sort_values("date")
    _check_price_jumps(path, by_day)
    if warn:
        _warn_volume_jumps(path, by_day)


def check_days_done(path: Path, dates: pd.Series, today: dt.date) -> None:
    """Raise `DataError` naming the first line (``dates``' index: 0-based rows) dated after ``today`` (UTC)."""
    late = dates > pd.Timestamp(today)
    if not late.any():
        return
    row = int(late.idxmax())
    more = f" (and {int(late.sum()) - 1} more line(s))" if late.sum() > 1 else ""
    raise DataError(f"{path} line {row + 2}: date {dates[row].date()} is after today ({today}, UTC){more}; "
                    f"a daily price file cannot hold days still to come.")


def first_disagreement(stored: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.Timestamp, str, float, float] | None:
    """(day, column, stored, new) of the first shared day a price differs beyond `AGREE_*` (close first), or None."""
    days = stored.index.intersection(new.index).sort_values()
    columns = ("close", "open", "high", "low")
    old, now = stored.loc[days, list(columns)], new.loc[days, list(columns)]
    differs = ~np.isclose(old.to_numpy(float), now.to_numpy(float), rtol=AGREE_RTOL, atol=AGREE_ATOL)
    if not differs.any():
        return None
    at = int(differs.any(axis=1).argmax())
    column = columns[int(differs[at].argmax())]
    return days[at], column, float(old[column].iloc[at]), float(now[column].iloc[at])


def check_overlap(coin: str, stored: pd.DataFrame, new: pd.DataFrame, says: str, remedy: str) -> None:
    """Raise `DataError` if ``new`` rows contradict ``stored`` ones on a shared day (`first_disagreement`).
    ``says``: who brings ``new`` ("coinbaseexchange now says"); ``remedy``: what the user can do."""
    if (found := first_disagreement(stored, new)) is not None:
        day, column, old, value = found
        raise DataError(f"{coin} {column} on {day.date()} was {old:.10g} when stored but {says} {value:.10g}; "
                        f"nothing was written ({remedy}).")


def _jumps(values: pd.Series) -> pd.Series:
    """Per row, the factor (>= 1) ``values`` moved by from the row before; NaN where either is 0 or NaN."""
    positive = values.where(values > 0)
    ratio = positive / positive.shift()
    return ratio.where(ratio >= 1, 1 / ratio)


def _check_price_jumps(path: Path, by_day: pd.DataFrame) -> None:
    """Raise on the first day (in date order) whose price moved by more than `JUMP` times from the day before."""
    factors = pd.DataFrame({c: _jumps(by_day[c]) for c in ("close", "open", "high", "low")})
    broken = (factors > JUMP).any(axis=1).to_numpy()
    if not broken.any():
        return
    at = int(broken.argmax())
    row, before = by_day.index[at], by_day.index[at - 1]
    col = next(c for c in factors.columns if factors[c].iloc[at] > JUMP)
    value, previous = by_day[col].iloc[at], by_day[col].iloc[at - 1]
    raise DataError(f"{path} line {row + 2}, column {col}: {value:.10g} on {by_day['date'].iloc[at].date()} is "
                    f"{factors[col].iloc[at]:.3g} times {'above' if value > previous else 'below'} the day before "
                    f"({previous:.10g}, line {before + 2}); a one-day move by more than a factor of {JUMP:g} "
                    f"is implausible.")


def _warn_volume_jumps(path: Path, by_day: pd.DataFrame) -> None:
    """Warn of the lines whose volume moved by more than `JUMP` times (volume is noisier than price)."""
    factors = _jumps(by_day["volume"])
    jumps = factors[factors > JUMP]
    if jumps.empty:
        return
    rows = jumps.index[:LISTED_LINES]
    where = [f"line {row + 2} ({by_day.loc[row, 'date'].date()}, x{jumps[row]:.3g})" for row in rows]
    more = f" and {len(jumps) - LISTED_LINES} more" if len(jumps) > LISTED_LINES else ""
    log.warning("%s: volume moves by more than a factor of %g from the day before on %d line(s): %s%s; "
                "check them for cut-off or mistyped values.", path, JUMP, len(jumps), ", ".join(where), more)


def check_fields(path: Path, text: str, delimiter: str = ",") -> None:
    """Raise if a line has fewer fields than the header (pandas would fill them with empty values)."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, [])
    width = len(header)
    while width and not header[width - 1].strip():  # a trailing delimiter in the header names no column
        width -= 1
    for r in reader:
        if r and len(r) < width:
            last = reader.line_num == text.rstrip("\r\n").count("\n") + 1
            why = "the file looks cut off" if last else "every line needs a value for each column"
            raise DataError(f"{path} line {reader.line_num} has {len(r)} field(s) where the header has {width}; {why}.")


def _parse(path: Path, raw: pd.DataFrame) -> pd.DataFrame:
    """Parse text cells into dates and floats, naming the first cell that does not parse."""
    out = pd.DataFrame(index=raw.index)
    text = raw.apply(lambda c: c.str.strip())
    out["date"] = pd.to_datetime(text["date"], format="%Y-%m-%d", errors="coerce").astype("datetime64[ns]")
    for col in COLUMNS[1:]:
        out[col] = pd.to_numeric(text[col], errors="coerce").astype(float)
    for col in COLUMNS:
        for mask, what in ((text[col] == "", "is empty"), (out[col].isna() & (text[col] != ""), "does not parse")):
            if mask.any():
                row = int(mask.idxmax())
                raise DataError(f"{path} line {row + 2}, column {col}: value {raw[col].iloc[row]!r} {what}; "
                                f"expected {'a YYYY-MM-DD date' if col == 'date' else 'a number'}.")
    return out


def _describe(path: Path, frame: pd.DataFrame, cases: pd.DataFrame) -> str:
    """One sentence for pandera's failure cases: the first failing line (column checks first), and how many more."""
    cases = cases.assign(row_check=cases["schema_context"] != "Column")
    cases = cases.sort_values(["row_check", "index"], na_position="last")
    first = cases.iloc[0]
    lines = cases["index"].dropna().nunique()
    more = f" ({lines - 1} more line(s) fail)" if lines > 1 else ""
    where = f"line {int(first['index']) + 2}" if pd.notna(first["index"]) else "the file"
    if first["column"] == "date" and "unique" in str(first["check"]):
        day = pd.Timestamp(first["failure_case"]).date().isoformat()
        return f"{path} {where}: date {day} appears more than once; dates must be unique."
    if first["row_check"]:
        return f"{path} {where}: the row fails check {first['check']}{more}."
    if str(first["check"]).startswith("plausible "):  # outside `PRICE_RANGE` or `VOLUME_RANGE`
        kind = str(first["check"]).removeprefix("plausible ")
        day = frame["date"].get(first["index"]) if pd.notna(first["index"]) else None
        on = f" on {day.date()}" if isinstance(day, pd.Timestamp) and pd.notna(day) else ""
        return (f"{path} {where}, column {first['column']}: {float(first['failure_case']):.10g}{on} is outside the "
                f"plausible range ({PLAUSIBLE[kind]}){more}; check the file for a mistyped or mis-scaled value.")
    return f"{path} {where}, column {first['column']}: value {first['failure_case']!r} fails check {first['check']}{more}."
