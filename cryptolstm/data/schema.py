"""The daily price file format and its validation (pandera).

Format (see ``../shared/data/README.md``): header ``date,open,high,low,close,volume``;
one row per UTC day; prices and volume in USD. Errors name the file, the line
(1 = header) and the column.

Beyond types and OHLC consistency, a file is checked for what a careless export
or a cut-off download leaves: a header and no rows, a line with fewer fields
than the header, a last line cut inside its last field (no final newline and a
value far below the line before it), and implausible one-day jumps (a factor of
more than `JUMP`): an error for prices, a warning naming the lines for volume.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from cryptolstm.errors import DataError

log = logging.getLogger(__name__)

COLUMNS = ("date", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
# A one-day move by more than this factor is not a market move but a broken value: in
# ../shared/data the largest is 4.0 for a price (ETH's second day) and 12 for a volume (BTC,
# 2014-03-03), while a value cut to its first k digits moves by a factor of about 10**(n - k).
JUMP = 50.0
LISTED_LINES = 3  # lines a volume warning names before "and N more"

_SCHEMA = pa.DataFrameSchema(
    {
        "date": pa.Column("datetime64[ns]", nullable=False, unique=True),
        **{c: pa.Column(float, pa.Check.gt(0), nullable=False) for c in PRICE_COLUMNS},
        # CoinMarketCap wrote 0 where it had no volume (BTC before 2013-12-27).
        "volume": pa.Column(float, pa.Check.ge(0), nullable=False),
    },
    checks=[
        pa.Check(lambda d: d["low"] <= d[["open", "close"]].min(axis=1) * (1 + 1e-6), name="low <= min(open, close)"),
        pa.Check(lambda d: d["high"] >= d[["open", "close"]].max(axis=1) * (1 - 1e-6), name="high >= max(open, close)"),
    ],
    strict=False,
    coerce=False,
)


def read_daily_csv(path: Path, warn: bool = True) -> pd.DataFrame:
    """Read and validate one coin's daily CSV.

    Returns a frame indexed by ``date`` (datetime64, ascending) with float
    columns open, high, low, close (USD) and volume (USD per 24 h).
    Raises `DataError` with one sentence naming file, line and column; ``warn``:
    log implausible volume jumps (see `check_frame`).
    """
    raw, text = _read_table(path)
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {', '.join(missing)}; the header must be {','.join(COLUMNS)}."
        )
    if raw.empty:
        raise DataError(f"{path} has a header but no rows.")
    check_fields(path, text)
    check_cut_tail(path, raw, text)
    frame = _parse(path, raw[list(COLUMNS)])
    check_frame(path, frame, warn)
    return frame.sort_values("date").set_index("date")


def _read_table(path: Path) -> tuple[pd.DataFrame, str]:
    """The file as a frame of strings (header = column names) and as text."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a readable CSV file ({str(exc).splitlines()[0]}).") from None
    if not text.strip():
        raise DataError(f"{path} is empty.")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), text
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable CSV file ({str(exc).splitlines()[0]}).") from None


def check_cut_tail(path: Path, raw: pd.DataFrame, text: str, number: Callable[[str], float] = float) -> None:
    """Raise if ``text`` (the file, read as ``raw`` with every cell a string) may have been cut
    inside its last field, which still parses (a volume of 4543860224 cut to 45): it does not end
    with a newline and its last column's last value (``number`` parses it) is below 1/`JUMP` of
    the value on the line before."""
    if text.endswith(("\n", "\r")) or len(raw) < 2:
        return
    column = raw.columns[-1]
    cut, before = str(raw[column].iloc[-1]).strip(), str(raw[column].iloc[-2]).strip()
    try:
        value, previous = number(cut), number(before)
    except (ValueError, IndexError):  # not numbers: the parsers name them
        return
    if previous > 0 and 0 <= value < previous / JUMP:
        raise DataError(
            f"{path} line {text.count(chr(10)) + 1} looks cut off: the file does not end with a newline and "
            f"its last {column} {cut!r} is below 1/{JUMP:g} of the line before's ({before!r})."
        )


def check_frame(path: Path, frame: pd.DataFrame, warn: bool = True) -> None:
    """Validate parsed rows (columns date..volume, index = 0-based row of the file) against the
    schema and for implausible jumps; raise `DataError` naming ``path``'s first failing line.
    ``warn``: log implausible volume jumps (off where the file was checked when it was written)."""
    try:
        _SCHEMA.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DataError(_describe(path, frame, exc.failure_cases)) from None
    by_day = frame.sort_values("date")
    _check_price_jumps(path, by_day)
    if warn:
        _warn_volume_jumps(path, by_day)


def _jumps(values: pd.Series) -> pd.Series:
    """Per row, the factor (>= 1) by which ``values`` moved from the row before; NaN where either is
    missing or zero (volume 0 is "not reported")."""
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
    raise DataError(
        f"{path} line {row + 2}, column {col}: {value:.10g} on {by_day['date'].iloc[at].date()} is "
        f"{factors[col].iloc[at]:.3g} times {'above' if value > previous else 'below'} the day before "
        f"({previous:.10g}, line {before + 2}); a one-day move by more than a factor of {JUMP:g} is implausible."
    )


def _warn_volume_jumps(path: Path, by_day: pd.DataFrame) -> None:
    """Log one warning naming the lines whose volume moved by more than `JUMP` times from the day before
    (up or down): not an error, as volume is noisier than price, but often a cut or mistyped value."""
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
    """Raise if a line has fewer fields than the header (pandas would fill the missing ones with
    empty values): a line cut off, most often the last one of an interrupted download."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, [])
    width = len(header)
    while width and not header[width - 1].strip():  # a trailing delimiter in the header names no column
        width -= 1
    short = next(((reader.line_num, len(r)) for r in reader if r and len(r) < width), None)
    if short is None:
        return
    line, fields = short
    last = line == text.rstrip("\r\n").count("\n") + 1
    why = "the file looks cut off" if last else "every line needs a value for each column"
    raise DataError(f"{path} line {line} has {fields} field(s) where the header has {width}; {why}.")


def _parse(path: Path, raw: pd.DataFrame) -> pd.DataFrame:
    """Parse text cells into dates and floats, naming the first cell that does not parse."""
    out = pd.DataFrame(index=raw.index)
    out["date"] = pd.to_datetime(raw["date"].str.strip(), format="%Y-%m-%d", errors="coerce").astype(
        "datetime64[ns]"
    )
    for col in COLUMNS[1:]:
        out[col] = pd.to_numeric(raw[col].str.strip(), errors="coerce").astype(float)
    for col in COLUMNS:
        bad = out[col].isna() & (raw[col].str.strip() != "")
        empty = raw[col].str.strip() == ""
        for mask, what in ((empty, "is empty"), (bad, "does not parse")):
            if mask.any():
                row = int(mask.idxmax())
                expected = "a YYYY-MM-DD date" if col == "date" else "a number"
                raise DataError(
                    f"{path} line {row + 2}, column {col}: value {raw[col].iloc[row]!r} {what}; "
                    f"expected {expected}."
                )
    return out


def _describe(path: Path, frame: pd.DataFrame, cases: pd.DataFrame) -> str:
    """One sentence for pandera's failure cases: the first failing line, and how many more.

    Column checks are reported before row checks (a row check lists every
    column of the failing row, which says nothing about which one is wrong).
    """
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
    return f"{path} {where}, column {first['column']}: value {first['failure_case']!r} fails check {first['check']}{more}."
