"""Where an Optuna study lives: ``sqlite:///optuna.db`` (one process), ``journal:PATH`` (several on one
machine, no heartbeat) or ``postgresql://...`` (many machines, a heartbeat, calls retried on a lost connection)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.storages import RDBStorage

from cryptolstm.errors import ConfigError, masked  # noqa: F401 - masked is used from here too

log = logging.getLogger(__name__)

JOURNAL = "journal:"
RECONNECT_SECONDS = 120.0  # how long a storage call keeps retrying a lost database connection


def is_parallel_safe(url: str) -> bool:
    """Whether several processes may write to this storage at once."""
    return not url.startswith("sqlite")


def _transient(exc: BaseException | None) -> bool:
    """Whether a lost connection is anywhere in ``exc``'s chain: Optuna wraps it in a
    `StorageInternalError`, and a query that falls back after it ends in SQLAlchemy's `PendingRollbackError`."""
    import sqlalchemy.exc as sa

    for _ in range(8):  # a chain is a few links long; a bound, in case one loops
        if exc is None:
            return False
        if isinstance(exc, (sa.OperationalError, sa.InterfaceError)):
            return True
        if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retrying(method):
    from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

    def tell(state) -> None:
        log.warning("optuna storage: %s; retrying in %.1f s", str(state.outcome.exception()).splitlines()[0][:160],
                    state.next_action.sleep)

    return retry(retry=retry_if_exception(_transient), wait=wait_exponential(multiplier=0.5, max=8.0),
                 stop=stop_after_delay(RECONNECT_SECONDS), before_sleep=tell, reraise=True)(method)


# Private RDBStorage methods Optuna's `_CachedStorage` calls directly; each commits its own session: safe to retry.
CACHED_STORAGE_CALLS = ("_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id",
                        "_get_stale_trial_ids")


class ResilientRDBStorage(RDBStorage):
    """An `RDBStorage` whose every call (public, or one `_CachedStorage` calls) retries for up to
    `RECONNECT_SECONDS` when the database connection is lost."""


for _name, _method in list(vars(RDBStorage).items()):
    if callable(_method) and (not _name.startswith("_") or _name in CACHED_STORAGE_CALLS):
        setattr(ResilientRDBStorage, _name, _retrying(_method))


def storage_file(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` or ``journal:PATH`` storage, else None. A missing directory is
    refused, never created: a mistyped path would otherwise start a new, empty study elsewhere."""
    if url.startswith(JOURNAL):
        path = url.removeprefix(JOURNAL)
        if not path:
            raise ConfigError("storage journal: needs a file path, e.g. journal:optuna.journal.")
    else:
        path = url.removeprefix("sqlite:///").split("?")[0] if url.startswith("sqlite:///") else ""
        if path in ("", ":memory:"):  # a database server, or SQLite in memory
            return None
    file = Path(path).expanduser()
    if not file.resolve().parent.is_dir():
        raise ConfigError(f"storage {masked(url)}: the directory {file.resolve().parent} does not exist; "
                          f"create it first or choose another path.")
    return file


def open_storage(url: str, heartbeat: int | None = None):
    """The Optuna storage for ``url``; ``heartbeat``: seconds between a running trial's heartbeats
    (RDB storages only), a trial silent for 2x as long is failed and queued again (at most 3 times)."""
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(storage_file(url))))
    if heartbeat is not None and heartbeat < 1:
        raise ConfigError(f"heartbeat must be an integer >= 1 second, got {heartbeat}.")
    try:
        # A file lock beside a local SQLite database while its schema is created: two processes creating
        # it at once would race in its migrations.
        path = storage_file(url) if url.startswith("sqlite:///") else None
        creation = contextlib.nullcontext() if path is None else FileLock(f"{path.resolve()}.lock", timeout=600)
        with warnings.catch_warnings(), creation:  # Optuna calls the heartbeat "experimental" (there since 2.9)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3) if heartbeat else None
            kwargs = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat,
                      "heartbeat_stale_trial_callback": callback} if heartbeat else {}
            engine_kwargs = {"pool_pre_ping": True} if not url.startswith("sqlite") else None
            return ResilientRDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except ConfigError:
        raise
    except ImportError as exc:
        raise ConfigError(f"storage {masked(url)} needs a database driver that is not installed ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - a wrong URL, host or password: one sentence
        raise ConfigError(f"cannot open storage {masked(url)}: {str(exc).splitlines()[0][:200]}") from None
