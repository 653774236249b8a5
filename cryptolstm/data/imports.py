"""Import a daily price CSV from elsewhere (a Yahoo, Kaggle or CoinMarketCap export...).

Understood: delimiters ``, ; tab |``; a UTF-8 BOM; headers in any case, with
CoinMarketCap's asterisks (``Close**``) and units (``Volume (USD)``); the columns
``Date``/``Timestamp``/``Time``/``Open time``, ``Open``, ``High``, ``Low``, ``Close``
(else ``Adj Close`` or ``Price``), ``Volume`` (in USD; ``Volume BTC`` or ``Volume ETH``
is converted with the close); ``Market Cap`` and other columns are ignored;
numbers with ``$``, thousands separators or ``K``/``M``/``B`` suffixes; ISO dates
with or without a time, ``Jan 02, 2020``, ``02 Jan 2020``, ``MM/DD/YYYY`` or
``DD/MM/YYYY`` when the file itself tells which, and Unix timestamps; any row
order. The result must still be one row per day with no gap and none after today
(UTC), plausible prices and volumes, ``low <= open, close <= high``, no line
shorter than the header, no last line cut inside its last field and no
implausible one-day price jump (`cryptolstm.data.schema`); otherwise one sentence
names the line. It must also agree with the data directory: the coin's stored
prices on every day both hold, as a fetch checks its overlap day, and not be
another coin's stored prices (`_check_against_stored`).

The import itself (read the current snapshot, write the new one, replace the
manifest) runs under the data directory's lock (`snapshots.locked`), so
imports and fetches started together each keep the others' coins.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cryptolstm.config import COINS
from cryptolstm.data import snapshots
from cryptolstm.data.schema import (COLUMNS, check_cut_tail, check_days_done, check_fields, check_frame,
                                    check_overlap, first_disagreement)
from cryptolstm.errors import DataError, path_problem

ALIASES = {
    "date": ("date", "timestamp", "time", "datetime", "day", "open time", "date(utc)", "snapped_at", "time open"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close", "adj close", "adj. close", "price", "last"),
    "volume": ("volume", "volume usd", "vol.", "vol", "total_volume", "volume(usd)", "24h volume"),
}
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%d-%b-%Y", "%m/%d/%Y", "%d/%m/%Y",
                "%d.%m.%Y")
SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9}
THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def _header_key(name: str) -> str:
    """``"Close**"`` -> ``close``; ``"Volume (USD)"`` -> ``volume(usd)``; ``" Adj Close "`` -> ``adj close``."""
    key = re.sub(r"\s+", " ", str(name).replace("*", "").strip().lower())
    return key.replace(" (", "(")


def _read(path: Path) -> tuple[pd.DataFrame, str]:
    """The file as a frame of strings (its own header) and as text; every line as long as the header."""
    if problem := path_problem(path):
        raise DataError(f"{path} {problem}; import one daily price CSV file.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; export it as a CSV file.") from None
    if not text.strip():
        raise DataError(f"{path} is empty.")
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable CSV file ({str(exc).splitlines()[0]}).") from None
    if frame.empty:
        raise DataError(f"{path} has a header but no rows.")
    check_fields(path, text, delimiter)
    return frame, text


def _columns(path: Path, frame: pd.DataFrame, coin: str) -> tuple[dict[str, str], str | None]:
    """Our column -> the file's column, and the file's coin-denominated volume column if that is all it has."""
    keys = {_header_key(c): c for c in frame.columns}
    chosen = {}
    for ours, names in ALIASES.items():
        found = next((keys[n] for n in names if n in keys), None)
        if found is not None:
            chosen[ours] = found
    base_volume = None
    if "volume" not in chosen:
        base_volume = next((keys[k] for k in keys if k in (f"volume {coin.lower()}", f"volume({coin.lower()})")), None)
    missing = [c for c in COLUMNS if c not in chosen and not (c == "volume" and base_volume)]
    if missing:
        raise DataError(
            f"{path} has no {', '.join(missing)} column (its columns: {', '.join(map(str, frame.columns))}); "
            f"a daily price file needs date, open, high, low, close and volume."
        )
    return chosen, base_volume


def _number(text: str) -> float:
    value = text.strip().replace("$", "").replace("US", "").replace("\u2212", "-").strip()
    if THOUSANDS.match(value):
        value = value.replace(",", "")
    scale = 1.0
    if value[-1:].lower() in SUFFIX:
        scale, value = SUFFIX[value[-1].lower()], value[:-1]
    return float(value) * scale


def _numbers(path: Path, frame: pd.DataFrame, column: str, ours: str) -> np.ndarray:
    out = np.empty(len(frame))
    for row, text in enumerate(frame[column]):
        try:
            out[row] = _number(text)
        except (ValueError, IndexError):
            what = "is empty" if not str(text).strip() else "does not parse as a number"
            raise DataError(f"{path} line {row + 2}, column {column} ({ours}): value {text!r} {what}.") from None
    return out


def _dates(path: Path, values: pd.Series) -> pd.DatetimeIndex:
    text = values.str.strip()
    empty = text == ""
    if empty.any():
        row = int(np.argmax(empty.to_numpy()))
        raise DataError(f"{path} line {row + 2}: the date is empty.")
    if text.str.fullmatch(r"\d{9,13}(\.0+)?").all():  # Unix time, seconds or milliseconds
        numbers = text.astype(float)
        return pd.DatetimeIndex(pd.to_datetime(numbers, unit="ms" if numbers.max() > 1e11 else "s")).normalize()
    iso = text.str.extract(r"^(\d{4}-\d{2}-\d{2})(?:[ T].*)?$")[0]
    if iso.notna().all():
        text = iso
    results = {}
    for fmt in DATE_FORMATS:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        if parsed.notna().all():
            results[fmt] = parsed
    distinct = {tuple(v) for v in results.values()}
    if len(distinct) > 1:
        raise DataError(
            f"{path} has dates such as {text.iloc[0]!r} that read both as month/day and as day/month; "
            f"export them as YYYY-MM-DD."
        )
    if not results:
        best = max(DATE_FORMATS, key=lambda f: pd.to_datetime(text, format=f, errors="coerce").notna().sum())
        row = int(np.argmax(pd.to_datetime(text, format=best, errors="coerce").isna().to_numpy()))
        raise DataError(f"{path} line {row + 2}: date {values.iloc[row]!r} does not parse; use YYYY-MM-DD.")
    return pd.DatetimeIndex(next(iter(results.values()))).normalize()


def parse_prices(path: str | Path, coin: str, today: dt.date | None = None) -> pd.DataFrame:
    """A foreign daily price CSV -> the project's frame (index date ascending, open..volume in USD).

    ``today``: the current UTC day (default: now); a row dated after it is refused.
    """
    path = Path(path)
    if coin not in COINS:
        raise DataError(f"coin must be one of {', '.join(COINS)}; got {coin!r}.")
    raw, text = _read(path)
    chosen, base_volume = _columns(path, raw, coin)
    if raw.columns[-1] in (*chosen.values(), base_volume):  # else the last column is one we ignore
        check_cut_tail(path, raw, text, _number)
    frame = pd.DataFrame({ours: _numbers(path, raw, col, ours) for ours, col in chosen.items() if ours != "date"})
    if base_volume is not None:
        frame["volume"] = _numbers(path, raw, base_volume, "volume") * frame["close"]
    frame.insert(0, "date", _dates(path, raw[chosen["date"]]))
    check_frame(path, frame[list(COLUMNS)])  # row numbers are still the file's
    check_days_done(path, frame["date"], today or dt.datetime.now(dt.UTC).date())
    frame = frame.sort_values("date").set_index("date")
    full = pd.date_range(frame.index[0], frame.index[-1], freq="D")
    missing = full.difference(frame.index)
    if len(missing):
        raise DataError(
            f"{path} is missing {len(missing)} day(s) between {frame.index[0].date()} and {frame.index[-1].date()}, "
            f"the first {missing[0].date()}; import a complete daily export."
        )
    return frame[list(COLUMNS[1:])]


def import_csv(path: str | Path, coin: str, data_dir: str | Path, today: dt.date | None = None) -> snapshots.Snapshot:
    """Import ``path`` as ``coin``'s prices into a new snapshot of ``data_dir`` (other coins kept).

    Refused (`DataError`, nothing written) when the file does not parse or check (`parse_prices`;
    ``today``: the current UTC day, default now) or contradicts the prices ``data_dir`` holds
    (`_check_against_stored`).
    """
    frame = parse_prices(path, coin, today)
    with snapshots.locked(data_dir):  # the current state read here is the one the new snapshot replaces
        frames, sources, symbols = snapshots.carried(data_dir)
        _check_against_stored(Path(path), coin, frame, frames)
        frames[coin], sources[coin], symbols[coin] = frame, f"import:{Path(path).name}", coin
        return snapshots.write_snapshot(data_dir, frames, "import", symbols, sources,
                                        note=f"{coin} from {Path(path).name}")


def _check_against_stored(path: Path, coin: str, frame: pd.DataFrame, stored: dict[str, pd.DataFrame]) -> None:
    """Raise `DataError` if ``frame`` (``path`` read as ``coin``) contradicts the ``stored`` frames: a
    price of a day ``coin`` already holds differs (the overlap check a fetch makes), or the file
    agrees on every day it shares with another coin's stored prices (the ETH file given as
    ``--coin BTC`` where no BTC overlaps to tell)."""
    if coin in stored:
        check_overlap(coin, stored[coin], frame, f"{path.name} says",
                      f"check that {path} holds {coin} prices; prices from another source go into a data "
                      f"directory of their own, --data-dir")
    for other, prices in sorted(stored.items()):
        shared = prices.index.intersection(frame.index)
        if other != coin and len(shared) and first_disagreement(prices, frame) is None:
            raise DataError(f"{path} holds {other} prices: on all {len(shared)} day(s) it shares with the stored "
                            f"{other}, its prices are the same; nothing was written (import it with --coin {other}).")


def describe_import(file: str, snap: snapshots.Snapshot, coin: str, data_dir: str) -> str:
    """What an import stored, as the command prints it."""
    info = snap.coins[coin]
    return (f"imported {file} as {info.coin}: {info.first_date}..{info.last_date}, {info.rows} rows; "
            f"snapshot {snap.id} is now current in {data_dir}.")
