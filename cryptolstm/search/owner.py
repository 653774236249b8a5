"""One command at a time on a study kept in a file (SQLite or a journal).

SQLite takes one writer per study, and a journal shared by hand has no heartbeat: a second
command on such a study cannot tell the first one's running trial from a trial left by a crash.
(It used to fail it under the first's feet; the first then died telling Optuna the result of a
FAIL trial, with MLflow saying ``complete``.) So the command that opens such a study holds an OS
lock (``flock``) on a file beside the storage for as long as it runs, and writes in it who it
is; a second command finds the lock held and is refused in one sentence naming the first,
before it touches the study. The kernel drops the lock when its holder ends, however it ends
(a SIGKILL too), so a crashed command never blocks the next, which resumes the study. The
worker processes a command starts with ``--n-workers`` work under its lock. A PostgreSQL study
is shared by any number of commands (a heartbeat tells a live trial from a dead one) and takes
no such lock.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptolstm.errors import ConfigError
from cryptolstm.search.storage import JOURNAL, masked, storage_file


@dataclass
class StudyOwner:
    """This process's hold on a study (see module docstring); `release` it when the command ends."""

    path: Path
    fd: int

    def release(self) -> None:
        """Let the next command have the study (the file stays: removing it could race a newcomer)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lock_path(storage: Path, study: str) -> Path:
    """``optuna.db.study-<name>.lock`` beside the storage file; a name with characters a file name
    should not hold is spelled safely and told apart by a digest."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", study)[:60]
    if slug != study:
        slug += "-" + hashlib.sha1(study.encode()).hexdigest()[:8]
    return storage.with_name(f"{storage.name}.study-{slug}.lock")


def own_study(url: str, study: str) -> StudyOwner | None:
    """Hold study ``study`` of the storage ``url`` for this process (None: a database server,
    shared by design); a study another command holds is refused in one sentence naming it."""
    storage = storage_file(url)
    if storage is None:
        return None
    path = lock_path(storage.resolve(), study)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot open storage {masked(url)}: {path.parent} cannot be written "
                          f"({exc.strerror or exc}).") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 300).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConfigError(_busy(url, study, holder)) from None
    os.ftruncate(fd, 0)  # who holds it, for the sentence a second command prints
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since {dt.datetime.now():%Y-%m-%d %H:%M:%S}"
             .encode())
    return StudyOwner(path, fd)


def _busy(url: str, study: str, holder: str) -> str:
    """The sentence for a study another command holds, with the ways to run several processes."""
    if url.startswith(JOURNAL):
        how = ("wait for that one to end, or run several processes with one command's --n-workers N (one machine) "
               "or on a postgresql:// storage, which any number of commands can join")
    else:
        how = ("SQLite takes one process per study: wait for that one to end, or run several with --n-workers N "
               "--storage journal:optuna.journal (one machine) or on a postgresql:// storage (many)")
    return f"study {study!r} in {masked(url)} is already being run by {holder}; {how}."
