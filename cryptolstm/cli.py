"""Command line: parse -> config -> one library call -> exit code.

Every `RunConfig` field is an option ``--x-y`` of the commands that train, and
every MLproject parameter ``x_y`` is passed to that option, so ``mlflow run``
and the CLI cannot drift apart. An empty value means "not given": the
experiment file's value (or the default) is used.
"""

import functools
import inspect
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

import typer

from cryptolstm.config import (
    ACTIVATIONS,
    COINS,
    FIELD_NAMES,
    LOSSES,
    OPTIMIZERS,
    PROTOCOLS,
    RECURRENT_ACTIVATIONS,
    RunConfig,
    load_config,
)
from cryptolstm.errors import CryptoLstmError

app = typer.Typer(
    help="Next-day BTC/ETH price forecasts with LSTMs, tracked in MLflow, always beside persistence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DEFAULT_EXPERIMENT = "experiments/default.yaml"

@app.callback()
def _root() -> None:
    """Next-day BTC/ETH price forecasts with LSTMs, tracked in MLflow, always beside persistence."""


HELP = {
    "coin": f"Coin to forecast: {', '.join(COINS)}.",
    "protocol": f"{' or '.join(PROTOCOLS)}: honest train/val/test, or the 2018 notebook's split.",
    "data_dir": "Directory with btc-usd-daily.csv and eth-usd-daily.csv (env CRYPTOLSTM_DATA_DIR, else data/).",
    "merge_date": "First day of the merged data (YYYY-MM-DD).",
    "end_date": "Last day of the merged data (YYYY-MM-DD); empty = last day in the files.",
    "fill_gaps": "Forward-fill missing days instead of stopping (true/false).",
    "window_len": "Days per input window.",
    "train_frac": "Share of samples (honest) or days (seed) used for training.",
    "val_frac": "Share of samples for validation (honest); the rest is test.",
    "layers": "Number of stacked LSTM layers.",
    "neurons": "Units per LSTM layer.",
    "dropout": "Dropout after each LSTM layer, in [0, 1).",
    "activation": f"LSTM cell activation: {', '.join(ACTIVATIONS)}.",
    "recurrent_activation": f"LSTM gate activation: {', '.join(RECURRENT_ACTIVATIONS)}.",
    "output_activation": f"Activation of the Dense(1) output: {', '.join(ACTIVATIONS)}.",
    "loss": f"Training loss: {', '.join(LOSSES)}.",
    "optimizer": f"Optimizer: {', '.join(OPTIMIZERS)}.",
    "learning_rate": "Optimizer learning rate.",
    "batch_size": "Samples per gradient step.",
    "epochs": "Epochs (honest: the maximum; early stopping may end sooner).",
    "patience": "Epochs without val/loss improvement before early stopping (honest).",
    "shuffle": "Shuffle training windows each epoch (true/false).",
    "seed": "Seed for Python, NumPy and Keras.",
}


def _option(name: str):
    flag = "--" + name.replace("_", "-")
    kind = str(RunConfig.__dataclass_fields__[name].type).split("|")[0].strip()
    metavar = "DATE" if name.endswith("_date") else {"str": "TEXT"}.get(kind, kind.upper())
    return Annotated[
        Optional[str],
        typer.Option(flag, help=HELP[name], metavar=metavar, show_default=False, rich_help_panel="Run config"),
    ]


def config_options(func):
    """Give a command one ``--x-y`` option per `RunConfig` field, passed on as ``overrides``.

    The wrapped function takes ``overrides: dict`` with empty values dropped.
    """
    own = [p for name, p in inspect.signature(func).parameters.items() if name != "overrides"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_option(name))
        for name in FIELD_NAMES
    ]

    @functools.wraps(func)
    def wrapper(**kwargs):
        values = {name: kwargs.pop(name) for name in FIELD_NAMES}
        overrides = {k: v for k, v in values.items() if v not in (None, "")}
        return func(overrides=overrides, **kwargs)

    params = own + extra
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__
    return wrapper


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _setup(quiet: bool) -> None:
    # `kill` (SIGTERM) ends a run like Ctrl-C does: KILLED in MLflow, never left RUNNING.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("mlflow", "alembic", "absl", "tensorflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def find_experiment(path: str) -> str:
    """``path`` as given, or, if relative and absent here, inside this project's checkout."""
    here = Path(path)
    beside_package = Path(__file__).resolve().parents[1] / path
    return str(beside_package) if not here.exists() and not here.is_absolute() and beside_package.exists() else path


def resolve_data_dir(overrides: dict) -> dict:
    """``--data-dir``, else ``CRYPTOLSTM_DATA_DIR``, else the experiment file's or ``data``."""
    if "data_dir" not in overrides and os.environ.get("CRYPTOLSTM_DATA_DIR"):
        return {**overrides, "data_dir": os.environ["CRYPTOLSTM_DATA_DIR"]}
    return overrides


@app.command("train")
@config_options
def train_command(
    overrides: dict,
    experiment: Annotated[
        str, typer.Option(help="Experiment file (YAML) with the run's values; options override it.")
    ] = DEFAULT_EXPERIMENT,
    experiment_name: Annotated[
        Optional[str], typer.Option(help="MLflow experiment (default: cryptolstm-<coin>).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or info messages.")] = False,
) -> None:
    """Train one LSTM on one coin and log the whole run to MLflow."""
    _setup(quiet)
    try:
        experiment = find_experiment(experiment or DEFAULT_EXPERIMENT)
        cfg = load_config(experiment, **resolve_data_dir(overrides))
        from cryptolstm.data import load_market

        market = load_market(cfg.data_dir, cfg.merge_date, cfg.end_date, cfg.fill_gaps)
    except CryptoLstmError as exc:
        _fail(str(exc))
    from cryptolstm import tracking

    uri = tracking.use_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
    try:
        run_id, result = tracking.tracked_train(
            cfg, market, experiment_file=experiment, experiment_name=experiment_name, progress=not quiet
        )
    except CryptoLstmError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted: the run was ended KILLED.", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(summary(run_id, uri, result))


def summary(run_id: str, uri: str, result) -> str:
    """A few lines: where the run is, and each split's MAE beside persistence."""
    cfg = result.config
    units = "USD" if cfg.protocol == "honest" else "normalised units"
    lines = [f"run {run_id} ({uri}); {cfg.coin}, protocol {cfg.protocol}, MAE in {units}:"]
    lines.append(f"  {'split':<6}{'model':>14}{'persistence':>14}{'ratio':>8}{'direction':>11}")
    for split in ("val", "test"):
        if f"{split}/mae" in result.metrics:
            m = {k.split("/", 1)[1]: v for k, v in result.metrics.items() if k.startswith(split + "/")}
            lines.append(
                f"  {split:<6}{m['mae']:>14.6g}{m['persistence_mae']:>14.6g}"
                f"{m['mae_ratio']:>8.3f}{m['direction_accuracy']:>10.1%}"
            )
    lines.append("  ratio < 1 means the model beat persistence on those days.")
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point."""
    app()
