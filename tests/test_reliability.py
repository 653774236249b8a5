"""Nothing lost, nothing stuck: real processes started together, real SIGKILLs, a store that
cannot be written, a disk that refuses a large file. Run alone with ``-m reliability``.

Each test names the promise of docs/reliability.md it proves.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient

from tests.conftest import all_runs

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[1]
TINY = "merge_date: '2023-01-01'\nlayers: 1\nneurons: 3\nepochs: 30\npatience: 30\nbatch_size: 64\nseed: 3\n"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "CRYPTOLSTM_OFFLINE": "1",
            "PYTHONPATH": str(ROOT)}


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cryptolstm", *args], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cryptolstm", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def _wait_for(condition, seconds: float = 180.0, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _client(tmp_path: Path) -> MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return MlflowClient()


def _kill_when(proc: subprocess.Popen, condition, what: str) -> None:
    """SIGKILL ``proc`` (no handler runs, nothing is cleaned up) once ``condition()`` holds."""
    try:
        _wait_for(lambda: condition() or proc.poll() is not None, what=what)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)


def _running(client: MlflowClient, child: bool | None = None) -> list:
    runs = [r for r in all_runs(client) if r.info.status == "RUNNING"]
    return [r for r in runs if child is None or ("mlflow.parentRunId" in r.data.tags) == child]


# --- stores ---------------------------------------------------------------------------------


def test_commands_started_together_on_a_fresh_directory_all_succeed(tmp_path):
    """Promise: the MLflow store and optuna.db are created once, under a lock."""
    make_optuna = ("from cryptolstm.search.storage import open_storage; "
                   "import optuna; optuna.create_study(storage=open_storage('sqlite:///optuna.db'))")
    procs = [_start(tmp_path, "register", "--coin", "BTC") for _ in range(4)]
    procs += [subprocess.Popen([sys.executable, "-c", make_optuna], cwd=tmp_path, env=_env(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    for code, err in outputs[:4]:  # a clean store with no run: one sentence, never a migration traceback
        assert code == 2 and "no finished BTC run" in err and "Traceback" not in err, err[-2000:]
    for code, err in outputs[4:]:
        assert code == 0, err[-2000:]
    assert _client(tmp_path).search_experiments()  # the store works afterwards
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        (version,) = db.execute("select version_num from alembic_version").fetchone()
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert version == _get_latest_schema_revision()
    assert len(optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'optuna.db'}")) == 3


@pytest.mark.parametrize("uri", ["sqlite:////proc/cryptolstm-store/mlflow.db"])
def test_a_store_that_cannot_be_written_is_one_sentence_within_seconds(tmp_path, shared_data, uri):
    """Promise: an unwritable tracking store is refused before any training, in one sentence."""
    env = {**_env(tmp_path), "MLFLOW_TRACKING_URI": uri}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cryptolstm", "train", "--data-dir", str(shared_data),
                           "--merge-date", "2023-01-01", "--quiet"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "cannot be written" in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr and time.monotonic() - started < 60


@pytest.mark.slow
def test_a_disk_that_refuses_the_model_ends_the_run_failed_with_one_sentence(tmp_path, shared_data):
    """Promise: a full disk (here: a file-size limit the model file exceeds) is one sentence, the
    run ends FAILED, nothing is left RUNNING."""
    assert _run(tmp_path, "register", "--coin", "BTC").returncode == 2  # the store exists before the limit

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))

    done = subprocess.run([sys.executable, "-m", "cryptolstm", "train", "--data-dir", str(shared_data),
                           "--merge-date", "2023-01-01", "--layers", "3", "--neurons", "512", "--epochs", "1",
                           "--quiet"], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600, preexec_fn=limit_files)
    assert done.returncode == 2 and "could not be written" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (run,) = all_runs(_client(tmp_path))
    assert run.info.status == "FAILED" and "error" in run.data.tags


# --- SIGKILL: nothing RUNNING for ever --------------------------------------------------------


@pytest.mark.slow
def test_a_sigkilled_train_is_ended_killed_by_the_next_command(tmp_path, shared_data):
    """Promise: runs record their process; the next command ends a dead process's run KILLED."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    proc = _start(tmp_path, "train", "--experiment", "tiny.yaml", "--data-dir", str(shared_data), "--quiet")
    client = _client(tmp_path)
    _kill_when(proc, lambda: any(client.get_metric_history(r.info.run_id, "val/loss") for r in _running(client)),
               "the first epoch")
    (run,) = all_runs(client)
    assert run.info.status == "RUNNING" and run.data.tags["cryptolstm.pid"] == str(proc.pid)
    assert _run(tmp_path, "report", "--experiment", "cryptolstm-btc").returncode == 0
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and f"process {proc.pid}" in run.data.tags["cryptolstm.reaped"]


@pytest.mark.slow
def test_a_sigkilled_backtest_is_ended_killed_by_the_next_command(tmp_path, shared_data):
    (tmp_path / "tiny.yaml").write_text(TINY)
    proc = _start(tmp_path, "backtest", "--config", "tiny.yaml", "--data-dir", str(shared_data), "--start",
                  "2023-11-01", "--end", "2023-12-31", "--fold-months", "1", "--seeds", "1", "--arima", "false",
                  "--quiet")
    client = _client(tmp_path)
    _kill_when(proc, lambda: _running(client), "the backtest's run")
    assert _running(client)
    assert _run(tmp_path, "report", "--experiment", "cryptolstm-btc").returncode == 0
    assert not _running(client) and all(r.info.status == "KILLED" for r in all_runs(client))


@pytest.mark.slow
def test_a_sigkilled_search_resumes_without_repeating_a_trial_and_leaves_nothing_running(tmp_path, shared_data):
    """Promises: a dead process's Optuna trial is failed on resume (SQLite too), the sampler
    continues rather than restarting, and the study's runs are never left RUNNING."""
    (tmp_path / "base.yaml").write_text(TINY.replace("epochs: 30", "epochs: 2"))
    (tmp_path / "space.yaml").write_text("base: base.yaml\nspace:\n  neurons: {type: int, low: 2, high: 40}\n"
                                         "  dropout: {type: float, low: 0.0, high: 0.5}\n")
    args = ("search", "--space", "space.yaml", "--data-dir", str(shared_data), "--n-trials", "4", "--prune", "false",
            "--register", "false", "--quiet")
    proc = _start(tmp_path, *args)
    client = _client(tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def second_trial_running():
        complete = [r for r in all_runs(client) if r.data.tags.get("trial_state") == "complete"]
        return len(complete) >= 2 and _running(client, child=True)

    _kill_when(proc, second_trial_running, "two finished trials and a third running")
    study = optuna.load_study(study_name="btc-optuna-space", storage=storage)
    assert optuna.trial.TrialState.RUNNING in [t.state for t in study.trials]
    again = _run(tmp_path, *args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="btc-optuna-space", storage=storage)
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    trained = [tuple(sorted(t.params.items())) for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(complete) >= 4 and len(trained) == len(set(trained))  # no finished parameter set trained twice
    assert not _running(client)
