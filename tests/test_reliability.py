"""Nothing lost, nothing stuck: real processes started together, real SIGKILLs, a store that
cannot be written, a disk that refuses a large file. Run alone with ``-m reliability``.

Each test names the promise of docs/reliability.md it proves. The commands train on the synthetic
days (`tests.conftest.synthetic_data`); the command that comes after a killed one runs in this
process (what it finds and says is the subject, not how it starts).
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
from typer.testing import CliRunner

from cryptolstm.cli import app
from tests.conftest import MERGE, all_runs

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[1]
TINY = f"merge_date: '{MERGE}'\nlayers: 1\nneurons: 3\nepochs: 30\npatience: 30\nbatch_size: 64\nseed: 3\n"
LONG = TINY.replace("30", "10000")  # trains until it is killed


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


def _next_command(*args: str):
    """``cryptolstm ARGS`` in this process, on the store the `tracking` fixture set; its result."""
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, done.output[-3000:]
    return done


def _running(client: MlflowClient, child: bool | None = None) -> list:
    runs = [r for r in all_runs(client) if r.info.status == "RUNNING"]
    return [r for r in runs if child is None or ("mlflow.parentRunId" in r.data.tags) == child]


# --- stores ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_commands_started_together_on_a_fresh_directory_all_succeed(tmp_path):
    """Promise: the MLflow store and optuna.db are created once, under a lock."""
    make_optuna = ("from cryptolstm.search.storage import open_storage; "
                   "import optuna; optuna.create_study(storage=open_storage('sqlite:///optuna.db'))")
    procs = [_start(tmp_path, "register", "--coin", "BTC") for _ in range(3)]
    procs += [subprocess.Popen([sys.executable, "-c", make_optuna], cwd=tmp_path, env=_env(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    for code, err in outputs[:3]:  # a clean store with no run: one sentence, never a migration traceback
        assert code == 2 and "no finished BTC run" in err and "Traceback" not in err, err[-2000:]
    for code, err in outputs[3:]:
        assert code == 0, err[-2000:]
    assert _client(tmp_path).search_experiments()  # the store works afterwards
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        (version,) = db.execute("select version_num from alembic_version").fetchone()
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert version == _get_latest_schema_revision()
    assert len(optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'optuna.db'}")) == 3


@pytest.mark.slow
def test_a_disk_that_refuses_the_model_ends_the_run_failed_with_one_sentence(tmp_path, synthetic_data, new_store):
    """Promise: a full disk (here: a file-size limit the model file exceeds) is one sentence, the
    run ends FAILED, nothing is left RUNNING."""
    new_store(tmp_path)  # the store exists before the limit

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))  # the store (1 MB) fits, the model (12 MB) not

    done = subprocess.run([sys.executable, "-m", "cryptolstm", "train", "--data-dir", str(synthetic_data),
                           "--merge-date", MERGE, "--layers", "1", "--neurons", "512", "--epochs", "1",
                           "--quiet"], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600, preexec_fn=limit_files)
    assert done.returncode == 2 and "could not be written" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (run,) = all_runs(_client(tmp_path))
    # The run's error tag is the sentence the user saw, not the raw "[Errno 27] File too large: ..."
    assert run.info.status == "FAILED" and run.data.tags["error"] == done.stderr.strip().removeprefix("error: ")


@pytest.mark.slow
def test_a_failed_search_tags_its_parent_with_the_sentence_the_user_saw(tmp_path, synthetic_data, new_store):
    """Promise: a study's parent that ends FAILED says why in its ``error`` tag, in the words printed."""
    (tmp_path / "base.yaml").write_text(TINY.replace("epochs: 30", "epochs: 2") + "learning_rate: 1.0e+30\n"
                                        "output_activation: linear\n")  # every trial diverges: NaN loss
    (tmp_path / "space.yaml").write_text("base: base.yaml\nspace:\n  dropout: {type: float, low: 0.0, high: 0.5}\n")
    new_store(tmp_path)
    done = _run(tmp_path, "search", "--space", "space.yaml", "--data-dir", str(synthetic_data), "--study-name", "s",
                "--n-trials", "1", "--register", "false", "--quiet")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    *trials, said = done.stderr.strip().splitlines()  # each failed trial one line with its sentence
    assert said.startswith("error: study 's' has no completed trial"), done.stderr
    assert trials and all(" failed: training loss became NaN or infinite" in line for line in trials), trials
    client = _client(tmp_path)
    (parent,) = [r for r in all_runs(client) if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED" and parent.data.tags["error"] == said.removeprefix("error: ")
    assert not _running(client)


# --- SIGKILL: nothing RUNNING for ever --------------------------------------------------------


@pytest.mark.slow
def test_a_sigkilled_train_is_ended_killed_by_the_next_command(tmp_path, tracking, synthetic_data):
    """Promise: runs record their process; the next command ends a dead process's run KILLED."""
    (tmp_path / "tiny.yaml").write_text(LONG)
    proc = _start(tmp_path, "train", "--experiment", "tiny.yaml", "--data-dir", str(synthetic_data), "--quiet")
    client = MlflowClient()
    _kill_when(proc, lambda: any(client.get_metric_history(r.info.run_id, "val/loss") for r in _running(client)),
               "the first epoch")
    (run,) = all_runs(client)
    assert run.info.status == "RUNNING" and run.data.tags["cryptolstm.pid"] == str(proc.pid)
    _next_command("report", "--experiment", "cryptolstm-btc")
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and f"process {proc.pid}" in run.data.tags["cryptolstm.reaped"]


@pytest.mark.slow
def test_a_sigkilled_backtest_is_ended_killed_by_the_next_command(tmp_path, tracking, synthetic_data):
    (tmp_path / "tiny.yaml").write_text(LONG)
    proc = _start(tmp_path, "backtest", "--config", "tiny.yaml", "--data-dir", str(synthetic_data), "--start",
                  "2021-10-01", "--end", "2021-11-30", "--fold-months", "1", "--seeds", "1", "--arima", "false",
                  "--quiet")
    client = MlflowClient()
    _kill_when(proc, lambda: _running(client), "the backtest's run")
    assert _running(client)
    _next_command("report", "--experiment", "cryptolstm-btc")
    assert not _running(client) and all(r.info.status == "KILLED" for r in all_runs(client))


@pytest.mark.slow
def test_a_sigkilled_search_resumes_without_repeating_a_trial_and_leaves_nothing_running(tmp_path, tracking,
                                                                                          synthetic_data):
    """Promises: a dead process's Optuna trial is failed on resume (SQLite too), the sampler
    continues rather than restarting, and the study's runs are never left RUNNING."""
    (tmp_path / "base.yaml").write_text(TINY.replace("epochs: 30", "epochs: 2"))
    (tmp_path / "space.yaml").write_text("base: base.yaml\nspace:\n  neurons: {type: int, low: 2, high: 40}\n"
                                         "  dropout: {type: float, low: 0.0, high: 0.5}\n")
    args = ("search", "--space", "space.yaml", "--data-dir", str(synthetic_data), "--n-trials", "4", "--prune",
            "false", "--register", "false", "--quiet")
    proc = _start(tmp_path, *args)
    client = MlflowClient()
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def second_trial_running():
        complete = [r for r in all_runs(client) if r.data.tags.get("trial_state") == "complete"]
        return len(complete) >= 2 and _running(client, child=True)

    _kill_when(proc, second_trial_running, "two finished trials and a third running")
    study = optuna.load_study(study_name="btc-optuna-space", storage=storage)
    assert optuna.trial.TrialState.RUNNING in [t.state for t in study.trials]
    _next_command(*args)
    study = optuna.load_study(study_name="btc-optuna-space", storage=storage)
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    trained = [tuple(sorted(t.params.items())) for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(complete) >= 4 and len(trained) == len(set(trained))  # no finished parameter set trained twice
    assert not _running(client)


# --- one study, two commands --------------------------------------------------------------------

SPACE = ("base: base.yaml\nspace:\n  neurons: {type: int, low: 2, high: 40}\n"
         "  dropout: {type: float, low: 0.0, high: 0.5}\n")
TRIAL_STATES = {"COMPLETE": {"complete"}, "PRUNED": {"pruned"}, "FAIL": {"failed", "interrupted", "lost"}}


def _search_files(tmp_path: Path, epochs: int) -> None:
    (tmp_path / "base.yaml").write_text(TINY.replace("30", str(epochs)))
    (tmp_path / "space.yaml").write_text(SPACE)


def _trial_running(client: MlflowClient) -> bool:
    return any(client.get_metric_history(r.info.run_id, "val/loss") for r in _running(client, child=True))


def _optuna_and_mlflow_agree(study: optuna.Study, client: MlflowClient) -> None:
    """Every trial's state in Optuna is its child run's ``trial_state`` in MLflow, and nothing runs."""
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["trial_state"] in TRIAL_STATES[trial.state.name], (trial.number, trial.state)
    assert not _running(client)


# `python -m cryptolstm ARGS` whose first fit holds at the end of its first epoch (val/loss logged)
# until the file argv[1] exists: the second command meets it in a trial however fast the machine.
HELD_IN_ITS_FIRST_TRIAL = """
import os, pathlib, sys, time
from cryptolstm import noise
noise.quiet(os.environ)  # as the command line does before TensorFlow is imported
import keras
go = pathlib.Path(sys.argv[1])

class Hold(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        while not go.exists():
            time.sleep(0.05)

fit = keras.Model.fit
keras.Model.fit = lambda self, *args, callbacks=(), **kwargs: fit(self, *args, callbacks=[*callbacks, Hold()], **kwargs)
from cryptolstm.__main__ import main
sys.argv = ["cryptolstm", *sys.argv[2:]]
main()
"""
# `python -m cryptolstm ARGS` begun only once the file argv[1] exists, what a search imports imported
# before (seconds that would otherwise add to the first's): the command itself starts at that moment.
STARTED_ON_A_SIGNAL = """
import os, pathlib, runpy, sys, time
from cryptolstm import noise
noise.quiet(os.environ)
import cryptolstm.cli, cryptolstm.search.study, cryptolstm.tracking.search
go = pathlib.Path(sys.argv[1])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.02)
sys.argv = ["cryptolstm", *sys.argv[2:]]
runpy.run_module("cryptolstm", run_name="__main__")
"""


def _python(tmp_path: Path, script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("scheme, file", [("sqlite:///", "optuna.db"), ("journal:", "optuna.journal")])
def test_a_second_command_on_a_running_single_machine_study_is_refused_and_the_first_finishes(
        tmp_path, synthetic_data, new_store, scheme, file):
    """Promise: on SQLite and journal storage one command runs a study; a second one, started
    while the first runs a trial, is refused in one sentence naming the first, before it touches
    the study; the first finishes, and Optuna and MLflow agree on every trial."""
    _search_files(tmp_path, epochs=2)
    new_store(tmp_path)
    storage, start, release = scheme + file, tmp_path / "start-the-second", tmp_path / "release-the-first"
    args = ("search", "--space", "space.yaml", "--data-dir", str(synthetic_data), "--study-name", "shared",
            "--storage", storage, "--n-trials", "2", "--prune", "false", "--register", "false", "--quiet")
    first = _python(tmp_path, HELD_IN_ITS_FIRST_TRIAL, str(release), *args)
    second = _python(tmp_path, STARTED_ON_A_SIGNAL, str(start), *args)
    client = _client(tmp_path)
    try:
        assert second.stdout.readline() == "ready\n", second.communicate()[1][-3000:]
        _wait_for(lambda: _trial_running(client) or first.poll() is not None, what="the first command's trial")
        start.touch()
        second_out, second_err = second.communicate(timeout=300)
        first_outlived_it = first.poll() is None
    finally:
        release.touch()
        _, first_err = first.communicate(timeout=600)
    assert second.returncode == 2 and "Traceback" not in second_err, second_err[-3000:]
    assert second_err.startswith("error: study 'shared' in ") and second_err.count("\n") == 1, second_err
    assert f"process {first.pid} on " in second_err and second_out == ""
    assert first.returncode == 0 and first_outlived_it, first_err[-3000:]
    from cryptolstm.search.storage import open_storage

    study = optuna.load_study(study_name="shared", storage=open_storage(f"{scheme}{tmp_path / file}"))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2  # the one held, and the next
    _optuna_and_mlflow_agree(study, client)


# --- Ctrl-C: one sentence ---------------------------------------------------------------------------


def _foreground() -> None:
    """In the child: Ctrl-C not ignored, as in a command a terminal runs in the foreground (a test
    runner started in the background passes an ignored SIGINT on to its children)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ctrl_c(proc: subprocess.Popen) -> str:
    """Ctrl-C as a terminal sends it (SIGINT to the command's process group); its stderr."""
    os.killpg(proc.pid, signal.SIGINT)
    return proc.communicate(timeout=120)[1]


@pytest.mark.slow
def test_ctrl_c_during_a_search_is_one_sentence_and_leaves_nothing_running(tmp_path, synthetic_data, new_store):
    """Promise: Ctrl-C during a trial prints one sentence (not Optuna's traceback), exits 130, and
    leaves no run or trial RUNNING; Optuna and MLflow agree on the interrupted trial."""
    _search_files(tmp_path, epochs=10_000)
    new_store(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "cryptolstm", "search", "--space", "space.yaml", "--data-dir",
                             str(synthetic_data), "--study-name", "s", "--n-trials", "3", "--register", "false",
                             "--quiet"], cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_foreground)
    client = _client(tmp_path)
    try:
        _wait_for(lambda: _trial_running(client) or proc.poll() is not None, what="a trial's first epoch")
    finally:
        err = _ctrl_c(proc)
    assert proc.returncode == 130, err[-3000:]
    assert err == "interrupted: the study run was ended KILLED; run the same command to resume.\n", err[-3000:]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL"]
    _optuna_and_mlflow_agree(study, client)
    assert sorted(r.info.status for r in all_runs(client)) == ["KILLED", "KILLED"]  # the study and its trial


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "report", "data list"])
def test_ctrl_c_while_a_command_starts_is_one_sentence(tmp_path, command):
    """Promise: Ctrl-C in the first second of any command (while Python imports it) is one
    sentence and exit 130, not a traceback of the import it stopped. The import of the command
    line takes seconds and the command's name is read only after it, so every command meets the
    Ctrl-C on the same path; one of each kind stands for them (one that imports TensorFlow next,
    one that only reads MLflow, a subcommand)."""
    proc = subprocess.Popen([sys.executable, "-m", "cryptolstm", *command.split()], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_foreground)
    time.sleep(0.5)
    err = _ctrl_c(proc)
    assert proc.returncode == 130 and err.startswith("interrupted") and err.count("\n") == 1, err[-3000:]


INTERRUPTED_ON_EXIT = """
import atexit, os, signal, sys, time
atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(30)))  # the last exit handler
from cryptolstm.__main__ import main
sys.argv = ["cryptolstm", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_ctrl_c_after_a_command_ended_is_one_sentence(tmp_path):
    """Promise: a Ctrl-C while the process exits (the command's work done and printed, the
    libraries' exit handlers running) is one sentence and exit 130, not a silent 130."""
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_ON_EXIT, "data", "list"], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 130
    assert done.stderr.endswith("interrupted while exiting, after the command had ended (what it printed stands).\n")
    assert "Traceback" not in done.stderr
