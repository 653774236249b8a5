"""Writers of one data directory at once, with real processes and real signals: imports started
together serialise on the directory's lock and lose nothing; a fetch waits for an import in
progress and keeps its coin; a writer killed while holding the lock leaves nothing stuck."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import responses

from cryptolstm.data import load_market, snapshots
from cryptolstm.data.fetch import RetryPolicy, fetch, make_exchange
from cryptolstm.data.imports import import_csv
from cryptolstm.errors import DataError
from tests.coinbase_fake import FakeCoinbase

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[1]
ROUNDS = (3, 4)  # processes started together in each round: into a new directory, then into one that holds both coins
# `python -m cryptolstm ARGS`, but started only once the file argv[1] exists: every process has
# imported the CLI (seconds) before any begins, so that their writes really overlap.
STARTER = """
import pathlib, runpy, sys, time
import cryptolstm.cli
go = pathlib.Path(sys.argv[1])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
sys.argv = ["cryptolstm", *sys.argv[2:]]
runpy.run_module("cryptolstm", run_name="__main__")
"""


def _source(folder: Path, coin: str, k: int) -> Path:
    """Import file number ``k``: 30 valid days whose volumes say which file they came from (the prices
    of a coin are the same in every file: an import that contradicts the stored prices is refused)."""
    close = (40_000.0 if coin == "BTC" else 2_000.0) * np.linspace(1, 1.05, 30)
    frame = pd.DataFrame({"date": pd.date_range("2023-01-01", periods=30).strftime("%Y-%m-%d"), "open": close,
                          "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e9 + k})
    path = folder / f"{coin.lower()}-{k:02d}.csv"
    frame.to_csv(path, index=False)
    return path


def _start_together(data: Path, sources: list[tuple[str, Path]], go: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, str(go), "data", "import", str(path), "--coin", coin,
                               "--data-dir", str(data)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for coin, path in sources]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    go.touch()
    return procs


def _check_store(data: Path, imported: dict[str, tuple[str, Path]]) -> None:
    """Every snapshot's files are what the manifest says; each import is in exactly one snapshot,
    which carries every other coin unchanged from the snapshot before it; ids sort in write order."""
    manifest = json.loads((data / "manifest.json").read_text())
    ids = list(manifest["snapshots"])
    assert ids == sorted(ids) and manifest["current"] == f"snapshots/{ids[-1]}"
    assert sorted(p.name for p in (data / "snapshots").iterdir()) == ids  # no stray or half-written snapshot
    previous, seen = {}, []
    for snap_id in ids:
        entry = manifest["snapshots"][snap_id]
        assert json.loads((data / "snapshots" / snap_id / "snapshot.json").read_text()) == entry
        for coin, info in entry["coins"].items():
            assert snapshots.sha256(snapshots.coin_file(data / "snapshots" / snap_id, coin)) == info["sha256"]
        coin, name = entry["note"].split(" from ")  # what this snapshot imported
        assert entry["coins"][coin]["source"] == f"import:{name}"
        stored = pd.read_csv(snapshots.coin_file(data / "snapshots" / snap_id, coin))
        np.testing.assert_allclose(stored["volume"], pd.read_csv(imported[name][1])["volume"], rtol=1e-12)
        carried = {c: i["sha256"] for c, i in entry["coins"].items() if c != coin}
        assert carried == {c: h for c, h in previous.items() if c != coin}  # nothing lost, nothing stale
        previous = {c: i["sha256"] for c, i in entry["coins"].items()}
        seen.append(name)
    assert sorted(seen) == sorted(imported)


@pytest.mark.slow
def test_imports_of_both_coins_started_together_lose_nothing(tmp_path):
    data, imported, k = tmp_path / "data", {}, 0
    for n, size in enumerate(ROUNDS):
        sources = []
        for i in range(size):
            coin = ("BTC", "ETH")[(i + n) % 2]
            k += 1
            sources.append((coin, _source(tmp_path, coin, k)))
            imported[sources[-1][1].name] = sources[-1]
        procs = _start_together(data, sources, tmp_path / f"go-{n}")
        for proc, (coin, path) in zip(procs, sources):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert out.startswith(f"imported {path} as {coin}: 2023-01-01..2023-01-30, 30 rows; snapshot ")
    _check_store(data, imported)
    # The current snapshot holds the latest import of each coin, and it loads.
    manifest = json.loads((data / "manifest.json").read_text())
    current = manifest["snapshots"][manifest["current"].split("/")[1]]
    for coin in ("BTC", "ETH"):
        last = [s for s in manifest["snapshots"].values() if s["note"].startswith(f"{coin} from")][-1]
        assert current["coins"][coin] == last["coins"][coin]
    assert load_market(data, "2023-01-01").snapshot.id == current["id"]
    assert len(manifest["snapshots"]) == sum(ROUNDS)


HOLD_AND_IMPORT = """
import sys, time
from cryptolstm.data import imports, snapshots
with snapshots.locked(sys.argv[1]):  # what a slow import looks like to others
    print("held", flush=True)
    time.sleep(2)
    imports.import_csv(sys.argv[2], "ETH", sys.argv[1])  # takes the same lock again
"""


@pytest.mark.slow
def test_a_fetch_waits_for_an_import_in_progress_and_keeps_its_coin(tmp_path):
    data, eth = tmp_path / "data", _source(tmp_path, "ETH", 1)
    exchange = make_exchange()  # ready before the import starts, so the fetch would read the store at once
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_IMPORT, str(data), str(eth)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            FakeCoinbase(mock)
            now = pd.Timestamp("2016-01-10 12:00", tz="UTC").to_pydatetime()
            report = fetch(str(data), coins=("BTC",), exchange=exchange, now=now,
                           retry=RetryPolicy(attempts=2, first_wait=0.01))
        waited = time.monotonic() - started
    finally:
        assert holder.wait(timeout=60) == 0
    assert waited > 1.0  # it could not read the current state before the import had written its snapshot
    coins = report.snapshot.coins
    assert coins["ETH"].source == "import:eth-01.csv" and coins["BTC"].source == "coinbaseexchange"
    assert [s.note for s in snapshots.all_snapshots(data)] == ["ETH from eth-01.csv", "BTC: full"]
    assert snapshots.current(data).id == report.snapshot.id


KILLED_WRITER = """
import sys, tempfile, time
from pathlib import Path
from cryptolstm.data import snapshots
with snapshots.locked(sys.argv[1]) as data:
    (data / "snapshots").mkdir(exist_ok=True)
    tempfile.mkdtemp(prefix=".20990101T000000.000000Z-import-to-2023-01-30-", dir=data / "snapshots")
    tempfile.mkstemp(prefix=".manifest-", dir=data)
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
def test_a_writer_killed_while_holding_the_lock_leaves_nothing_stuck(tmp_path):
    data = tmp_path / "data"
    import_csv(_source(tmp_path, "BTC", 1), "BTC", data)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(data)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "held\n"
        with pytest.raises(DataError) as info:
            with snapshots.locked(data, timeout=0.3):
                pass
        assert str(info.value) == (f"another import or fetch has held {data / '.manifest.lock'} for over 0.3 s; "
                                   f"wait for it to finish and run the command again.")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert len(list((data / "snapshots").glob(".*"))) == 1 and len(list(data.glob(".manifest-*"))) == 1
    started = time.monotonic()
    snap = import_csv(_source(tmp_path, "ETH", 2), "ETH", data)  # the OS released the dead writer's lock
    assert time.monotonic() - started < 10
    assert set(snap.coins) == {"BTC", "ETH"} and snapshots.current(data).id == snap.id
    assert list((data / "snapshots").glob(".*")) == [] and list(data.glob(".manifest-*")) == []


def test_the_lock_nests_within_a_process_however_the_directory_is_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with snapshots.locked(tmp_path / "data"), snapshots.locked("data", timeout=1), snapshots.locked("./data/", timeout=1):
        snap = import_csv(_source(tmp_path, "BTC", 1), "BTC", "data")  # takes it once more
    assert snapshots.current(tmp_path / "data").id == snap.id


def test_a_data_directory_that_cannot_be_created_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DataError) as info:
        import_csv(_source(tmp_path, "BTC", 1), "BTC", tmp_path / "file" / "data")
    assert str(info.value).startswith(f"cannot write to data directory {tmp_path / 'file' / 'data'} (")
    assert str(info.value).endswith(").") and "\n" not in str(info.value)
