"""What the terminal is spared (``--verbose`` keeps it): notices of TensorFlow and MLflow a user can do nothing
about. TensorFlow writes some through absl before it reads its log level, so ``TF_CPP_MIN_LOG_LEVEL`` cannot
hide them: the native stderr goes through a filter process; Python's own stderr keeps the terminal."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import MutableMapping

# absl-formatted INFO and WARNING lines ("I0000 00:00:..."), absl's pre-initialisation banner,
# the second line of TensorFlow's CPU-instructions notice, grappler's error about an attribute
# of the tf.data op that it does not know, and the CUDA build's error on a machine without a GPU.
DROPPED = (rb"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} \d\d:\d\d:"
           rb"|E\d{4} .*(use_unbounded_threadpool|failed call to cuInit)|To enable the following instructions: )")
# MLflow re-configures its own loggers when it is imported (level from MLFLOW_LOGGING_LEVEL, its
# own handler), so its INFO lines ("Creating initial MLflow database tables...") are hidden here.
ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
               "MLFLOW_LOGGING_LEVEL": "WARNING"}
DROPPED_LOG_WORDS = ("CloudPickle",)  # MLflow's note that the pickling library's version changed
# Python loggers and the level below which they are silent, in every process that fits (the command's
# own and a backtest's worker processes): TensorFlow's retracing warnings, MLflow's and Optuna's INFO.
LOGGER_LEVELS = (("mlflow", logging.WARNING), ("alembic", logging.WARNING), ("urllib3", logging.WARNING),
                 ("absl", logging.ERROR), ("tensorflow", logging.ERROR), ("tf2onnx", logging.ERROR),
                 ("optuna", logging.WARNING), ("matplotlib", logging.WARNING), ("keras_tuner", logging.WARNING))
_FILTER = """import re, sys
drop = re.compile(sys.argv[1].encode())
for line in sys.stdin.buffer:
    if not drop.match(line):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""
_FILTERING: list[subprocess.Popen] = []  # the filter process, once per process


def quiet(environ: MutableMapping[str, str]) -> None:
    """Set ``environ``'s defaults (a value the user set wins) and, once, point file descriptor 2 at the filter and
    Python's stderr at the terminal; the filter's own session outlives a crash or Ctrl-C, passing its last lines."""
    for key, value in ENVIRONMENT.items():
        environ.setdefault(key, value)
    try:
        native = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a test runner's or a notebook's capture
        native = False
    if _FILTERING or not native:
        return
    terminal = os.dup(2)
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, DROPPED.decode()], stdin=subprocess.PIPE,
                            stdout=terminal, stderr=subprocess.DEVNULL, start_new_session=True)
    os.dup2(proc.stdin.fileno(), 2)
    proc.stdin.close()
    sys.stderr.flush()
    sys.stderr = io.TextIOWrapper(io.FileIO(terminal, "w"), encoding=sys.stderr.encoding,
                                  errors=sys.stderr.errors, line_buffering=True)
    _FILTERING.append(proc)


def set_logger_levels() -> None:
    """Give the noisy libraries' loggers their levels (`LOGGER_LEVELS`)."""
    for name, level in LOGGER_LEVELS:
        logging.getLogger(name).setLevel(level)


def _kept(record: logging.LogRecord) -> bool:
    return not any(w in record.getMessage() for w in DROPPED_LOG_WORDS)


def quiet_logging(handlers: list[logging.Handler]) -> None:
    """Drop MLflow's CloudPickle notes from ``handlers`` and from its own logger (a root handler never sees them)."""
    for handler in handlers:
        handler.addFilter(_kept)
    logging.getLogger("mlflow.pyfunc").addFilter(_kept)
