"""Processes on this host: whether one that holds a run or a trial is still alive, and when this one
answers a Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host is alive (another user's live process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until the block is over, then raise it (in the main
    thread; elsewhere Python delivers no signal anyway). For work an interrupt must not cut in half: a
    store write between epochs (its transaction left open under the clean-up that ends the runs KILLED)
    or the import of a C extension (which turns it into an ImportError or dies by the signal). A
    process started with Ctrl-C ignored (a background job, ``nohup``) goes on ignoring it."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    noted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if noted:
            raise KeyboardInterrupt
