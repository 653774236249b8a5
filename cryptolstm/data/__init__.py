"""Local daily prices: find, validate, fingerprint and merge the coins' CSVs (``btc-usd-daily.csv``...),
in a plain directory or its current snapshot (`cryptolstm.data.snapshots`). Never writes or fetches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryptolstm import features
from cryptolstm.config import COINS
from cryptolstm.data import snapshots
from cryptolstm.data.schema import read_daily_csv
from cryptolstm.data.snapshots import coin_file, sha256
from cryptolstm.errors import DataError, path_problem

log = logging.getLogger(__name__)

HOW_TO_SUPPLY = (
    "fetch prices with `cryptolstm fetch --data-dir DIR` (needs the network), import a CSV with "
    "`cryptolstm data import FILE --coin BTC --data-dir DIR`, or pass --data-dir (mlflow run: -P data_dir=...) "
    "or set CRYPTOLSTM_DATA_DIR to a directory holding btc-usd-daily.csv and eth-usd-daily.csv."
)


@dataclass(frozen=True)
class Market:
    """Merged daily prices of all coins.

    ``frame``: index ``date`` (ascending, daily), columns ``{COIN}_{open,high,low,close,volume}`` in USD;
    ``files``: coin -> (path, sha256); ``snapshot``: None for a plain directory; ``sealed_from``: the
    first sealed day, none of whose rows were read."""

    frame: pd.DataFrame
    files: dict[str, tuple[str, str]]
    snapshot: snapshots.Snapshot | None = None
    sealed_from: str | None = None

    @property
    def first_date(self) -> str:
        return self.frame.index[0].date().isoformat()

    @property
    def last_date(self) -> str:
        return self.frame.index[-1].date().isoformat()


def load_coin(data_dir: str | Path, coin: str, fill_gaps: bool = False) -> pd.DataFrame:
    """One coin's validated daily prices by date; gaps raise unless ``fill_gaps``; volume 0 ("not reported") is NaN."""
    return _load_file(data_dir, _pin(data_dir)[0], coin, fill_gaps)


def _pin(data_dir: str | Path) -> tuple[Path, snapshots.Snapshot | None]:
    """The directory of the current data and its snapshot, from one reading of the manifest."""
    if problem := path_problem(data_dir, directory=True):
        raise DataError(f"data directory {data_dir} {problem}; {HOW_TO_SUPPLY}")
    return snapshots.pinned(data_dir)


def _load_file(data_dir: str | Path, directory: Path, coin: str, fill_gaps: bool,
               sealed_from: str | None = None) -> pd.DataFrame:
    """``coin``'s file in ``directory``, zero volumes as NaN; missing days raise, or are forward-filled."""
    path = coin_file(directory, coin)
    if not path.is_file():
        raise DataError(f"no {path.name} in data directory {data_dir}; {HOW_TO_SUPPLY}")
    frame = read_daily_csv(path, before=sealed_from)
    frame["volume"] = frame["volume"].mask(frame["volume"] == 0)
    full = pd.date_range(frame.index[0], frame.index[-1], freq="D")
    missing = full.difference(frame.index)
    if missing.empty:
        return frame
    first = missing[0].date().isoformat()
    if not fill_gaps:
        raise DataError(f"{path} is missing {len(missing)} day(s), the first {first}; "
                        f"pass --fill-gaps (mlflow run: -P fill_gaps=true) to forward-fill them.")
    log.warning("%s: forward-filled %d missing day(s), the first %s", path, len(missing), first)
    return frame.reindex(full).ffill().rename_axis("date")


def load_market(data_dir: str | Path, merge_date: str, end_date: str | None = None, fill_gaps: bool = False,
                coins: tuple[str, ...] = COINS, sealed_from: str | None = None) -> Market:
    """Merge the coins on date from ``merge_date`` to ``end_date`` (inclusive), no day from ``sealed_from`` on.

    Leading days on which any coin's volume was not reported are dropped (no window divides by a
    zero volume); such a day inside the range is an error unless ``fill_gaps`` carries it forward."""
    directory, snapshot = _pin(data_dir)
    parts, files = [], {}
    for coin in coins:
        frame = _load_file(data_dir, directory, coin, fill_gaps, sealed_from)
        parts.append(frame.rename(columns=lambda field, coin=coin: features.column(coin, field)))
        path = coin_file(directory, coin)
        files[coin] = (str(path.resolve()), sha256(path))
    merged = pd.concat(parts, axis=1, join="inner").sort_index()
    merged = merged.loc[pd.Timestamp(merge_date) : pd.Timestamp(end_date) if end_date else None]
    merged = _drop_unreported_volume(merged, fill_gaps)
    if merged.empty:
        raise DataError(f"no day between {merge_date} and {end_date or 'the end'} has prices for all of "
                        f"{', '.join(coins)} in {data_dir}.")
    return Market(frame=merged, files=files, snapshot=snapshot, sealed_from=sealed_from)


def _drop_unreported_volume(frame: pd.DataFrame, fill_gaps: bool) -> pd.DataFrame:
    volume = frame[[c for c in frame.columns if c in {features.column(coin, "volume") for coin in COINS}]]
    reported = volume.notna().all(axis=1)
    if reported.any() and not reported.iloc[0]:
        start = reported.idxmax()
        log.warning("volume not reported before %s; the merged data starts there", start.date())
        frame, volume = frame.loc[start:], volume.loc[start:]
    holes = volume.isna().any(axis=1)
    if holes.any() and not fill_gaps:
        day = holes.idxmax().date()
        raise DataError(f"volume is 0 (not reported) on {int(holes.sum())} day(s) inside the range, the first {day}; "
                        f"pass --fill-gaps to carry the previous day's volume forward.")
    return frame.ffill()
