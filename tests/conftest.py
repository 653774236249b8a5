"""Shared fixtures: the real price data beside the repo, tiny configs, synthetic frames, temp MLflow stores."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No test reaches the internet: commands never fetch missing data on their own here (the fetch
# tests drive the client against recorded-format HTTP responses instead).
os.environ.setdefault("CRYPTOLSTM_OFFLINE", "1")

import mlflow
import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRYPTOLSTM_TEST_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real BTC and ETH daily prices up to 2023-12-31 (never copied here)."""
    if not (SHARED_DATA / "btc-usd-daily.csv").is_file():
        pytest.fail(f"the shared price data is expected at {SHARED_DATA}; set CRYPTOLSTM_TEST_DATA")
    return SHARED_DATA


def tiny_config(data_dir: Path | str, **changes) -> RunConfig:
    """A config that trains in a few seconds: one small layer, two epochs, 2023 only."""
    base = dict(
        data_dir=str(data_dir), merge_date="2023-01-01", layers=1, neurons=4, epochs=2, batch_size=64, seed=7
    )
    return RunConfig(**{**base, **changes})


def synthetic_frame(days: int = 60, seed: int = 0, start: str = "2020-01-01") -> pd.DataFrame:
    """A merged frame like `load_market`'s: random-walk closes and positive volumes for BTC and ETH."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=days, freq="D", name="date")
    columns = {}
    for coin, level in (("BTC", 10_000.0), ("ETH", 500.0)):
        close = level * np.exp(np.cumsum(rng.normal(0, 0.03, days)))
        columns[f"{coin}_close"] = close
        columns[f"{coin}_volume"] = rng.uniform(1e8, 5e9, days)
    return pd.DataFrame(columns, index=index)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a coin frame (columns date, open, high, low, close, volume) as the project's CSV format."""
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store in a temp working directory (artifacts under its mlruns/)."""
    monkeypatch.chdir(tmp_path)
    for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(leaked, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


def all_runs(client) -> list:
    """Every run in every experiment of ``client``'s store."""
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


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
