"""The tracking store itself: opened once per command, checked, created safely, kept clean.

- **Checked up front, in seconds.** The store a user names is checked before MLflow opens it
  (`cryptolstm.tracking.store_checks`): a scheme MLflow does not know is one sentence at once,
  a server or database that does not answer one sentence within seconds (not MLflow's minutes
  of retries and a traceback), a local store whose directory is missing, or that cannot be
  written with its ``mlruns/`` artifacts by a command that writes, one sentence before any
  training, with nothing left behind. A command that only reads (report, predict, data verify)
  reads a store it cannot write as it is.
- **Created once.** MLflow creates (migrates) a new SQLite store's schema on first use; two
  processes doing that at once leave it half-migrated. The first use of a local SQLite
  store happens under a file lock beside it, so any number of commands started together
  on a fresh directory all succeed.
- **Nothing RUNNING for ever.** Every run records the host and process that hold it
  (`PROCESS_TAGS`). Each command, on opening the store, ends KILLED the runs of this host
  whose process is gone (a SIGKILL, a power cut), with a tag saying why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.entities import RunStatus

from cryptolstm.errors import first_line, masked, write_error
from cryptolstm.processes import process_alive
from cryptolstm.tracking.store_checks import (StoreError, check_artifacts, check_database, check_local, check_scheme,
                                              check_server)

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
HOST_TAG, PID_TAG = "cryptolstm.host", "cryptolstm.pid"
REAPED_TAG = "cryptolstm.reaped"
DATABASES = ("postgresql", "mysql", "mssql")  # SQLAlchemy URLs MLflow stores runs in, beside sqlite


def process_tags() -> dict[str, str]:
    """The tags that tie a run to the process holding it (what the reaper checks)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _local_path(uri: str) -> Path | None:
    """The SQLite file of a ``sqlite:///`` URI (None for a server or another database)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).expanduser()


def open_store(uri: str | None, read_only: bool = False) -> str:
    """Point MLflow at ``uri`` (default ``sqlite:///mlflow.db`` in the working directory), checked
    (see module docstring); create a local store's schema under a lock, and reap this host's dead
    runs. ``read_only``: the command only reads, so a local store it cannot write is read as it
    is (nothing created, migrated or reaped in it). Any store that cannot be used: `StoreError`."""
    uri = uri or DEFAULT_TRACKING_URI
    writable = _check(uri, read_only)
    mlflow.set_tracking_uri(uri)
    db = _local_path(uri)
    lock = FileLock(str(db.resolve()) + ".lock", timeout=600) if db is not None and writable else None
    with lock or contextlib.nullcontext():
        _touch_store(uri)
    if writable:
        reap_dead_runs()
    return uri


def _check(uri: str, read_only: bool) -> bool:
    """`store_checks` for the kind of store ``uri`` names; whether it may be written."""
    check_scheme(uri)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    elif uri.split(":", 1)[0].split("+", 1)[0] in DATABASES:
        check_database(uri)
    db = _local_path(uri)
    if db is None:
        return True
    writable = check_local(db, read_only)
    if writable and not read_only:
        check_artifacts(Path("mlruns"))
    return writable


def _touch_store(uri: str) -> None:
    """Make MLflow open the store now (creating or migrating a new local one): one query. What
    MLflow refuses (an out-of-date schema, a file store it no longer allows) is one sentence."""
    try:
        mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - a disk that refuses the write keeps its own sentence
        if write_error(exc) is not None:
            raise
        said = first_line(exc)  # MLflow's whole sentences, not one cut in the middle of a link
        said = said[:said.rfind(". ", 0, 240)] if len(said) > 240 and ". " in said[:240] else said
        raise StoreError(f"the tracking store {masked(uri)} cannot be opened: {said}.") from None


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
