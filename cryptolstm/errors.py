"""User-facing errors: each carries one sentence that says what is wrong and how to fix it.

The CLI prints the sentence and exits 2 instead of showing a traceback.
"""

import errno


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


def write_error(exc: BaseException | None) -> BaseException | None:
    """The disk's refusal behind ``exc`` (full, read-only, over a size limit), following the chain of
    causes (MLflow and SQLAlchemy wrap it), or None."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS or any(text in str(exc) for text in FULL):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def write_error_sentence(exc: BaseException) -> str:
    """One sentence for a write the disk refused."""
    filename = getattr(exc, "filename", None)
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]
    return (f"a file could not be written{f' ({filename})' if filename else ''}: {reason}; "
            f"free some disk space or choose a writable place.")


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type if it has none), at most 300 characters."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300].rstrip(".")


def with_article(coin: str) -> str:
    """``coin`` with its article, as read aloud: "a BTC", "an ETH"."""
    return f"{'an' if coin[:1].upper() in 'AEIOU' else 'a'} {coin}"
