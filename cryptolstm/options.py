"""Each workflow's options as one frozen, validated dataclass that owns its defaults and help texts;
`coerce` is the one place that turns text (command line, ``mlflow run`` parameters, YAML) into typed values."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from cryptolstm.errors import ConfigError

DEFAULT_EXPERIMENT = "experiments/default.yaml"
DEFAULT_SPACE = "experiments/search-default.yaml"
BOOLS = dict.fromkeys(("true", "1", "yes"), True) | dict.fromkeys(("false", "0", "no"), False)
DATE_FIELDS = ("start", "end", "since", "until", "sealed_from")
SEALED_FROM = ("First sealed day (YYYY-MM-DD): every day from it on is withheld from this command by the data "
               "layer; open it once with `cryptolstm evaluate --open-seal`.")
SCRATCH, WARM = "scratch", "warm"  # how a fit starts: fresh weights, or the last fit's (`forecasting.Retrain`)
RETRAIN = (SCRATCH, WARM)


def option(default: Any, help: str) -> Any:
    """A dataclass field with a default and the help text its command-line option shows."""
    return field(default=default, metadata={"help": help})


def kind_of(name: str, annotation: Any) -> str:
    """``int``, ``float``, ``bool``, ``date`` or ``str``: how a field's text is read."""
    if name.endswith("_date") or name in DATE_FIELDS:
        return "date"
    return str(annotation).split("|")[0].strip()


def parse_date(name: str, value: Any) -> dt.date:
    """An ISO ``YYYY-MM-DD`` date; a `ConfigError` tells the format, or why the calendar has no such day."""
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        written = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", str(value))
        if written:
            raise ConfigError(f"{name} {value} is not a day of the calendar "
                              f"({_no_such_day(*map(int, written.groups()))}).") from None
        raise ConfigError(f"{name} must be a date written YYYY-MM-DD, got {value!r}.") from None


def _no_such_day(year: int, month: int, day: int) -> str:
    """Why ``year-month-day`` (each in range of its digits) is not a day: the clause after the date."""
    if year < 1:
        return "years start at 0001"
    if not 1 <= month <= 12:
        return f"there is no month {month:02d}; months run 01 to 12"
    if day < 1:
        return "days start at 01"
    return f"{calendar.month_name[month]} {year} has {calendar.monthrange(year, month)[1]} days"


def coerce(name: str, kind: str, value: Any) -> Any:
    """``value`` (text, or already typed) as ``kind``; None stays None; one sentence if it cannot be."""
    if value is None:
        return None
    if kind == "date":
        return parse_date(name, value).isoformat()
    try:
        if kind == "bool":
            return BOOLS[value.lower()] if isinstance(value, str) else bool(value)
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError, KeyError):
        raise ConfigError(f"{name} must be {WORDS.get(kind, kind)}, got {value!r}.") from None


WORDS = {"int": "an integer", "float": "a number", "bool": "true or false"}


def coerce_fields(obj: Any) -> None:
    """Coerce every field of the dataclass instance ``obj`` to its type, in place (frozen too)."""
    for f in fields(obj):
        object.__setattr__(obj, f.name, coerce(f.name, kind_of(f.name, f.type), getattr(obj, f.name)))


@dataclass(frozen=True)
class _Coerced:
    """Options whose fields are coerced to their types on creation."""

    def __post_init__(self) -> None:
        coerce_fields(self)


def given(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the ones not given: None, and the empty text ``mlflow run`` passes."""
    return {k: v for k, v in values.items() if v not in (None, "")}


def from_text(cls: type, values: dict[str, Any]) -> Any:
    """An instance of the options dataclass ``cls`` from the values given."""
    return cls(**given(values))


def to_argv(obj: Any) -> list[str]:
    """``["--x-y", "value", ...]`` for every field of ``obj`` that is set (None is left out)."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    return [text for name, value in values.items() if value is not None
            for text in (f"--{name.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value))]


def at_least(obj: Any, low: int, *names: str) -> None:
    """One sentence naming the size when one of ``names`` (integers, None: not set) is below ``low``."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value}.")


# The largest value of each size a user can type, and why: past it a run would take days, fill the
# registry or the machine, or ask the daily data for more than it holds.
_MEMORY_GIB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 ** 30 if hasattr(os, "sysconf") else 8
_PROCESSES = (max(1, _MEMORY_GIB), f"each worker is a process holding TensorFlow (about 1 GiB), and this machine has "
                                   f"{_MEMORY_GIB} GiB of memory")
LARGEST = {
    "ensemble": (20, "each member is a network trained, exported and registered in full (20 of the default "
                     "model train for about an hour on 2 cores)"),
    "seeds": (20, "each seed trains a network per fold"),
    "window_len": (365, "a window of more than a year leaves too few windows to train on in the daily data"),
    "horizon": (30, "past a month ahead, the daily data hold too few independent targets to score"),
    "n_trials": (1000, "each trial trains a network and logs a run"),
    "n_workers": _PROCESSES,
    "workers": _PROCESSES,
}


def at_most(obj: Any, *names: str) -> None:
    """One sentence naming the size, its bound and why (`LARGEST`) when one of ``names`` exceeds it."""
    for name in names:
        value, (high, why) = getattr(obj, name), LARGEST[name]
        if value is not None and value > high:
            raise ConfigError(f"{name} must be at most {high}, got {value}: {why}.")


@dataclass(frozen=True)
class TrainOptions(_Coerced):
    """``cryptolstm train``: where the run's values come from; each `RunConfig` field is an override."""

    experiment: str = option(DEFAULT_EXPERIMENT, "Experiment file (YAML) with the run's values; options override it.")
    experiment_name: str | None = option(None, "MLflow experiment (default: cryptolstm-<coin>).")
    register: bool = option(False, "Register the run and make it champion when it is comparable with the "
                                   "champion (validated on the same days); else say why.")


@dataclass(frozen=True)
class SearchOptions(_Coerced):
    """``cryptolstm search``: how to search (what the model is comes from the space file)."""

    coin: str | None = option(None, "Coin: BTC or ETH (default: the space's base config).")
    engine: str = option("optuna", "optuna or keras-tuner.")
    space: str = option(DEFAULT_SPACE, "Search space file (YAML).")
    n_trials: int = option(20, "Finished trials the study should hold (a resumed study runs the rest).")
    timeout: float | None = option(None, "Stop starting trials after this many seconds.")
    study_name: str | None = option(None, "Study name (default <coin>-<engine>-<space>).")
    storage: str | None = option(None, "Optuna storage URL (default sqlite:///optuna.db; journal:optuna.journal "
                                       "with n_workers > 1).")
    seed: int | None = option(None, "Seed of the sampler and of every trial's model (default: the base config's).")
    data_dir: str | None = option(None, "Price directory (env CRYPTOLSTM_DATA_DIR, else the base config's).")
    protocol: str | None = option(None, "honest or seed (default: the base config's).")
    merge_date: str | None = option(None, "First day of the data (YYYY-MM-DD).")
    end_date: str | None = option(None, "Last day of the data (YYYY-MM-DD).")
    max_epochs: int | None = option(None, "Cap on epochs per trial (default: the base config's epochs).")
    algorithm: str | None = option(None, "optuna: tpe (default), random, qmc; keras-tuner: hyperband (default), "
                                         "bayesian.")
    prune: bool = option(True, "Prune unpromising Optuna trials.")
    tuner_dir: str = option("keras_tuner", "keras-tuner state directory.")
    overwrite: bool = option(False, "keras-tuner: discard an existing search of this name.")
    experiment_name: str | None = option(None, "MLflow experiment (default cryptolstm-<coin>).")
    register: bool = option(False, "Register the chosen model afterwards, if no comparable run of the experiment "
                                   "did better (champion only if it beats the champion).")
    n_workers: int = option(1, "Worker processes on this machine (>1 needs a journal: or postgresql:// storage).")
    heartbeat: int | None = option(None, "Seconds between trial heartbeats on an RDB storage "
                                         "(default 30 for postgresql://, else off).")
    sealed_from: str | None = option(None, SEALED_FROM)
    follower: bool = option(False, "Join as a worker that never finishes the study (set by --n-workers).")

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "n_trials", "max_epochs", "n_workers", "heartbeat")
        at_most(self, "n_trials", "n_workers")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}.")

    @property
    def storage_url(self) -> str:
        """The storage, defaulted by the number of workers (SQLite cannot take parallel writers)."""
        return self.storage or ("sqlite:///optuna.db" if self.n_workers == 1 else "journal:optuna.journal")

    @property
    def heartbeat_seconds(self) -> int | None:
        """The heartbeat, 30 s by default on PostgreSQL (where workers run on other machines)."""
        return 30 if self.heartbeat is None and self.storage_url.startswith("postgresql") else self.heartbeat

    def base_overrides(self) -> dict[str, Any]:
        """The values that override the space's base config."""
        names = ("coin", "protocol", "data_dir", "merge_date", "end_date", "seed", "sealed_from")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def worker(self) -> SearchOptions:
        """The options of one more local worker on the same study: it joins, never finishes."""
        return dataclasses.replace(self, storage=self.storage_url, n_workers=1, register=False, follower=True)


@dataclass(frozen=True)
class BacktestOptions(_Coerced):
    """``cryptolstm backtest``: which config, and how to walk forward."""

    config: str = option(DEFAULT_EXPERIMENT, "Experiment file, run id, runs:/ID or models:/NAME@ALIAS to test.")
    coin: str | None = option(None, "Coin: BTC or ETH (default: the config's).")
    start: str = option("2019-01-01", "First test day (YYYY-MM-DD).")
    end: str = option("2023-12-31", "Last test day (YYYY-MM-DD).")
    fold_months: int = option(3, "Months per test fold.")
    seeds: int = option(3, "Seeds per fold: the config's seed and the next ones.")
    max_epochs: int | None = option(None, "Cap on each fit's epochs (default: the config's).")
    workers: int = option(1, "Processes fitting in parallel.")
    retrain: str = option(SCRATCH, "How each fold's LSTM starts: scratch (fresh weights) or warm (the last fit's "
                                     "weights, early-stopped on its own validation tail).")
    retrain_every: int = option(1, "Fit on every K-th fold only; the folds between are forecast with the last fit.")
    warm_epochs: int | None = option(None, "Cap on the epochs of a warm fit (default: the fold config's).")
    warm_patience: int | None = option(None, "Epochs without improvement before a warm fit stops (default: 3, at "
                                             "most the config's patience).")
    cluster: str | None = option(None, "Run the fits on a Dask cluster: its scheduler's address, tcp://HOST:PORT "
                                       "(default: local processes, --workers).")
    worker_wait: float = option(120.0, "Seconds a --cluster backtest waits with no Dask worker before it gives up.")
    arima: bool = option(True, "Include the ARIMA baseline.")
    ma_window: int = option(7, "Closes averaged by the moving-average baseline.")
    data_dir: str | None = option(None, "Price directory (env CRYPTOLSTM_DATA_DIR, else the config's).")
    experiment_name: str | None = option(None, "MLflow experiment (default cryptolstm-<coin>).")
    sealed_from: str | None = option(None, SEALED_FROM + " Folds end the day before it.")

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "fold_months", "seeds", "workers", "ma_window", "max_epochs", "retrain_every", "warm_epochs",
                    "warm_patience")
        at_most(self, "seeds", "workers")
        if self.retrain not in RETRAIN:
            raise ConfigError(f"retrain must be one of {', '.join(RETRAIN)}; got {self.retrain!r}.")
        if self.worker_wait <= 0:
            raise ConfigError(f"worker_wait must be > 0 seconds, got {self.worker_wait}.")
        if self.cluster is not None and not self.cluster.startswith(("tcp://", "tls://")):
            raise ConfigError(f"cluster must be a Dask scheduler's address, tcp://HOST:PORT; got {self.cluster!r}.")

    def overrides(self) -> dict[str, Any]:
        """The values that override the source config's."""
        return {k: getattr(self, k) for k in ("coin", "data_dir", "sealed_from") if getattr(self, k) is not None}


@dataclass(frozen=True)
class RegisterOptions(_Coerced):
    """``cryptolstm register``: which run to register."""

    coin: str = option("BTC", "Coin: BTC or ETH.")
    run_id: str | None = option(None, "Register this run's model.")
    study_name: str | None = option(None, "Register the best run of this study.")
    experiment_name: str | None = option(None, "Register the best run of this MLflow experiment.")
    force: bool = option(False, "Make it champion even if it is not better.")
    sealed_from: str | None = option(None, "First sealed day (YYYY-MM-DD): refuse a run whose data reached it, and "
                                           "record the seal on the version.")


@dataclass(frozen=True)
class PredictOptions(_Coerced):
    """``cryptolstm predict``: which model, on which data."""

    coin: str = option("BTC", "Coin: BTC or ETH.")
    model_uri: str | None = option(None, "Model to use (default models:/cryptolstm-<coin>@champion).")
    data_dir: str | None = option(None, "Price directory (env CRYPTOLSTM_DATA_DIR, else data/).")


MODEL_URIS = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"


@dataclass(frozen=True)
class ServeOptions(_Coerced):
    """``cryptolstm serve``: which model, where to listen."""

    coin: str = option("BTC", "Coin whose champion to serve: BTC or ETH.")
    model_uri: str | None = option(None, f"Model to serve instead ({MODEL_URIS}).")
    host: str = option("127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
    port: int = option(5001, "Port to listen on.")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_model_uri(self.model_uri)
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be between 1 and 65535; got {self.port}.")


def _check_model_uri(uri: str | None) -> None:
    if uri is not None and (not uri.startswith(("models:/", "runs:/")) or uri.rstrip("/") in ("models:", "runs:")):
        raise ConfigError(f"model must be a model URI, {MODEL_URIS}; got {uri!r}.")


@dataclass(frozen=True)
class ModelOptions(_Coerced):
    """What ``evaluate`` and ``refit`` share: the model they work on and the price directory."""

    model: str | None = option(None, f"The model: {MODEL_URIS} (default: --coin's champion).")
    coin: str = option("BTC", "Coin whose champion to use when --model is not given: BTC or ETH.")
    data_dir: str | None = option(None, "Price directory (env CRYPTOLSTM_DATA_DIR, else data/).")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_model_uri(self.model)


@dataclass(frozen=True)
class EvaluateOptions(ModelOptions):
    """``cryptolstm evaluate``: which model, on which new days."""

    since: str | None = option(None, "First day to score (default: the day after the model's data ended).")
    until: str | None = option(None, "Last day to score (default: the last day of the data).")
    open_seal: bool = option(False, "Score the model on its sealed days (from its sealed_from on), beside every "
                                    "baseline: the one untouched test, recorded on the version.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.since and self.until and self.since > self.until:
            raise ConfigError(f"--since ({self.since}) is after --until ({self.until}): no day to score.")
        if self.open_seal and self.since:
            raise ConfigError(f"--open-seal scores from the model's seal on; drop --since ({self.since}).")


@dataclass(frozen=True)
class RefitOptions(ModelOptions):
    """``cryptolstm refit``: which model's configuration to retrain on every day up to the latest."""

    end_date: str | None = option(None, "Last day to train on (default: the last day of the data).")
    force: bool = option(False, "Make the refit champion even if it is worse on the common evaluation.")
    retrain: str = option(SCRATCH, "scratch (fresh weights) or warm (the model's own weights go on training).")
    warm_epochs: int | None = option(None, "Cap on a warm refit's epochs (default: the model's config's).")
    sealed_from: str | None = option(None, SEALED_FROM + " Default: the model's own seal.")

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "warm_epochs")
        if self.retrain not in RETRAIN:
            raise ConfigError(f"retrain must be one of {', '.join(RETRAIN)}; got {self.retrain!r}.")


@dataclass(frozen=True)
class ReportOptions(_Coerced):
    """``cryptolstm report``: which experiment, written where."""

    experiment: str = option("cryptolstm-btc", "MLflow experiment name.")
    output: str | None = option(None, "Write the Markdown here (default: print it).")
    top: int = option(10, "How many configurations to list (per set of validation and test days on the HTML page).")
    html: str | None = option(None, "Also write a self-contained HTML results page here (figures embedded).")

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "top")


@dataclass(frozen=True)
class FetchOptions(_Coerced):
    """``cryptolstm fetch``: which coins, into which snapshot store."""

    coins: str = option("BTC,ETH", "Comma-separated coins to fetch.")
    data_dir: str | None = option(None, "Snapshot store (env CRYPTOLSTM_DATA_DIR, else data/).")
    full: bool = option(False, "Fetch the whole history into a fresh snapshot.")

    @property
    def coin_list(self) -> tuple[str, ...]:
        return tuple(c.strip().upper() for c in self.coins.split(",") if c.strip())
