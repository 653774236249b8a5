"""User-facing errors: each carries one sentence that says what is wrong and how to fix it.

The CLI prints the sentence and exits 2 instead of showing a traceback.
"""


class CryptoLstmError(Exception):
    """Base class of errors caused by the user's input, not by a bug."""


class ConfigError(CryptoLstmError, ValueError):
    """A parameter or experiment file is invalid."""


class DataError(CryptoLstmError):
    """Price data is missing, malformed or too short for the requested run."""


class TrainingError(CryptoLstmError):
    """Training diverged (NaN or infinite loss) for the given config."""
