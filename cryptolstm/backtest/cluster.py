"""Where a backtest's chains of fits run: this process, local worker processes, or a Dask cluster, which
never leaves it waiting for ever (a lost worker while others remain is Dask's to handle: it reruns its jobs)."""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Iterator

from cryptolstm import noise
from cryptolstm.errors import ConfigError

log = logging.getLogger(__name__)

CONNECT_SECONDS = 15  # how long a backtest waits for a Dask scheduler before it gives up
START = "start one with `dask scheduler` and its workers with `dask worker {address}` (docs/distributed.md)"


def _start_worker(threads: int) -> None:
    """Worker initialiser: TensorFlow uses ``threads`` cores, the libraries' loggers are as quiet as here."""
    import tensorflow as tf

    noise.set_logger_levels()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


@contextlib.contextmanager
def local_processes(workers: int) -> Iterator[futures.Executor | None]:
    """``workers`` spawned processes (TensorFlow is not fork-safe) of ``cores // workers`` threads each;
    None (this process) for one."""
    if workers == 1:
        yield None
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_start_worker, initargs=(threads,)) as pool:
        yield pool


def check_scheduler(address: str, seconds: float = CONNECT_SECONDS) -> None:
    """One sentence, before any run exists, when nothing answers at ``address`` (tcp://HOST:PORT): at once for a
    host that does not resolve or a refused connection, else after ``seconds``."""
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    host, port = parts.hostname, parts.port or 8786  # 8786: Dask's default scheduler port
    try:
        socket.create_connection((host, port), timeout=seconds).close()
    except socket.gaierror:
        raise ConfigError(f"the Dask scheduler's host {host} (in {address}) does not resolve; check the "
                          "address.") from None
    except ConnectionRefusedError:
        raise ConfigError(f"nothing listens at {address} (connection refused); {START.format(address=address)}.") from None
    except OSError as exc:
        raise ConfigError(f"no Dask scheduler answers at {address} within {seconds} s ({exc.__class__.__name__}); "
                          f"{START.format(address=address)}.") from None


class ClusterExecutor(futures.Executor):
    """A Dask client as a ``concurrent.futures`` executor (one ``pure=False`` task per ``submit``) that fails
    every pending job with one sentence when the scheduler goes away or no worker joins for ``worker_wait`` s."""

    def __init__(self, client, address: str, worker_wait: float, poll: float = 1.0) -> None:
        self.client, self.address, self.worker_wait, self.poll = client, address, worker_wait, poll
        self.pending: dict[futures.Future, object] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="cryptolstm-dask-watch", daemon=True)
        self.watcher.start()

    def submit(self, fn, /, *args, **kwargs) -> futures.Future:
        mine, theirs = futures.Future(), self.client.submit(fn, *args, pure=False, **kwargs)
        with self.lock:
            self.pending[mine] = theirs
        theirs.add_done_callback(lambda done: self._settle(mine, done))
        return mine

    def _settle(self, mine: futures.Future, theirs) -> None:
        """Copy the Dask task's outcome to ``mine`` (a lost scheduler as its sentence)."""
        try:
            outcome, failed = theirs.result(), False
        except futures.CancelledError as exc:
            outcome, failed = self._cancelled(exc), True
        except BaseException as exc:  # noqa: BLE001 - the job's own error, passed on as it is
            outcome, failed = exc, True
        with self.lock:
            self.pending.pop(mine, None)
            if not mine.done():  # else failed by the watcher, or the caller cancelled it
                if failed:
                    mine.set_exception(outcome)
                else:
                    mine.set_result(outcome)

    def _cancelled(self, exc: BaseException) -> ConfigError:
        if getattr(exc, "reason", "") == "scheduler-connection-lost" or self.client.status != "running":
            return ConfigError(f"the Dask scheduler at {self.address} went away during the backtest; start it and "
                               f"its workers again, then run the same command.")
        return ConfigError(f"the Dask cluster at {self.address} cancelled a job ({getattr(exc, 'reason', exc)}); "
                           f"run the same command again.")

    def _fail_all(self, error: ConfigError) -> None:
        with self.lock:  # as `_settle` holds it: a job is settled by one of the two, never both
            jobs, self.pending = self.pending, {}
            for mine in jobs:
                if not mine.done():
                    mine.set_exception(error)
        for theirs in jobs.values():
            with contextlib.suppress(Exception):  # a client already closed, a scheduler gone: nothing to cancel
                theirs.cancel()

    def _watch(self) -> None:
        alone_since: float | None = None
        while not self.stopped.wait(self.poll):
            try:  # None: the scheduler cannot be asked (it went away)
                workers = len(self.client.nthreads()) if self.client.status == "running" else None
            except Exception:  # noqa: BLE001 - a closed connection, a timeout: Dask cancels the tasks as well
                workers = None
            if workers != 0:
                alone_since = None
                continue
            if alone_since is None:
                alone_since = time.monotonic()
                log.warning("no Dask worker is connected to %s; waiting up to %g s for one (`dask worker %s`)",
                            self.address, self.worker_wait, self.address)
            elif time.monotonic() - alone_since >= self.worker_wait:
                self._fail_all(ConfigError(
                    f"no Dask worker was connected to {self.address} for {self.worker_wait:g} s; start one with "
                    f"`dask worker {self.address}` and run the same command (--worker-wait sets how long to wait)."))
                alone_since = None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.stopped.set()
        self.watcher.join(timeout=2 * self.poll + 5)
        if cancel_futures:
            self._fail_all(ConfigError("the backtest stopped."))


@contextlib.contextmanager
def dask_cluster(address: str, worker_wait: float) -> Iterator[futures.Executor]:
    """A `ClusterExecutor` of the Dask scheduler at ``address``, whose own log lines (a lost connection, a
    failed reconnect) stay quiet: the backtest says it in one sentence."""
    from distributed import Client

    check_scheduler(address)
    names = dict.fromkeys(("distributed", *logging.root.manager.loggerDict))  # each once, "distributed" first
    quiet = [logging.getLogger(name) for name in names if name.startswith("distributed")]  # Dask sets their levels
    with contextlib.ExitStack() as levels:
        for logger in quiet:
            levels.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.CRITICAL + 1)
        try:
            client = Client(address, timeout=f"{CONNECT_SECONDS}s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"no Dask scheduler answers at {address} within {CONNECT_SECONDS} s "
                              f"({exc.__class__.__name__}); {START.format(address=address)}.") from None
        executor = ClusterExecutor(client, address, worker_wait)
        try:
            yield executor
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(Exception):  # a scheduler that went away cannot be told goodbye
                client.close(timeout=5)


def executor_for(options) -> contextlib.AbstractContextManager[futures.Executor | None]:
    """A Dask cluster (``options.cluster``), else local processes (``options.workers``; one: this process)."""
    if options.cluster:
        return dask_cluster(options.cluster, options.worker_wait)
    return local_processes(options.workers)
