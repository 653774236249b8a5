"""The tracking store, opened once per command: checked first (`store_checks`), a new local SQLite
schema created under a file lock (two processes migrating at once leave it half-migrated), and the
runs of this host whose process died (a SIGKILL, a power cut) ended KILLED."""

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


def use_tracking_uri(uri: str | None, read_only: bool = False) -> str:
    """Point MLflow at ``uri`` (default ``sqlite:///mlflow.db``), checked, created and reaped; under
    ``read_only`` a local store that cannot be written is read as it is. An unusable store: `StoreError`."""
    uri = uri or DEFAULT_TRACKING_URI
    check_scheme(uri)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    elif uri.split(":", 1)[0].split("+", 1)[0] in DATABASES:
        check_database(uri)
    db = Path(uri.removeprefix("sqlite:///")).expanduser() if uri.startswith("sqlite:///") else None  # a local file
    writable = db is None or check_local(db, read_only)
    if db is not None and writable and not read_only:
        check_artifacts(Path("mlruns"))
    mlflow.set_tracking_uri(uri)
    lock = FileLock(str(db.resolve()) + ".lock", timeout=600) if db is not None and writable else None
    with lock or contextlib.nullcontext():
        _touch_store(uri)
    if writable:
        reap_dead_runs()
    return uri


def _touch_store(uri: str) -> None:
    """Make MLflow open (create, migrate) the store now; what it refuses is one sentence."""
    try:
        mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - a disk that refuses the write keeps its own sentence
        if write_error(exc) is not None:
            raise
        said = first_line(exc)  # MLflow's whole sentences, not one cut in the middle of a link
        said = said[:said.rfind(". ", 0, 240)] if len(said) > 240 and ". " in said[:240] else said
        raise StoreError(f"the tracking store {masked(uri)} cannot be opened: {said}.") from None


def reap_dead_runs() -> None:
    """End KILLED every RUNNING run of this host whose process is gone."""
    client, host = mlflow.MlflowClient(), socket.gethostname()
    try:
        running = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                     filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'")
    except Exception as exc:  # noqa: BLE001 - reaping must never stop a command
        log.debug("could not look for dead runs: %s", exc)
        return
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
