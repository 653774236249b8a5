"""Whether the tracking store a user names can be used, found out in seconds and said in one sentence
(left to itself MLflow retries a server for about 500 s and a database for about 100 s, then raises a
traceback): one try per server or database, then MLflow's own retries carry a long command."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from cryptolstm.errors import CryptoLstmError, causes, first_line, lasting_network_error, masked

log = logging.getLogger(__name__)

REACH_SECONDS = 10  # one try at a server or database; DNS lookups are bounded by the resolver
API_PROBE = "/api/2.0/mlflow/experiments/search"  # any MLflow tracking server answers it


class StoreError(CryptoLstmError):
    """The tracking store or its artifact folder cannot be used."""


def check_scheme(uri: str) -> None:
    """One sentence at once if MLflow has no store for ``uri``'s scheme (``foo://bar``)."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    try:
        _tracking_store_registry.get_store_builder(uri)
    except Exception:  # noqa: BLE001 - MLflow's "unsupported URI": its exception class has moved before
        raise StoreError(f"MLFLOW_TRACKING_URI {masked(uri)} names no store MLflow knows (scheme "
                         f"{uri.partition(':')[0]!r}); use sqlite:///mlflow.db, http(s)://HOST:PORT of an MLflow "
                         f"server, or a database URL such as postgresql://USER:PASSWORD@HOST/DB.") from None


def check_server(uri: str) -> None:
    """One request, no retry, at most `REACH_SECONDS`: one sentence unless an MLflow server answers."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), API_PROBE, "GET", max_retries=0, timeout=REACH_SECONDS,
                                raise_on_status=False, params={"max_results": 1})
    except Exception as exc:  # noqa: BLE001 - whatever requests raises: say what it means
        raise StoreError(f"the tracking server {uri} {_unreachable(exc)}; start it, or point MLFLOW_TRACKING_URI "
                         f"at one that runs.") from None
    if response.status_code != 200:
        said = " ".join(response.text.split())[:160]
        raise StoreError(f"the tracking server {uri} answered HTTP {response.status_code} to MLflow's API"
                         f"{f' ({said})' if said else ''}; check MLFLOW_TRACKING_URI and its credentials.")


def _unreachable(exc: BaseException) -> str:
    """What a failed request to a server means, as the end of a sentence about the server."""
    import requests
    import urllib3

    lasting = lasting_network_error(exc)
    if isinstance(lasting, ConnectionRefusedError):
        return "refused the connection (nothing listens there)"
    if lasting is not None:
        return f"cannot be found: its host name does not resolve ({lasting.strerror or lasting})"
    if any(isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError)) for e in causes(exc)):
        return f"did not answer within {REACH_SECONDS} s"
    return f"cannot be reached ({first_line(exc)})"


def check_database(uri: str) -> None:
    """One connection, no retry, at most `REACH_SECONDS` (PostgreSQL, MySQL); one sentence if it fails."""
    import sqlalchemy

    timeout = {"connect_timeout": REACH_SECONDS} if uri.startswith(("postgresql", "mysql")) else {}
    engine = None
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=timeout, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect():
            pass
    except ImportError as exc:
        raise StoreError(f"the tracking database {masked(uri)} needs a driver that is not installed ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - a wrong host, port, name or password: one sentence
        reason = first_line(getattr(exc, "orig", None) or exc)
        raise StoreError(f"the tracking database {masked(uri)} cannot be reached ({reason}); start it, or check "
                         f"MLFLOW_TRACKING_URI.") from None
    finally:
        if engine is not None:
            engine.dispose()


def unwritable(directory: Path, file: Path | None = None) -> str | None:
    """Why no file can be made in ``directory`` (read-only, full, not there) or ``file``, if it exists,
    cannot be opened for writing (nothing in it is changed); None if they can."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".cryptolstm-probe-"):
            pass
        if file is not None and file.exists():
            with open(file, "r+b"):
                pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_local(db: Path, read_only: bool) -> bool:
    """Whether the SQLite store ``db`` may be written; its directory is never created (a mistyped path
    would start a new, empty store). Unwritable: one sentence, unless ``read_only`` and it exists."""
    db = db.expanduser().resolve()
    if not db.parent.is_dir():
        raise StoreError(f"the tracking store's directory {db.parent} does not exist; create it, or point "
                         f"MLFLOW_TRACKING_URI at a store in an existing directory.")
    problem = unwritable(db.parent, db)
    if problem is None:
        return True
    if read_only and db.is_file():
        log.debug("the tracking store %s cannot be written (%s): reading it as it is", db, problem)
        return False
    if read_only:
        raise StoreError(f"there is no tracking store at {db}, and none can be made there ({problem}); point "
                         f"MLFLOW_TRACKING_URI at an existing store.")
    raise StoreError(f"the tracking store {db} cannot be written ({problem}); point MLFLOW_TRACKING_URI at a "
                     f"writable place.")


def check_artifacts(folder: Path) -> None:
    """One sentence if ``./mlruns`` (or, missing, its parent: MLflow makes it) cannot be written."""
    folder = folder.resolve()
    problem = unwritable(folder if folder.is_dir() else folder.parent)
    if problem is not None:
        raise StoreError(f"the artifact folder {folder} cannot be written ({problem}): MLflow keeps a local store's "
                         f"artifacts in ./mlruns of the working directory, so run the command from a directory you "
                         f"can write to.")
