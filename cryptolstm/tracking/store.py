"""The tracking store itself: opened once per command, checked, created safely, kept clean.

- **Checked up front.** A local store (SQLite file, ``mlruns/`` artifacts) whose directory
  cannot be written is one sentence before any training, not a traceback minutes later.
- **Created once.** MLflow creates (migrates) a new SQLite store's schema on first use; two
  processes doing that at once leave it half-migrated. The first use of a local SQLite
  store happens under a file lock beside it, so any number of commands started together
  on a fresh directory all succeed.
- **Nothing RUNNING for ever.** Every run records the host and process that hold it
  (`PROCESS_TAGS`). Each command, on opening the store, ends KILLED the runs of this host
  whose process is gone (a SIGKILL, a power cut), with a tag saying why.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.entities import RunStatus

from cryptolstm.errors import CryptoLstmError
from cryptolstm.processes import process_alive

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
HOST_TAG, PID_TAG = "cryptolstm.host", "cryptolstm.pid"
REAPED_TAG = "cryptolstm.reaped"


class StoreError(CryptoLstmError):
    """The tracking store or its artifact root cannot be written."""


def process_tags() -> dict[str, str]:
    """The tags that tie a run to the process holding it (what the reaper checks)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _local_path(uri: str) -> Path | None:
    """The SQLite file of a ``sqlite:///`` URI (None for a server or another database)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).expanduser()


def check_writable(directory: Path, what: str) -> None:
    """One sentence if a file cannot be created in ``directory`` (read-only, full, missing)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".cryptolstm-probe-"):
            pass
    except OSError as exc:
        raise StoreError(f"{what} {directory} cannot be written ({exc.strerror or exc}); "
                         f"point MLFLOW_TRACKING_URI at a writable place.") from None


def open_store(uri: str | None) -> str:
    """Point MLflow at ``uri`` (default ``sqlite:///mlflow.db`` in the working directory), check a
    local store can be written, create its schema under a lock, and reap this host's dead runs."""
    uri = uri or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    db = _local_path(uri)
    if db is not None:
        check_writable(db.resolve().parent, "the tracking store's directory")
        check_writable(Path("mlruns").resolve(), "the artifact root")
        with FileLock(str(db.resolve()) + ".lock", timeout=600):
            _touch_store()
    reap_dead_runs()
    return uri


def _touch_store() -> None:
    """Make MLflow create (or migrate) the store now: one query is enough."""
    mlflow.MlflowClient().search_experiments(max_results=1)


def reap_dead_runs() -> int:
    """End KILLED every RUNNING run of this host whose process is gone; returns how many."""
    client, host = mlflow.MlflowClient(), socket.gethostname()
    try:
        running = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                     filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'")
    except Exception as exc:  # noqa: BLE001 - reaping must never stop a command
        log.debug("could not look for dead runs: %s", exc)
        return 0
    reaped = 0
    for run in running:
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            client.set_tag(run.info.run_id, REAPED_TAG, f"process {pid} on {host} ended without ending this run")
            if "trial" in run.data.tags:
                client.set_tag(run.info.run_id, "trial_state", "lost")
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            reaped += 1
    if reaped:
        log.warning("ended %d run(s) KILLED whose process had died", reaped)
    return reaped
