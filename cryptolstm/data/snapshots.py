"""Immutable data snapshots and the manifest that names the current one.

A data directory is either a plain directory of ``{coin}-usd-daily.csv`` files
(like ``../shared/data``) or a snapshot store::

    data/
      manifest.json                 {"current": "snapshots/<id>", "snapshots": {<id>: {...}}}
      snapshots/<id>/btc-usd-daily.csv, eth-usd-daily.csv, snapshot.json

A snapshot is written into a temporary directory beside its final place and
renamed into place only when complete, its files made read-only; then
``manifest.json`` is replaced atomically. A write that fails half-way therefore
leaves the previous snapshot current and intact, and no snapshot is ever
changed after it exists.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from cryptolstm.data.schema import COLUMNS
from cryptolstm.errors import DataError

MANIFEST = "manifest.json"
SNAPSHOT_INFO = "snapshot.json"


def coin_file(directory: str | Path, coin: str) -> Path:
    """Path of a coin's daily CSV inside a directory of price files."""
    return Path(directory) / f"{coin.lower()}-usd-daily.csv"


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes: its fingerprint."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class CoinFile:
    """One coin's file in a snapshot: where its rows came from (source, symbol there), first and
    last day, rows, sha256."""

    coin: str
    source: str
    symbol: str
    first_date: str
    last_date: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's manifest entry: what made it (``source``: the fetch or import that wrote it),
    when, and each coin's file."""

    id: str
    source: str
    fetched_at: str
    coins: dict[str, CoinFile]
    note: str = ""

    @property
    def first_date(self) -> str:
        return min(c.first_date for c in self.coins.values())

    @property
    def last_date(self) -> str:
        return max(c.last_date for c in self.coins.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "first_date": self.first_date, "last_date": self.last_date}

    @classmethod
    def from_dict(cls, raw: dict) -> Snapshot:
        coins = {k: CoinFile(**v) for k, v in raw["coins"].items()}
        return cls(raw["id"], raw["source"], raw["fetched_at"], coins, raw.get("note", ""))


def read_manifest(data_dir: str | Path) -> dict | None:
    """The store's manifest, or None for a plain directory of price files."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        manifest["current"], manifest["snapshots"]  # noqa: B018 - both keys must exist
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path} is not a valid snapshot manifest; restore it or remove it to start over.") from None
    return manifest


def current(data_dir: str | Path) -> Snapshot | None:
    """The current snapshot of a store, or None for a plain directory."""
    manifest = read_manifest(data_dir)
    if manifest is None:
        return None
    return Snapshot.from_dict(manifest["snapshots"][Path(manifest["current"]).name])


def resolve(data_dir: str | Path) -> Path:
    """The directory whose CSVs are the data: the current snapshot's, or ``data_dir`` itself."""
    manifest = read_manifest(data_dir)
    if manifest is None:
        return Path(data_dir)
    directory = Path(data_dir) / manifest["current"]
    if not directory.is_dir():
        raise DataError(f"the manifest of {data_dir} names snapshot {manifest['current']}, which does not exist.")
    return directory


def has_data(data_dir: str | Path) -> bool:
    """True if ``data_dir`` holds a manifest or any coin's price file."""
    directory = Path(data_dir)
    return (directory / MANIFEST).is_file() or any(directory.glob("*-usd-daily.csv"))


def all_snapshots(data_dir: str | Path) -> list[Snapshot]:
    """Every snapshot the manifest knows, oldest first."""
    manifest = read_manifest(data_dir)
    return [] if manifest is None else [Snapshot.from_dict(s) for s in manifest["snapshots"].values()]


def _write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write one coin's frame (index date, columns open..volume) in the project's CSV format."""
    out = frame.reset_index()
    out["date"] = pd.to_datetime(out["date"]).dt.strftime("%Y-%m-%d")
    out[list(COLUMNS)].to_csv(path, index=False, float_format="%.17g", lineterminator="\n")


def _replace_manifest(data_dir: Path, manifest: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=data_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, data_dir / MANIFEST)


def write_snapshot(
    data_dir: str | Path,
    frames: dict[str, pd.DataFrame],
    source: str,
    symbols: dict[str, str],
    sources: dict[str, str] | None = None,
    note: str = "",
    now: dt.datetime | None = None,
) -> Snapshot:
    """Write ``frames`` (coin -> daily frame) as a new snapshot and make it current.

    ``source``: what wrote it (``coinbaseexchange``, ``import``); ``sources``: per coin, where
    its rows came from (default ``source``); ``symbols``: per coin, its name there.

    The files are validated by reading them back with the project's schema
    before the snapshot is renamed into place.
    """
    from cryptolstm.data.schema import read_daily_csv

    data_dir = Path(data_dir)
    now = now or dt.datetime.now(dt.UTC)
    store = data_dir / "snapshots"
    store.mkdir(parents=True, exist_ok=True)
    last = max(frame.index.max() for frame in frames.values()).date().isoformat()
    snap_id = f"{now:%Y%m%dT%H%M%SZ}-{source}-to-{last}"
    for n in range(2, 1000):  # never overwrite: a second snapshot in the same second gets a suffix
        if not (store / snap_id).exists():
            break
        snap_id = f"{now:%Y%m%dT%H%M%SZ}-{source}-to-{last}-{n}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{snap_id}-", dir=store))
    try:
        coins = {}
        for coin, frame in sorted(frames.items()):
            path = coin_file(tmp, coin)
            _write_frame(frame, path)
            checked = read_daily_csv(path)
            first, final = (d.date().isoformat() for d in (checked.index[0], checked.index[-1]))
            coin_source = (sources or {}).get(coin, source)
            coins[coin] = CoinFile(coin, coin_source, symbols.get(coin, coin), first, final, len(checked), sha256(path))
        snapshot = Snapshot(snap_id, source, now.isoformat(timespec="seconds"), coins, note)
        (tmp / SNAPSHOT_INFO).write_text(json.dumps(snapshot.to_dict(), indent=2))
        for path in tmp.iterdir():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.rename(tmp, store / snap_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = read_manifest(data_dir) or {"snapshots": {}}
    manifest["snapshots"][snap_id] = snapshot.to_dict()
    manifest["current"] = f"snapshots/{snap_id}"
    _replace_manifest(data_dir, manifest)
    return snapshot


def frames_of(data_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Every coin's validated frame in the current data of ``data_dir`` (no gap handling)."""
    from cryptolstm.data.schema import read_daily_csv

    directory = resolve(data_dir)
    return {p.name.split("-")[0].upper(): read_daily_csv(p) for p in sorted(directory.glob("*-usd-daily.csv"))}


def carried(data_dir: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, str]]:
    """What a new snapshot of ``data_dir`` starts from: every coin's current frame, where its rows
    came from and its symbol there (``files:<dir>`` for a plain directory's files); empty if
    the directory holds no data. A fetch or import replaces only the coins it brings."""
    if not has_data(data_dir):
        return {}, {}, {}
    frames, now = frames_of(data_dir), current(data_dir)
    if now is None:
        return frames, {c: f"files:{data_dir}" for c in frames}, {c: c for c in frames}
    return frames, {c: now.coins[c].source for c in frames}, {c: now.coins[c].symbol for c in frames}


def describe_all(data_dir: str | Path) -> str:
    """The snapshots of ``data_dir``, oldest first, ``*`` marking the current one (as ``data list`` prints)."""
    if not Path(data_dir).is_dir():
        raise DataError(f"data directory {data_dir} does not exist.")
    every, now = all_snapshots(data_dir), current(data_dir)
    if not every:
        return f"{data_dir} has no snapshots (a plain directory of price files, or empty)."
    lines = []
    for snap in every:
        mark = "*" if now is not None and snap.id == now.id else " "
        coins = ", ".join(f"{c} {f.first_date}..{f.last_date} ({f.source})" for c, f in sorted(snap.coins.items()))
        lines.append(f"{mark} {snap.id}: {coins}")
    return "\n".join(lines)
