"""Many workers on one study: PostgreSQL (Optuna RDB storage + an MLflow tracking server on it),
and local worker processes on a journal file. Real servers, real processes, real SIGKILL.

The PostgreSQL tests need a server: ``CRYPTOLSTM_TEST_POSTGRES=postgresql://user:pw@host:port/postgres``
(`.ci/run` installs and starts one); without it they are skipped, saying so.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

PG = os.environ.get("CRYPTOLSTM_TEST_POSTGRES")
needs_pg = pytest.mark.skipif(not PG, reason="no PostgreSQL server: set CRYPTOLSTM_TEST_POSTGRES (.ci/run starts one)")
BIN = Path(sys.executable).parent

SPACE = """base: {base}
space:
  dropout: {{type: float, low: 0.0, high: 0.4}}
  learning_rate: {{type: float, low: 0.0005, high: 0.005, log: true}}
"""


def _database(name: str) -> str:
    """A fresh database on the test server; its URL."""
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG.rsplit("/", 1)[0] + "/" + name


def _watcher(url: str) -> optuna.storages.RDBStorage:
    """One storage (one small connection pool) for the test's own polling: a new storage per
    poll would open a new pool each time and exhaust the server's connections."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def _poll(storage, study_name: str, found, seconds: float = 300.0, every: float = 0.5):
    """``found(study)`` once it is truthy (the study may not exist yet), or None after ``seconds``."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            result = found(optuna.load_study(study_name=study_name, storage=storage))
            if result:
                return result
        except KeyError:
            pass
        time.sleep(every)
    return None


def _drop_connections(url: str) -> int:
    """Terminate every connection to ``url``'s database (a database blip the workers must survive)."""
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],)).fetchall()
    return len(rows)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """``mlflow server`` on a PostgreSQL backend store, artifacts served by the server itself."""
    if not PG:
        pytest.skip("no PostgreSQL server: set CRYPTOLSTM_TEST_POSTGRES (.ci/run starts one)")
    store = _database(f"mlflow_{uuid.uuid4().hex[:8]}")
    root = tmp_path_factory.mktemp("server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--artifacts-destination",
                               str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail((root / "server.log").read_text()[-3000:])
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def _setup_files(tmp_path: Path) -> Path:
    """A space of two dimensions over a small model of the synthetic days of 2021."""
    (tmp_path / "base.yaml").write_text("merge_date: '2021-01-01'\nlayers: 1\nneurons: 8\nepochs: 5\nbatch_size: 32\n")
    (tmp_path / "space.yaml").write_text(SPACE.format(base=tmp_path / "base.yaml"))
    return tmp_path / "space.yaml"


def _worker(tmp_path, shared_data, tracking_uri, storage, study, n_trials, *extra, log="worker",
            command=("-m", "cryptolstm")):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    args = [sys.executable, *command, "search", "--space", str(tmp_path / "space.yaml"), "--study-name", study,
            "--storage", storage, "--n-trials", str(n_trials), "--data-dir", str(shared_data), "--seed", "3",
            "--prune", "false", "--register", "false", "--experiment-name", "dist", "--quiet", *extra]
    return subprocess.Popen(args, cwd=tmp_path, env=env, stdout=open(tmp_path / f"{log}.out", "w"),
                            stderr=open(tmp_path / f"{log}.err", "w"))


def _check_study(study: optuna.Study, n_trials: int) -> list:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= n_trials
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
                and t.number < max(c.number for c in complete)]
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(params) == len(set(params)), "a parameter set was trained twice"
    return complete


def _check_mlflow(client: MlflowClient, study_name: str, complete: list) -> tuple:
    parents = client.search_runs([client.get_experiment_by_name("dist").experiment_id],
                                 f"tags.`cryptolstm.study` = '{study_name}'")
    assert len(parents) == 1, "every worker must log under the one parent of the study"
    parent = parents[0]
    assert parent.info.status == "FINISHED" and "test/mae_ratio" in parent.data.metrics
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    done = {c.data.tags["trial"] for c in children if c.data.tags.get("trial_state") == "complete"}
    assert done == {f"trial-{t.number}" for t in complete}
    return parent, children


@needs_pg
@pytest.mark.slow
def test_two_workers_share_one_study_and_survive_a_database_blip(tmp_path, synthetic_data, tracking_server):
    _setup_files(tmp_path)
    storage, study_name, n = _database(f"optuna_{uuid.uuid4().hex[:8]}"), "shared", 4
    watcher = _watcher(storage)
    workers = [_worker(tmp_path, synthetic_data, tracking_server, storage, study_name, n, "--heartbeat", "2", log=f"w{i}")
               for i in range(2)]
    # Once trials are under way, cut every connection to the study's database.
    assert _poll(watcher, study_name, lambda s: s.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert _drop_connections(storage) >= 1
    for i, proc in enumerate(workers):
        assert proc.wait(timeout=600) == 0, (tmp_path / f"w{i}.err").read_text()[-3000:]
    study = optuna.load_study(study_name=study_name, storage=watcher)
    complete = _check_study(study, n)
    assert len({t.user_attrs["worker"] for t in complete}) == 2, "both workers ran trials"
    client = MlflowClient(tracking_server)
    parent, children = _check_mlflow(client, study_name, complete)
    assert len({c.data.tags["worker"] for c in children}) == 2
    assert parent.data.metrics["search/workers"] == 2
    outputs = [(tmp_path / f"w{i}.out").read_text() for i in range(2)]
    assert sum("last worker out" in o for o in outputs) == 1 and sum("run " in o and "persistence" in o for o in outputs) == 1


@needs_pg
@pytest.mark.slow
def test_a_sigkilled_workers_trial_is_failed_by_heartbeat_and_retried(tmp_path, synthetic_data, tracking_server):
    _setup_files(tmp_path)
    storage, study_name, n = _database(f"optuna_{uuid.uuid4().hex[:8]}"), "killed", 4
    watcher = _watcher(storage)
    first = _worker(tmp_path, synthetic_data, tracking_server, storage, study_name, n, "--heartbeat", "1", log="first")
    second = _worker(tmp_path, synthetic_data, tracking_server, storage, study_name, n, "--heartbeat", "1", log="second")
    victim = f"{socket.gethostname()}:{second.pid}"
    running = _poll(watcher, study_name, lambda s: [
        t.number for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if t.user_attrs.get("worker") == victim and t.intermediate_values], every=0.2)
    assert running, "the second worker never ran a trial"
    os.kill(second.pid, signal.SIGKILL)
    killed = running[0]
    second.wait(timeout=30)
    assert first.wait(timeout=600) == 0, (tmp_path / "first.err").read_text()[-3000:]
    study = optuna.load_study(study_name=study_name, storage=watcher)
    dead = study.trials[killed]
    assert dead.state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert retries and retries[0].params == dead.params and retries[0].state == optuna.trial.TrialState.COMPLETE
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= n
    client = MlflowClient(tracking_server)
    parent, children = _check_mlflow(client, study_name, [t for t in complete])
    lost = [c for c in children if c.data.tags["trial"] == f"trial-{killed}"]
    assert lost and lost[0].info.status == "KILLED" and lost[0].data.tags["trial_state"] == "lost"


@needs_pg
@pytest.mark.slow
def test_evaluate_and_refit_a_registered_model_on_a_tracking_server(tmp_path, shared_data, tracking_server,
                                                                    monkeypatch):
    """The registry's life after registration works on the distributed set-up too: the model, its
    evaluation's files and the refit are all stored through the server. (The commands run in this
    process: the server is the subject; other tests start the commands as processes.)"""
    from typer.testing import CliRunner

    from cryptolstm.cli import app
    from tests.conftest import clear_mlflow_env

    (tmp_path / "base.yaml").write_text("coin: ETH\nmerge_date: '2022-01-01'\nend_date: '2022-12-31'\nlayers: 1\n"
                                        "neurons: 4\nepochs: 2\nbatch_size: 64\n")
    monkeypatch.chdir(tmp_path)
    clear_mlflow_env(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)

    def cli(*args):
        done = CliRunner().invoke(app, [*args, "--quiet"])
        assert done.exit_code == 0, done.output[-3000:]
        return done.stdout

    cli("train", "--experiment", "base.yaml", "--data-dir", str(shared_data))
    cli("register", "--coin", "ETH")
    out = cli("evaluate", "--model", "models:/cryptolstm-eth@champion", "--data-dir", str(shared_data))
    assert "on 365 new day(s), 2023-01-01..2023-12-31" in out
    client = MlflowClient(tracking_server)
    version = client.get_model_version("cryptolstm-eth", "1")
    assert version.tags["live.days"] == "365"
    run = client.get_run(version.tags["live.run"])
    assert run.info.status == "FINISHED" and run.data.tags["evaluated.version"] == "1"
    days = Path(client.download_artifacts(run.info.run_id, "live/forecasts.csv", str(tmp_path))).read_text().splitlines()
    assert len(days) == 366 and days[1].startswith("2023-01-01,2022-12-31,")
    cli("refit", "--model", "models:/cryptolstm-eth@champion", "--data-dir", str(shared_data))
    refitted = client.get_model_version("cryptolstm-eth", "2")
    assert refitted.tags["refit.of_version"] == "1" and "common evaluation" in refitted.tags["promotion"]


# The command itself, its trials after the first waiting until the worker process it started has
# taken one (a TensorFlow import, seconds on a busy machine): tiny trials, and both processes run some.
WAITS_FOR_ITS_WORKER = """
import sys, time
from cryptolstm.search import optuna_study
objective_fn = optuna_study.objective_fn
def patient(runner):
    objective = objective_fn(runner)
    def after_the_worker(trial):
        deadline = time.time() + 300
        while trial.number > 0 and time.time() < deadline and len({t.user_attrs["worker"] for t in
                trial.study.get_trials(deepcopy=False) if "worker" in t.user_attrs}) < 2:
            time.sleep(0.5)
        return objective(trial)
    return after_the_worker
optuna_study.objective_fn = patient
from cryptolstm.__main__ import main
sys.argv = ["cryptolstm", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_n_workers_runs_local_processes_on_a_journal_file(tmp_path, synthetic_data, new_store):
    _setup_files(tmp_path)
    proc = _worker(tmp_path, synthetic_data, new_store(tmp_path), "journal:optuna.journal", "local", 4, "--n-workers",
                   "2", log="local", command=("-c", WAITS_FOR_ITS_WORKER))
    assert proc.wait(timeout=600) == 0, (tmp_path / "local.err").read_text()[-3000:]
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="local", storage=JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal"))))
    complete = _check_study(study, 4)
    assert len({t.user_attrs["worker"] for t in complete}) == 2, "the second process ran trials too"
    _check_mlflow(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), "local", complete)


def test_sqlite_refuses_parallel_workers(tracking, shared_data):
    from typer.testing import CliRunner

    from cryptolstm.cli import app

    result = CliRunner().invoke(app, ["search", "--n-workers", "2", "--storage", "sqlite:///optuna.db",
                                      "--data-dir", str(shared_data)])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: n_workers=2 cannot share sqlite:///optuna.db: SQLite locks under parallel "
                                     "writers; use storage journal:optuna.journal (one machine) or postgresql://... (many).")
    bad = CliRunner().invoke(app, ["search", "--storage", "postgresql://u:secret@127.0.0.1:1/x", "--data-dir",
                                   str(shared_data), "--quiet"])
    assert bad.exit_code == 2 and "cannot open storage postgresql://u:***@127.0.0.1:1/x" in bad.stderr
    assert "secret" not in bad.stderr


def test_a_joining_worker_waits_for_the_whole_identity_of_the_study(tmp_path, shared_data):
    """The creator writes coin, space and protocol one by one; a worker joining in between must
    wait for all of them, not refuse the study for a half-written identity."""
    import threading

    from cryptolstm.search import optuna_study
    from cryptolstm.search.space import load_space

    space = load_space(_setup_files(tmp_path), data_dir=str(shared_data))
    url = f"journal:{tmp_path / 'j.journal'}"
    from cryptolstm.search.storage import open_storage

    study = optuna.create_study(study_name="half", storage=open_storage(url))
    study.set_user_attr("coin", "BTC")  # the creator has written one key so far
    rest = {"space_digest": space.digest(), "protocol": "honest"}
    writer = threading.Timer(1.5, lambda: [study.set_user_attr(k, v) for k, v in rest.items()])
    writer.start()
    handle = optuna_study.open_study("half", url, space, "tpe", 1, False, 2)
    writer.join()
    assert not handle.created and handle.study.user_attrs["protocol"] == "honest"


@needs_pg
def test_a_study_read_survives_connections_cut_under_it():
    """Optuna's `_CachedStorage` reads trials through the private `_get_trials`; those calls
    retry on a lost connection like the public ones. Without the pool's pre-ping the first
    statement after the cut fails, so the retry is what the read rides on."""
    from cryptolstm.search.storage import ResilientRDBStorage

    url = _database(f"optuna_{uuid.uuid4().hex[:8]}")
    storage = ResilientRDBStorage(url, engine_kwargs={"pool_pre_ping": False})
    study = optuna.create_study(study_name="cut", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert _drop_connections(url) >= 1
    assert len(study.get_trials(deepcopy=False)) == 2  # through _CachedStorage -> _get_trials
    assert _drop_connections(url) >= 1
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # _create_new_trial, _set_trial_param
    assert len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) == 3



@needs_pg
def test_a_connection_lost_inside_a_trials_read_is_retried_after_optunas_fallback():
    """The cut between `_get_trials`' two statements: Optuna catches the lost connection, falls back
    to a slower query in the same session, which SQLAlchemy refuses (`PendingRollbackError`), and
    raises `StorageInternalError` from that: a lost connection still, two links down its chain
    (a worker died of it in CI when a blip landed there)."""
    import psycopg
    import sqlalchemy

    from cryptolstm.search.storage import ResilientRDBStorage

    url = _database(f"optuna_{uuid.uuid4().hex[:8]}")
    storage = ResilientRDBStorage(url)
    study = optuna.create_study(study_name="fallback", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    cuts = []

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def cut_once(conn, cursor, statement, *args):
        if statement.startswith("SELECT trials.") and not cuts:  # the trials query, after the study's check
            with psycopg.connect(PG, autocommit=True) as admin:
                pid = conn.connection.dbapi_connection.info.backend_pid
                cuts.append(admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()[0])

    assert len(optuna.load_study(study_name="fallback", storage=storage).get_trials(deepcopy=False)) == 2
    assert cuts == [True]


def test_every_backend_call_of_optunas_cached_storage_retries():
    """Each method `_CachedStorage` calls on its backend is one `ResilientRDBStorage` wraps, so
    an Optuna upgrade that adds a call shows up here."""
    import inspect
    import re

    from optuna.storages import _cached_storage

    from cryptolstm.search.storage import ResilientRDBStorage

    called = set(re.findall(r"self\._backend\.(\w+)\(", inspect.getsource(_cached_storage)))
    assert "_get_trials" in called
    unwrapped = {name for name in called if not hasattr(getattr(ResilientRDBStorage, name), "retry")}
    assert not unwrapped, f"not retried on a lost connection: {sorted(unwrapped)}"
