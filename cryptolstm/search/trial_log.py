"""What Optuna's log says of a failed trial, as a user of the command line should read it."""

from __future__ import annotations

import contextlib
import logging
import re

from cryptolstm.errors import sentence_of


class TrialFailures(logging.Filter):
    """Optuna's two warnings of a failed trial as a user should read them: nothing for Ctrl-C (the
    command says it), one line for a user's reason (a `sentence_of` it), Optuna's traceback for a bug."""

    LOGGER = "optuna.study._optimize"  # where Optuna's `_log_failed_trial` writes
    FAILED = re.compile(r"Trial (\d+) failed with (parameters|value)")

    def __init__(self) -> None:
        super().__init__()
        self.told: set[int] = set()  # trials whose failure was said here (or not at all)

    def filter(self, record: logging.LogRecord) -> bool:
        found = self.FAILED.match(str(record.msg))
        if found is None:
            return True
        number, error = int(found.group(1)), record.exc_info[1] if record.exc_info else None
        if found.group(2) == "value":  # the second warning: say nothing more of a trial told of
            return number not in self.told
        if isinstance(error, KeyboardInterrupt):
            self.told.add(number)
            return False
        sentence = sentence_of(error) if isinstance(error, BaseException) else None
        if sentence is not None:
            self.told.add(number)
            record.msg, record.args = f"trial {number} failed: {sentence}", ()
            record.exc_info = record.exc_text = None
        return True

    @classmethod
    @contextlib.contextmanager
    def applied(cls):
        """The filter on Optuna's logger for the duration of a block."""
        logger, quiet = logging.getLogger(cls.LOGGER), cls()
        logger.addFilter(quiet)
        try:
            yield
        finally:
            logger.removeFilter(quiet)
