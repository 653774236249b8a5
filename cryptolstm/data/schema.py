"""The daily price file format and its validation (pandera).

Format (see ``../shared/data/README.md``): header ``date,open,high,low,close,volume``;
one row per UTC day; prices and volume in USD. Errors name the file, the line
(1 = header) and the column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from cryptolstm.errors import DataError

COLUMNS = ("date", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")

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


def read_daily_csv(path: Path) -> pd.DataFrame:
    """Read and validate one coin's daily CSV.

    Returns a frame indexed by ``date`` (datetime64, ascending) with float
    columns open, high, low, close (USD) and volume (USD per 24 h).
    Raises `DataError` with one sentence naming file, line and column.
    """
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV file ({str(exc).splitlines()[0]}).") from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {', '.join(missing)}; the header must be {','.join(COLUMNS)}."
        )
    frame = _parse(path, raw[list(COLUMNS)])
    check_frame(path, frame)
    return frame.sort_values("date").set_index("date")


def check_frame(path: Path, frame: pd.DataFrame) -> None:
    """Validate parsed rows (columns date..volume, index = 0-based row of the file) against the
    schema; raise `DataError` naming ``path``'s first failing line."""
    try:
        _SCHEMA.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DataError(_describe(path, frame, exc.failure_cases)) from None


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
