"""One command at a time on a study kept in a file (SQLite, journal), which cannot tell another command's
running trial from a crashed one: an ``flock`` beside the storage, dropped by the kernel however its holder
ends, refuses a second command in one sentence. PostgreSQL studies (with a heartbeat) take no lock."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import re
import socket
from dataclasses import dataclass

from cryptolstm.errors import ConfigError
from cryptolstm.search.storage import JOURNAL, masked, storage_file


@dataclass
class StudyOwner:
    """This process's hold on a study; `release` it when the command ends."""

    fd: int

    def release(self) -> None:
        """Let the next command have the study (the file stays: removing it could race a newcomer)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def own_study(url: str, study: str) -> StudyOwner | None:
    """Hold ``study`` of ``url`` for this process (None for a database server); a study another
    command holds is refused in one sentence naming it."""
    storage = storage_file(url)
    if storage is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", study)[:60]
    if slug != study:  # a name a file name should not hold is spelled safely and told apart by a digest
        slug += "-" + hashlib.sha1(study.encode()).hexdigest()[:8]
    storage = storage.resolve()
    path = storage.with_name(f"{storage.name}.study-{slug}.lock")  # optuna.db.study-<name>.lock
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
    return StudyOwner(fd)


def _busy(url: str, study: str, holder: str) -> str:
    """The sentence for a study another command holds, with the ways to run several processes."""
    if url.startswith(JOURNAL):
        how = ("wait for that one to end, or run several processes with one command's --n-workers N (one machine) "
               "or on a postgresql:// storage, which any number of commands can join")
    else:
        how = ("SQLite takes one process per study: wait for that one to end, or run several with --n-workers N "
               "--storage journal:optuna.journal (one machine) or on a postgresql:// storage (many)")
    return f"study {study!r} in {masked(url)} is already being run by {holder}; {how}."
