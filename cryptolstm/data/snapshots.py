"""Immutable data snapshots (``snapshots/<id>/``, renamed into place when complete, read-only) and the
``manifest.json`` naming the current one, replaced atomically. Writers serialise on an OS lock
(`locked`) so none loses another's update; readers read the manifest once (`pinned`), no lock."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from cryptolstm.data.schema import COLUMNS, read_daily_csv
from cryptolstm.errors import DataError, path_problem

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = ".manifest.lock"
LOCK_TIMEOUT_S = 600.0  # a full fetch of both coins takes under a minute; retries with back-off a few
SNAPSHOT_INFO = "snapshot.json"


def coin_file(directory: str | Path, coin: str) -> Path:
    """Path of a coin's daily CSV inside a directory of price files."""
    return Path(directory) / f"{coin.lower()}-usd-daily.csv"


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes: its fingerprint."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class CoinFile:
    """One coin's file in a snapshot: where its rows came from (source, symbol there), days, rows, sha256."""

    coin: str
    source: str
    symbol: str
    first_date: str
    last_date: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's manifest entry: what wrote it (``source``), when, and each coin's file."""

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
        manifest["current"], manifest["snapshots"]  # both keys must exist
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path} is not a valid snapshot manifest; restore it or remove it to start over.") from None
    return manifest


def current(data_dir: str | Path) -> Snapshot | None:
    """The current snapshot of a store, or None for a plain directory."""
    return pinned(data_dir)[1]


def resolve(data_dir: str | Path) -> Path:
    """The directory whose CSVs are the data: the current snapshot's, or ``data_dir`` itself."""
    return pinned(data_dir)[0]


def pinned(data_dir: str | Path) -> tuple[Path, Snapshot | None]:
    """The data's directory and its snapshot (None for a plain directory), from one reading of the manifest."""
    manifest = read_manifest(data_dir)
    if manifest is None:
        return Path(data_dir), None
    directory = Path(data_dir) / manifest["current"]
    if not directory.is_dir():
        raise DataError(f"the manifest of {data_dir} names snapshot {manifest['current']}, which does not exist.")
    return directory, Snapshot.from_dict(manifest["snapshots"][directory.name])


@contextmanager
def locked(data_dir: str | Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[Path]:
    """Hold ``data_dir``'s write lock for the block: re-entrant in a process, released when the holder
    dies; `DataError` after ``timeout`` seconds waiting for another writer."""
    from filelock import FileLock, Timeout

    directory = Path(data_dir)
    if directory.exists() and (problem := path_problem(directory, directory=True)):  # else mkdir says "File exists"
        raise DataError(f"data directory {directory} {problem}.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # One lock object per directory in a process (however its path is spelled), so taking it again nests.
        lock = FileLock(directory.resolve() / LOCK, is_singleton=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another import or fetch is writing to %s; waiting for it (at most %g s)", directory, timeout)
            lock.acquire(timeout=timeout)
    except Timeout:
        raise DataError(f"another import or fetch has held {directory / LOCK} for over {timeout:g} s; "
                        f"wait for it to finish and run the command again.") from None
    except OSError as exc:
        raise DataError(f"cannot write to data directory {directory} ({exc.strerror or exc}).") from None
    try:
        yield directory
    finally:
        lock.release()


def has_data(data_dir: str | Path) -> bool:
    """True if ``data_dir`` holds a manifest or any coin's price file."""
    directory = Path(data_dir)
    return (directory / MANIFEST).is_file() or any(directory.glob("*-usd-daily.csv"))


def all_snapshots(data_dir: str | Path) -> list[Snapshot]:
    """Every snapshot the manifest knows, oldest first."""
    manifest = read_manifest(data_dir)
    return [] if manifest is None else [Snapshot.from_dict(s) for s in manifest["snapshots"].values()]


def _write_durably(path: Path | int, text: str) -> None:
    """Write ``text`` to a new file (its path, or a descriptor open on it) and flush it to the disk (a manifest
    never names bytes still in memory)."""
    with open(path, "x") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_snapshot(data_dir: str | Path, frames: dict[str, pd.DataFrame], source: str, symbols: dict[str, str],
                   sources: dict[str, str] | None = None, note: str = "", now: dt.datetime | None = None) -> Snapshot:
    """Write ``frames`` (coin -> daily frame) as a new snapshot, validated by reading it back, and make it current.

    ``source``: what wrote it; ``sources``: per coin, where its rows came from (default ``source``);
    ``symbols``: per coin, its name there; ``now``: when (UTC; default: now, under the lock). A caller
    that built ``frames`` from `carried` must hold `locked` since then."""
    data_dir, store = Path(data_dir), Path(data_dir) / "snapshots"
    with locked(data_dir):
        for tmp in store.glob(".*"):  # what a writer killed half-way left
            shutil.rmtree(tmp, ignore_errors=True)
        for tmp in data_dir.glob(".manifest-*"):
            tmp.unlink(missing_ok=True)
        now = now or dt.datetime.now(dt.UTC)
        manifest = read_manifest(data_dir) or {"snapshots": {}}
        last = max(frame.index.max() for frame in frames.values()).date().isoformat()
        snap_id = _new_id(store, manifest, f"{now:%Y%m%dT%H%M%S.%fZ}-{source}-to-{last}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{snap_id}-", dir=store))
        try:
            coins = _write_files(tmp, frames, source, symbols, sources or {})
            snapshot = Snapshot(snap_id, source, now.isoformat(timespec="seconds"), coins, note)
            _write_durably(tmp / SNAPSHOT_INFO, json.dumps(snapshot.to_dict(), indent=2))
            for path in tmp.iterdir():
                path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.rename(tmp, store / snap_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        manifest["snapshots"][snap_id] = snapshot.to_dict()
        manifest["current"] = f"snapshots/{snap_id}"
        # The manifest is replaced atomically: a reader sees the old one or the new one, never a mix.
        fd, tmp_manifest = tempfile.mkstemp(prefix=".manifest-", dir=data_dir)
        _write_durably(fd, json.dumps(manifest, indent=2))
        os.replace(tmp_manifest, data_dir / MANIFEST)
    return snapshot


def _new_id(store: Path, manifest: dict, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... if taken (unique because chosen under the lock)."""
    store.mkdir(parents=True, exist_ok=True)
    snap_id, n = base, 1
    while snap_id in manifest["snapshots"] or (store / snap_id).exists():
        n += 1
        snap_id = f"{base}-{n}"
    return snap_id


def _write_files(tmp: Path, frames: dict[str, pd.DataFrame], source: str, symbols: dict[str, str],
                 sources: dict[str, str]) -> dict[str, CoinFile]:
    """Write every coin's file into ``tmp`` in the project's CSV format and describe it as read back."""
    coins = {}
    for coin, frame in sorted(frames.items()):
        path, out = coin_file(tmp, coin), frame.reset_index()
        out["date"] = pd.to_datetime(out["date"]).dt.strftime("%Y-%m-%d")
        _write_durably(path, out[list(COLUMNS)].to_csv(index=False, float_format="%.17g", lineterminator="\n"))
        checked = read_daily_csv(path, warn=False)  # its source was checked (and warned about) when read
        first, final = (d.date().isoformat() for d in (checked.index[0], checked.index[-1]))
        coins[coin] = CoinFile(coin, sources.get(coin, source), symbols.get(coin, coin), first, final,
                               len(checked), sha256(path))
    return coins


def carried(data_dir: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, str]]:
    """What a new snapshot of ``data_dir`` starts from: every coin's current frame, its source and its
    symbol there. Hold `locked` from this call until `write_snapshot` returns, or an update is lost."""
    if not has_data(data_dir):
        return {}, {}, {}
    directory, now = pinned(data_dir)
    # No volume warnings: these files were checked when they were written.
    frames = {p.name.split("-")[0].upper(): read_daily_csv(p, warn=False)
              for p in sorted(directory.glob("*-usd-daily.csv"))}
    if now is None:
        return frames, {c: f"files:{data_dir}" for c in frames}, {c: c for c in frames}
    return frames, {c: now.coins[c].source for c in frames}, {c: now.coins[c].symbol for c in frames}


def describe_all(data_dir: str | Path) -> str:
    """The snapshots of ``data_dir``, oldest first, ``*`` marking the current one (as ``data list`` prints)."""
    if problem := path_problem(data_dir, directory=True):
        raise DataError(f"data directory {data_dir} {problem}.")
    every, now = all_snapshots(data_dir), current(data_dir)
    if not every:
        return f"{data_dir} has no snapshots (a plain directory of price files, or empty)."
    lines = []
    for snap in every:
        coins = ", ".join(f"{c} {f.first_date}..{f.last_date} ({f.source})" for c, f in sorted(snap.coins.items()))
        lines.append(f"{'*' if now is not None and snap.id == now.id else ' '} {snap.id}: {coins}")
    return "\n".join(lines)
