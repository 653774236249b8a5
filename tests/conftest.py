"""Shared set-up: synthetic price files made here (the quick tests need nothing outside the
repository), the real price data beside the repository where a test needs it (skipped without
it), tiny configs, temporary MLflow stores (copies of one store made once), the command-line
helpers, and the check behind the `slow` marker (a test that starts a process or trains a
network must carry it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One thread per TensorFlow process, here and in every command a test starts: the tiny networks train
# no faster on more (measured: a 3-epoch tiny train 4.6 s on one thread, 6.9 s on the default), and two
# test workers plus the processes they start would otherwise fight over 2 cores.
for _threads in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
# No test reaches the internet: commands never fetch missing data on their own here (the fetch
# tests drive the client against recorded-format HTTP responses instead).
os.environ.setdefault("CRYPTOLSTM_OFFLINE", "1")

import mlflow
import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import RunConfig

pytest_plugins = ("pytester",)  # tests/test_architecture.py runs the `slow` check on a pytest of its own

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRYPTOLSTM_TEST_DATA", ROOT.parent / "shared" / "data"))
LEAKED = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")  # what `mlflow run` leaves set
MERGE = "2021-01-01"  # the tiny models' first day: 334 synthetic days to 2021-11-30 (233 train, 50 val, 51 test)


# --- the `slow` marker: what it means, checked ---------------------------------------------------
# `slow` = the test trains a network or starts a process. The quick subset (-m "not slow") must stay
# quick, so a test without the marker that does either fails, naming what it did. Processes are
# seen through Python's audit events; training through a counter around keras.Model.fit (Keras is
# imported here, so that the counter is in place before any test can train).
PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.system"})
# Not the test's doing: MLflow asks git for the commit of the code behind a process's first run, and
# matplotlib asks fc-list for the fonts when it builds its font cache (once per machine).
INCIDENTAL = frozenset({"git", "fc-list"})
_seen: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event in PROCESS_EVENTS and Path(str(args[0])).name not in INCIDENTAL:
        _seen.append(f"started a process ({event} {str(args[0])[:80]})")


sys.addaudithook(_audit)


def _count_fits() -> None:
    import keras

    if getattr(keras.Model.fit, "_counted", False):
        return
    fit = keras.Model.fit

    def counted(self, *args, **kwargs):
        _seen.append("trained a network (keras.Model.fit)")
        return fit(self, *args, **kwargs)

    counted._counted = True
    keras.Model.fit = counted


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """From here on, what the test (its fixtures' set-up included) starts or trains is counted."""
    _count_fits()
    _seen.clear()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    if _seen and item.get_closest_marker("slow") is None:
        pytest.fail(f"{item.nodeid} {_seen[0]} but is not marked slow (slow = trains a network or starts a "
                    "process; the quick subset runs without them)", pytrace=False)
    return result


# Under `-n 2` (`--dist loadfile`) a file runs whole on one worker, the files handed out in the order
# collected: the longest first (measured with `--durations`, docs/testing.md) keeps the two workers'
# ends together instead of leaving one long file to run alone at the end. Other files keep their order.
LONGEST_FIRST = ("test_distributed.py", "test_reliability.py", "test_walkthrough_search.py", "test_mlproject.py",
                 "test_search.py", "test_walkthrough.py", "test_reliability_store.py", "test_backtest.py",
                 "test_pyfunc.py", "test_registry.py", "test_reliability_registry.py", "test_cluster.py",
                 "test_cli.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort: each file's own order


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real BTC and ETH daily prices up to 2023-12-31 (never copied here); a test
    that needs them is skipped, saying why, where they are absent."""
    if not (SHARED_DATA / "btc-usd-daily.csv").is_file():
        pytest.skip(f"needs the real price files at {SHARED_DATA} (set CRYPTOLSTM_TEST_DATA)")
    return SHARED_DATA


def tiny_config(data_dir: Path | str, **changes) -> RunConfig:
    """A config that trains in a few seconds: one small layer, two epochs, 2023 only."""
    base = dict(
        data_dir=str(data_dir), merge_date="2023-01-01", layers=1, neurons=4, epochs=2, batch_size=64, seed=7
    )
    return RunConfig(**{**base, **changes})


def synthetic_coin(days: int, seed: int, level: float, start: str = "2020-01-01") -> pd.DataFrame:
    """One coin's daily prices like the shared files' (date, open, high, low, close, volume in USD):
    a random walk whose volatility clusters (a GARCH(1,1) with t shocks), the next open at the
    close, a high and low around them, positive volumes."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_t(5, days) / np.sqrt(5 / 3)
    variance, returns = np.empty(days), np.empty(days)
    variance[0] = 0.03 ** 2
    for t in range(days):
        if t:
            variance[t] = 2e-5 + 0.1 * returns[t - 1] ** 2 + 0.85 * variance[t - 1]
        returns[t] = np.sqrt(variance[t]) * shocks[t]
    close = level * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[level], close[:-1]])
    spread = np.abs(rng.normal(0, 0.5, days)) * np.sqrt(variance)
    return pd.DataFrame({"date": pd.date_range(start, periods=days, freq="D").strftime("%Y-%m-%d"),
                         "open": open_, "high": np.maximum(open_, close) * (1 + spread),
                         "low": np.minimum(open_, close) * (1 - spread), "close": close,
                         "volume": level * 1e5 * np.exp(rng.normal(0, 0.4, days))})


def write_synthetic(folder: Path, days: int = 700, seed: int = 0, start: str = "2020-01-01") -> Path:
    """``folder`` with ``btc-usd-daily.csv`` and ``eth-usd-daily.csv`` of `synthetic_coin` prices."""
    folder.mkdir(parents=True, exist_ok=True)
    for coin, level, offset in (("btc", 10_000.0, 0), ("eth", 500.0, 100)):
        synthetic_coin(days, seed + offset, level, start).to_csv(folder / f"{coin}-usd-daily.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A data directory of 700 synthetic days of both coins, 2020-01-01 to 2021-11-30."""
    return write_synthetic(tmp_path_factory.mktemp("synthetic") / "data")


@pytest.fixture(scope="session")
def synthetic_market(synthetic_data):
    """`load_market` of `synthetic_data`, every day."""
    from cryptolstm.data import load_market

    return load_market(synthetic_data, "2020-01-01")


@pytest.fixture(scope="session")
def market(synthetic_data):
    """`load_market` of `synthetic_data` from `MERGE`: what the tiny models train on."""
    from cryptolstm.data import load_market

    return load_market(synthetic_data, MERGE)


def synthetic_frame(days: int = 60, seed: int = 0, start: str = "2020-01-01") -> pd.DataFrame:
    """A merged frame like `load_market`'s (``{COIN}_{open,high,low,close,volume}``) of `synthetic_coin` prices."""
    parts = []
    for coin, level, offset in (("BTC", 10_000.0, 0), ("ETH", 500.0, 100)):
        frame = synthetic_coin(days, seed + offset, level, start)
        parts.append(frame.assign(date=pd.to_datetime(frame["date"])).set_index("date").add_prefix(f"{coin}_"))
    return pd.concat(parts, axis=1)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a coin frame (columns date, open, high, low, close, volume) as the project's CSV format."""
    frame.to_csv(path, index=False)
    return path


def clear_mlflow_env(monkeypatch) -> None:
    """Unset what an enclosing `mlflow run` would leave set, so a test's runs go where it says."""
    for leaked in LEAKED:
        monkeypatch.delenv(leaked, raising=False)


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """A folder holding an empty MLflow SQLite store, its tables made once (MLflow's migrations take
    seconds; a copy takes milliseconds)."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("empty-store")
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder


def copy_store(source: Path, folder: Path) -> str:
    """Copy the MLflow store of folder ``source`` (``mlflow.db`` and ``mlruns/``) into ``folder``,
    every path recorded in it moved along (experiments' artifact locations, runs' artifact URIs,
    model versions' sources, MLmodel files), so that the copy is a store of its own; its tracking URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "mlflow.db", folder / "mlflow.db")
    old, new = f"{source}/", f"{folder}/"
    if (source / "mlruns").is_dir():
        shutil.copytree(source / "mlruns", folder / "mlruns", dirs_exist_ok=True)
        for model in (folder / "mlruns").rglob("MLmodel"):  # it names its own folder
            model.write_text(model.read_text().replace(old, new))
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db, db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in db.execute(f"PRAGMA table_info('{table}')").fetchall():
                if column[2].upper().startswith(("VARCHAR", "TEXT")):
                    db.execute(f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?) '
                               f'WHERE instr("{column[1]}", ?) > 0', (old, new, old))
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def new_store(_empty_store):
    """``new_store(folder)``: an empty MLflow store at ``folder/mlflow.db`` (artifacts under
    ``folder/mlruns``), as a first command there would make it; its tracking URI."""
    return lambda folder: copy_store(_empty_store, Path(folder))


CUT = "2021-09-30"  # the registered tiny model's data ends here: 61 synthetic days follow it


@contextlib.contextmanager
def building_store(root: Path, empty: Path):
    """For a store made once (a session or module fixture): `empty`'s store copied to ``root``, and
    this process working there on it (directory, tracking URI) for the block; yields its URI."""
    from cryptolstm.tracking import use_tracking_uri

    uri = copy_store(empty, root)
    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        clear_mlflow_env(patch)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        use_tracking_uri(uri)
        yield uri
    mlflow.set_tracking_uri(before)


def work_on_copy(source: Path, folder: Path, monkeypatch) -> str:
    """A copy of the store made once in ``source`` at ``folder``, this test working there on it
    (directory, tracking URI, for this process and the commands it starts); the copy's URI."""
    monkeypatch.chdir(folder)
    clear_mlflow_env(monkeypatch)
    uri = copy_store(source, folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def _ends_runs():
    """Whatever run a test leaves active is ended after it."""
    yield
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def registered(tmp_path_factory, synthetic_data, _empty_store):
    """A store made once: version 1 of cryptolstm-btc, champion, a tiny Gaussian-head BTC model (so
    it has intervals) trained in-process on the synthetic days from `MERGE` to `CUT`. Read-only:
    a test that writes works on a copy (`champion_store`). A namespace of root (the store's
    folder), uri, run_id, result, cfg and data (the price folder, as a string)."""
    from types import SimpleNamespace

    from cryptolstm.data import load_market
    from cryptolstm.tracking import registry, tracked_train

    root = tmp_path_factory.mktemp("registered")
    with building_store(root, _empty_store) as uri:
        cfg = tiny_config(synthetic_data, merge_date=MERGE, end_date=CUT, head="gaussian", epochs=3)
        run_id, result = tracked_train(cfg, load_market(synthetic_data, cfg.merge_date, cfg.end_date))
        registration = registry.register_run(run_id, "BTC")
        assert (registration.version, registration.promoted) == ("1", True)
    return SimpleNamespace(root=root, uri=uri, run_id=run_id, result=result, cfg=cfg, data=str(synthetic_data))


@pytest.fixture
def champion_store(registered, tmp_path, monkeypatch, _ends_runs):
    """A copy of `registered`'s store in this test's temp working directory, the tracking URI set
    to it (for this process and the commands it starts): the same namespace, root and uri the copy's."""
    from types import SimpleNamespace

    uri = work_on_copy(registered.root, tmp_path, monkeypatch)
    return SimpleNamespace(**{**vars(registered), "root": tmp_path, "uri": uri})


@pytest.fixture
def tracking(tmp_path, monkeypatch, new_store) -> str:
    """A fresh SQLite MLflow store in a temp working directory (artifacts under its mlruns/)."""
    monkeypatch.chdir(tmp_path)
    clear_mlflow_env(monkeypatch)
    uri = new_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


def all_runs(client) -> list:
    """Every run in every experiment of ``client``'s store."""
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def cli_env(tracking_uri: str | None = None, **more: str) -> dict[str, str]:
    """The environment of a `cryptolstm` subprocess: this one without what `mlflow run` leaves set,
    with ``tracking_uri`` and ``more``."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKED}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env | more


def run_cli(args: list[str], cwd: Path | str, tracking_uri: str | None = None, timeout: float = 600,
            **env: str) -> subprocess.CompletedProcess:
    """``python -m cryptolstm *args`` in a real subprocess, waited for; its stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "cryptolstm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=cli_env(tracking_uri, **env))


def start_cli(args: list[str], cwd: Path | str, tracking_uri: str | None = None, **env: str) -> subprocess.Popen:
    """``python -m cryptolstm *args`` started in a real subprocess (for signals and concurrency)."""
    return subprocess.Popen([sys.executable, "-m", "cryptolstm", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(tracking_uri, **env))


def sigterm_after_first_epoch(proc, client, trials_only: bool = False, wait: float = 120.0) -> str:
    """Send SIGTERM to ``proc`` once a run (a trial's child run if ``trials_only``) has logged
    ``val/loss``; return its stderr after it exits."""
    import signal
    import time

    deadline = time.time() + wait
    while time.time() < deadline:
        runs = [r for r in all_runs(client) if not trials_only or "mlflow.parentRunId" in r.data.tags]
        if runs and client.get_metric_history(runs[0].info.run_id, "val/loss"):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=60)[1]


def cut_data(source: Path, folder: Path, last: str) -> Path:
    """``folder``, a data directory of its own holding ``source``'s price files up to ``last`` (a
    model's data that ends there, or a store with no day after a model's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("btc-usd-daily.csv", "eth-usd-daily.csv"):
        frame = pd.read_csv(source / name)
        frame[frame["date"] <= last].to_csv(folder / name, index=False)
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_rows(port: int, rows: pd.DataFrame) -> dict:
    """POST ``rows`` to a served model's ``/invocations`` as MLflow's ``dataframe_records``; its JSON answer."""
    import json
    import urllib.request

    body = json.dumps({"dataframe_records": json.loads(rows.to_json(orient="records", double_precision=15))})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=60).read())


@contextlib.contextmanager
def served(model_uri: str, cwd: Path, rows: pd.DataFrame, tracking_uri: str | None = None):
    """``cryptolstm serve --model-uri model_uri`` from ``cwd`` (a real server process: MLflow's, which
    the command becomes), once it has answered ``rows``: yields (port, that first answer); stops it after."""
    import time

    env = cli_env(tracking_uri, PATH=f"{Path(sys.executable).parent}:{cli_env()['PATH']}")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cryptolstm", "serve", "--model-uri", model_uri,
                               "--port", str(port)], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        answer, deadline = None, time.time() + 180
        while answer is None and time.time() < deadline and server.poll() is None:
            try:
                answer = post_rows(port, rows)
            except OSError:
                time.sleep(1)
        assert answer is not None, server.stderr.read()[-2000:] if server.poll() is not None else "no answer"
        yield port, answer
    finally:
        server.terminate()
        server.wait(timeout=30)
