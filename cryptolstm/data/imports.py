"""Import a daily price CSV from elsewhere (a Yahoo, Kaggle or CoinMarketCap export; formats: docs/data.md).

The result must pass `cryptolstm.data.schema`'s checks, have no gap and no day after today (UTC), and agree
with the coin's stored prices (`_check_against_stored`); it is written under the data lock."""

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
    **{c: (c,) for c in ("open", "high", "low")},
    "close": ("close", "adj close", "adj. close", "price", "last"),
    "volume": ("volume", "volume usd", "vol.", "vol", "total_volume", "volume(usd)", "24h volume"),
}
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%d-%b-%Y", "%m/%d/%Y", "%d/%m/%Y",
                "%d.%m.%Y")
SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9}
THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def _read(path: Path) -> tuple[pd.DataFrame, str]:
    """The file as a frame of strings (its own header) and as text; every line as long as the header."""
    if problem := path_problem(path):
        raise DataError(f"{path} {problem}; import one daily price CSV file.")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; export it as a CSV file.") from None
    if not text.strip():
        raise DataError(f"{path} is empty.")
    try:
        delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
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
    # header key -> the file's column: "Close**" -> close, "Volume (USD)" -> volume(usd), " Adj Close " -> adj close
    keys = {re.sub(r"\s+", " ", str(c).replace("*", "").strip().lower()).replace(" (", "("): c for c in frame.columns}
    chosen = {ours: keys[next(n for n in names if n in keys)]  # the first of its names the file has
              for ours, names in ALIASES.items() if keys.keys() & names}
    base_volume = None if "volume" in chosen else next(
        (keys[k] for k in keys if k in (f"volume {coin.lower()}", f"volume({coin.lower()})")), None)
    if missing := [c for c in COLUMNS if c not in chosen and not (c == "volume" and base_volume)]:
        raise DataError(f"{path} has no {', '.join(missing)} column (its columns: {', '.join(map(str, frame.columns))}"
                        f"); a daily price file needs date, open, high, low, close and volume.")
    return chosen, base_volume


def _number(text: str) -> float:
    value = text.strip().replace("$", "").replace("US", "").replace("\u2212", "-").strip()
    if THOUSANDS.match(value):
        value = value.replace(",", "")
    scale = SUFFIX.get(value[-1:].lower())
    return float(value[:-1]) * scale if scale else float(value)


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
    if (empty := text == "").any():
        row = int(np.argmax(empty.to_numpy()))
        raise DataError(f"{path} line {row + 2}: the date is empty.")
    if text.str.fullmatch(r"\d{9,13}(\.0+)?").all():  # Unix time, seconds or milliseconds
        numbers = text.astype(float)
        return pd.DatetimeIndex(pd.to_datetime(numbers, unit="ms" if numbers.max() > 1e11 else "s")).normalize()
    iso = text.str.extract(r"^(\d{4}-\d{2}-\d{2})(?:[ T].*)?$")[0]
    text = iso if iso.notna().all() else text
    parsed = [pd.to_datetime(text, format=fmt, errors="coerce") for fmt in DATE_FORMATS]
    results = [p for p in parsed if p.notna().all()]
    if len({tuple(p) for p in results}) > 1:
        raise DataError(f"{path} has dates such as {text.iloc[0]!r} that read both as month/day and as day/month; "
                        f"export them as YYYY-MM-DD.")
    if not results:
        row = int(np.argmax(max(parsed, key=lambda p: p.notna().sum()).isna().to_numpy()))
        raise DataError(f"{path} line {row + 2}: date {values.iloc[row]!r} does not parse; use YYYY-MM-DD.")
    return pd.DatetimeIndex(results[0]).normalize()


def parse_prices(path: str | Path, coin: str, today: dt.date | None = None) -> pd.DataFrame:
    """A foreign daily price CSV -> the project's frame (index date ascending, open..volume in USD);
    a row dated after ``today`` (UTC; default: now) is refused."""
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
    missing = pd.date_range(frame.index[0], frame.index[-1], freq="D").difference(frame.index)
    if len(missing):
        raise DataError(f"{path} is missing {len(missing)} day(s) between {frame.index[0].date()} and "
                        f"{frame.index[-1].date()}, the first {missing[0].date()}; import a complete daily export.")
    return frame[list(COLUMNS[1:])]


def import_csv(path: str | Path, coin: str, data_dir: str | Path, today: dt.date | None = None) -> snapshots.Snapshot:
    """Import ``path`` as ``coin``'s prices into a new snapshot of ``data_dir`` (other coins kept), or
    `DataError` with nothing written when it does not parse, check or agree with the prices held."""
    frame = parse_prices(path, coin, today)
    with snapshots.locked(data_dir):  # the current state read here is the one the new snapshot replaces
        frames, sources, symbols = snapshots.carried(data_dir)
        _check_against_stored(Path(path), coin, frame, frames)
        frames[coin], sources[coin], symbols[coin] = frame, f"import:{Path(path).name}", coin
        return snapshots.write_snapshot(data_dir, frames, "import", symbols, sources,
                                        note=f"{coin} from {Path(path).name}")


def _check_against_stored(path: Path, coin: str, frame: pd.DataFrame, stored: dict[str, pd.DataFrame]) -> None:
    """Raise `DataError` if ``frame`` differs from ``coin``'s stored prices on a shared day, or equals
    another coin's on every day it shares with it (the ETH file given as ``--coin BTC``)."""
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
