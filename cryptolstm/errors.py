"""User-facing errors: each carries one sentence that says what is wrong and how to fix it (the CLI prints it
and exits 2, no traceback)."""

import errno
import re
import socket
from collections.abc import Iterator
from pathlib import Path


class CryptoLstmError(Exception):
    """Base class of errors caused by the user's input, not by a bug."""


class ConfigError(CryptoLstmError, ValueError):
    """A parameter or experiment file is invalid."""


class DataError(CryptoLstmError):
    """Price data is missing, malformed or too short for the requested run."""


class TrainingError(CryptoLstmError):
    """Training diverged (NaN or infinite loss) for the given config."""


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)
FULL = ("No space left on device", "database or disk is full", "File too large", "Read-only file system")


def causes(exc: BaseException | None, limit: int = 20) -> Iterator[BaseException]:
    """``exc`` and what lies behind it: its cause or context, and exceptions kept as a ``reason`` or argument."""
    todo, seen = [exc], set()
    while todo and len(seen) < limit:
        exc = todo.pop(0)
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        behind = [exc.__cause__ or exc.__context__, getattr(exc, "reason", None), *getattr(exc, "args", ())]
        todo += [e for e in behind if isinstance(e, BaseException)]


def write_error(exc: BaseException | None) -> BaseException | None:
    """The disk's refusal (full, read-only, too large) behind ``exc``, through its chain of causes, or None."""
    return next((e for e in causes(exc) if isinstance(e, OSError) and e.errno in WRITE_ERRNOS
                 or any(text in str(e) for text in FULL)), None)


def lasting_network_error(exc: BaseException | None) -> OSError | None:
    """The cause behind ``exc`` that waiting does not cure (unresolved host, refused connection), or None."""
    return next((e for e in causes(exc) if isinstance(e, (socket.gaierror, ConnectionRefusedError))), None)


def sentence_of(exc: BaseException) -> str | None:
    """The one sentence a user is shown for ``exc`` (a user's error or a refused write); None for a bug."""
    if isinstance(exc, CryptoLstmError):
        return str(exc)
    refused = write_error(exc)
    if refused is None:
        return None
    filename = getattr(refused, "filename", None)
    reason = getattr(refused, "strerror", None) or str(refused).splitlines()[0][:200]
    return (f"a file could not be written{f' ({filename})' if filename else ''}: {reason}; "
            f"free some disk space or choose a writable place.")


def error_tag(exc: BaseException) -> str:
    """A failed run's ``error`` tag: the sentence the user saw (`sentence_of`), else the type and first line."""
    return (sentence_of(exc) or f"{type(exc).__name__}: {first_line(exc)}")[:500]


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages, logs and tags)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type if it has none), at most 300 characters."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300].rstrip(".")


def with_article(coin: str) -> str:
    """``coin`` with its article, as read aloud: "a BTC", "an ETH"."""
    return f"{'an' if coin[:1].upper() in 'AEIOU' else 'a'} {coin}"


def path_problem(path: str | Path, directory: bool = False) -> str | None:
    """What is wrong with ``path`` where a file (``directory``: a directory) is wanted, as the end of a
    sentence ("does not exist", "is a directory, not a file"...), or None if it is one."""
    path = Path(path)
    if directory and path.is_dir() or not directory and path.is_file():
        return None
    if not path.exists():
        return "does not exist"
    if directory:
        return "is a file, not a directory" if path.is_file() else "is not a directory"
    return "is a directory, not a file" if path.is_dir() else "is not a regular file"
