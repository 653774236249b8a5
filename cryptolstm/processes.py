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
    except PermissionError:  # another user's
        pass
    return True


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block (main thread only) until it is over, then raise it: for
    work an interrupt must not cut in half (a store write, a C extension's import). An ignored Ctrl-C
    (``nohup``) stays ignored."""
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
