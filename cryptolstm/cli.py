"""Command line: parse -> one library call (`cryptolstm.workflows`) -> print -> exit code.

Every option of a command is a field of that workflow's options dataclass
(`cryptolstm.options`), and ``cryptolstm train`` also takes every `RunConfig` field
as ``--x-y``; each MLproject parameter ``x_y`` is passed to the option ``--x-y``,
so ``mlflow run`` and the CLI cannot drift apart. An MLproject parameter left unset
defaults to the text ``None`` (MLflow logs every parameter on the run, and an empty value
would show as a blank there); ``None`` and the empty text both mean "not given", here and
nowhere else (`_given`, `options.from_text`). This is the only module that reads the environment.
"""

import functools
import inspect
import logging
import os
import signal
import sys
from dataclasses import fields
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from cryptolstm import noise, options as opts
from cryptolstm.config import FIELD_NAMES, HELP, RunConfig
from cryptolstm.errors import CryptoLstmError, sentence_of
from cryptolstm import render, workflows
from cryptolstm.workflows import Environment

BOOLEAN = "[true|false]"  # a boolean option's metavar: its value may be left out (see `bare_flags`)
METAVARS = {"int": "INTEGER", "float": "NUMBER", "bool": BOOLEAN, "date": "YYYY-MM-DD", "str": "TEXT"}


def bare_flags(args: list[str], booleans: set[str], valued: set[str]) -> list[str]:
    """``args`` with ``true`` put after each boolean option given bare (last, or before another
    option): ``--force`` reads as ``--force true``, while ``--force false``, as ``mlflow run`` passes
    it, stays. ``valued``: the other options that take a value, which is passed over (it may start
    with "-"); after ``--`` nothing is an option.

    Why here: typer 0.29 parses with its own copy of click, which has no option with an optional
    value (click's ``is_flag=False, flag_value=...``); typer declares those two arguments unsupported.
    """
    out, rest = [], list(args)
    while rest:
        arg = rest.pop(0)
        out.append(arg)
        if arg == "--":
            return out + rest
        if arg in booleans:
            out.append("true" if not rest or rest[0].startswith("-") else rest.pop(0))
        elif arg in valued and rest:
            out.append(rest.pop(0))
    return out


class _PlainFlags:
    """Help that shows no type beside a real flag (``--help``; typer 0.29 writes ``<bool>`` there)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Group(_PlainFlags, TyperGroup):
    """A command group (``cryptolstm``, ``cryptolstm data``)."""


class Command(_PlainFlags, TyperCommand):
    """A command whose boolean options (text options, see `_option`) also work as bare flags."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        options = [p for p in self.params if isinstance(p, TyperOption)]
        booleans = {name for p in options if p.metavar == BOOLEAN for name in p.opts}
        valued = {name for p in options if not p.is_flag and not p.count for name in p.opts}
        return super().parse_args(ctx, bare_flags(args, booleans, valued))


app = typer.Typer(
    help="Next-day BTC/ETH price forecasts with LSTMs, tracked in MLflow, always beside persistence. Runs and models "
         "go to MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this directory (see them: mlflow ui "
         "--backend-store-uri sqlite:///mlflow.db).",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, cls=Group,
)
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or info messages.", metavar="")]
HIDDEN = ("follower",)  # set by the search for the worker processes it starts
LAUNCHED: list[str] = []  # the run `mlflow run` made for the command being run (see `_root`)
INTERRUPTED: list[bool] = []  # whether `call` has said what a Ctrl-C did (see `main`)
VERBOSE: list[bool] = []  # the root option --verbose (see `_root`)
UNSET = ("", "None", "default")  # what an unset MLproject parameter passes: not given
Verbose = Annotated[bool, typer.Option("--verbose", help="Keep TensorFlow's and MLflow's notices, warnings and "
                                                         "download bars (hidden by default).", metavar="")]


@app.callback()
def _root(verbose: Verbose = False) -> None:
    """Next-day BTC/ETH price forecasts with LSTMs, tracked in MLflow, always beside persistence."""
    VERBOSE[:] = [verbose]
    if not verbose:  # TensorFlow and MLflow are imported later, by the command: this is early enough
        noise.quiet(os.environ)
    # The run `mlflow run` made for this command, read before any option is parsed (so that a bad
    # option's sentence is tagged on it too) and taken out of the environment: the tracking layer
    # resumes it itself where it should, and MLflow must not resume it in every later start_run.
    LAUNCHED[:] = [os.environ.pop("MLFLOW_RUN_ID")] if os.environ.get("MLFLOW_RUN_ID") else []


def _option(f, panel: str | None = None, default_text: str | None = None):
    """A text option for dataclass field ``f`` whose help shows its type and default."""
    kind = opts.kind_of(f.name, f.type)
    shown = default_text if default_text is not None else (False if f.default is None else str(f.default).lower()
                                                           if isinstance(f.default, bool) else str(f.default))
    text = f.metadata.get("help") or (HELP.get(f.name, "") if panel else "")
    option = typer.Option("--" + f.name.replace("_", "-"), help=text, metavar=METAVARS[kind],
                          show_default=shown, hidden=f.name in HIDDEN, rich_help_panel=panel)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[str], option])


def _default_run() -> dict[str, str]:
    """Each run-config field's value in the default experiment, as `--help` shows it."""
    from cryptolstm.config import load_config

    cfg = load_config(workflows.find_file(opts.DEFAULT_EXPERIMENT))
    shown = {f.name: getattr(cfg, f.name) for f in fields(RunConfig)}
    return {name: ("none" if value is None else ",".join(value) if isinstance(value, tuple) else str(value).lower()
                   if isinstance(value, bool) else str(value)) for name, value in shown.items()}


def takes(cls, run_config: bool = False):
    """Give a command one option per field of the options dataclass ``cls`` (and, with
    ``run_config``, one per `RunConfig` field); it is called with ``options`` (a ``cls``), the
    ``overrides`` given for the run config, and its own parameters."""

    def decorate(func):
        own = [p for name, p in inspect.signature(func).parameters.items() if name not in ("options", "overrides")]
        extra = [_option(f) for f in fields(cls)]
        if run_config:
            default = _default_run()
            panel = f"Run config (defaults from {opts.DEFAULT_EXPERIMENT})"
            extra += [_option(f, panel, default[f.name]) for f in fields(RunConfig)]

        @functools.wraps(func)
        def wrapper(**kwargs):
            config_values = {name: _given(kwargs.pop(name)) for name in FIELD_NAMES} if run_config else {}
            values = {f.name: _given(kwargs.pop(f.name)) for f in fields(cls)}
            try:
                built = opts.from_text(cls, values)
            except CryptoLstmError as exc:
                fail(str(exc))
            overrides = opts.given(config_values)
            return func(options=built, **({"overrides": overrides} if run_config else {}), **kwargs)

        wrapper.__signature__ = inspect.Signature(own + extra)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        del wrapper.__wrapped__
        return wrapper

    return decorate


def _given(text: str | None) -> str | None:
    """``text``, or None for the values an unset MLproject parameter passes (`UNSET`)."""
    return None if text in UNSET else text


def environment(quiet: bool) -> Environment:
    """The environment, read here and only here, and set-up shared by every command."""
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` ends a run like Ctrl-C: KILLED, never RUNNING
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr,
                        force=True)
    noise.set_logger_levels()
    if not any(VERBOSE):
        noise.quiet_logging(logging.getLogger().handlers)
    return Environment(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"), launched=next(iter(LAUNCHED), None),
                       data_dir=os.environ.get("CRYPTOLSTM_DATA_DIR") or None,
                       fetch_missing=os.environ.get("CRYPTOLSTM_OFFLINE", "") in ("", "0"), progress=not quiet)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def fail(message: str) -> None:
    """Print one sentence and exit 2 (under ``mlflow run``, the sentence is also tagged on its run)."""
    typer.echo(f"error: {message}", err=True)
    if LAUNCHED:
        import click

        from cryptolstm.tracking.runs import tag_error

        context = click.get_current_context(silent=True)
        tag_error(LAUNCHED[0], message, context.info_name if context else "command")
    raise typer.Exit(code=2)


def call(work, interrupted: str):
    """``work()``, with a user's error as one sentence and Ctrl-C or SIGTERM as exit 130 with
    ``interrupted`` said (nothing when it is empty)."""
    try:
        return work()
    except Exception as exc:
        if sentence_of(exc) is None:
            raise
        fail(sentence_of(exc))
    except KeyboardInterrupt:
        if interrupted:  # a worker the search started stays silent: its leader says it
            typer.echo(f"interrupted: {interrupted}", err=True)
        INTERRUPTED.append(True)
        raise typer.Exit(code=130) from None


def _where(run_id: str, uri: str) -> str:
    """The run's experiment and its page in the UI (`cryptolstm.tracking.runs.where`)."""
    from cryptolstm.tracking.runs import where

    return where(run_id, uri)


def _record(write) -> None:
    """Under ``mlflow run``, ``write(cryptolstm.tracking.commands)`` makes the run it launched a record
    of what the command did; a record that cannot be written is a warning, the result stands."""
    if not LAUNCHED:
        return
    from cryptolstm.tracking import commands

    try:
        write(commands)
    except Exception as exc:  # noqa: BLE001 - the command's result was printed; keep its exit code
        logging.getLogger(__name__).warning("the run %s could not record this command: %s", LAUNCHED[0], exc)


@app.command("train", cls=Command)
@takes(opts.TrainOptions, run_config=True)
def train_command(options: opts.TrainOptions, overrides: dict, quiet: Quiet = False) -> None:
    """Train one LSTM on one coin and log the whole run to MLflow."""
    env = environment(quiet)
    run_id, uri, result, registered = call(lambda: workflows.train(options, overrides, env), "the run was ended KILLED.")
    typer.echo(render.run_summary(run_id, uri, result))
    typer.echo(f"model: runs:/{run_id}/model")
    if registered is not None:
        typer.echo(render.registered_line(registered))
    typer.echo(_where(run_id, uri))


@app.command("search", cls=Command)
@takes(opts.SearchOptions)
def search_command(options: opts.SearchOptions, quiet: Quiet = False) -> None:
    """Search the space with Optuna or keras-tuner; every trial a child run of the study's run.

    Several workers (processes or machines) can share one study: give them the same
    --study-name and a --storage they all reach (postgresql://...), see docs/distributed.md.
    """
    env = environment(quiet)
    result, uri, registered = call(lambda: workflows.search(options, env), "" if options.follower else
                                   "the study run was ended KILLED; run the same command to resume.")
    if result.done_before:
        typer.echo(f"study {result.study_name} is finished ({len(result.trials)} trials; best {result.objective} "
                   f"{result.best_value:.4f} with {render.values_text(result.best_values)}): nothing was run or "
                   f"changed; its result is run {result.parent_run_id} (give a larger --n-trials to search on).")
    elif result.best is None:
        typer.echo(f"this worker's trials are done; the last worker out re-trains the chosen config "
                   f"(parent run {result.parent_run_id}).")
        return
    else:
        typer.echo(f"study {result.study_name}: best {result.objective} {result.best_value:.4f} "
                   f"with {render.values_text(result.best_values)}")
        typer.echo(render.run_summary(result.parent_run_id, uri, result.best))
        if result.spa is not None:
            typer.echo(render.spa_text(result.spa))
    typer.echo(_where(result.parent_run_id, uri))
    if registered is not None:
        typer.echo(render.registered_line(registered))


@app.command("register", cls=Command)
@takes(opts.RegisterOptions)
def register_command(options: opts.RegisterOptions, quiet: Quiet = False) -> None:
    """Register the best run (by validation MAE ratio) as a new version; promote it to @champion if better."""
    env = environment(quiet)
    registration = call(lambda: workflows.register(options, env), "nothing was registered.")
    line = render.registered_line(registration)
    typer.echo(line)
    _record(lambda tracking: tracking.record_register(LAUNCHED[0], registration, options.coin,
                                                      options.experiment_name, line))


@app.command("predict", cls=Command)
@takes(opts.PredictOptions)
def predict_command(options: opts.PredictOptions, quiet: Quiet = False) -> None:
    """Forecast the close of the day(s) after the last day in the data directory."""
    env = environment(quiet)
    out, label = call(lambda: workflows.predict(options, env), "no forecast.")
    line = render.forecast_text(out, label)
    typer.echo(line)
    _record(lambda tracking: tracking.record_predict(LAUNCHED[0], out, options.coin, label, line))


@app.command("serve", cls=Command)
@takes(opts.ServeOptions)
def serve_command(options: opts.ServeOptions, quiet: Quiet = False) -> None:
    """Serve a model over HTTP with MLflow's server (POST rows to /invocations), its files checked first."""
    env = environment(quiet)
    uri, label = call(lambda: workflows.serve(options, env), "nothing was served.")
    typer.echo(f"serving {label} at http://{options.host}:{options.port}/invocations (Ctrl-C stops it)")
    sys.stdout.flush()
    mlflow = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
              "--host", options.host, "--port", str(options.port)]
    os.execv(sys.executable, mlflow)  # MLflow's server in this process: Ctrl-C and signals reach it


@app.command("backtest", cls=Command)
@takes(opts.BacktestOptions)
def backtest_command(options: opts.BacktestOptions, quiet: Quiet = False) -> None:
    """Walk-forward backtest: retrain per fold, several seeds, beside persistence, drift, MA and ARIMA."""
    env = environment(quiet)
    run_id, uri, markdown = call(lambda: workflows.backtest(options, env), "the backtest run was ended KILLED.")
    typer.echo(f"backtest run {run_id} ({uri})")
    typer.echo(markdown)


@app.command("evaluate", cls=Command)
@takes(opts.EvaluateOptions)
def evaluate_command(options: opts.EvaluateOptions, quiet: Quiet = False) -> None:
    """Score a registered model on the days after its training data, beside persistence, without refitting."""
    env = environment(quiet)
    evaluation, uri = call(lambda: workflows.evaluate(options, env), "no evaluation was logged.")
    typer.echo(render.live_summary(evaluation))
    typer.echo(_where(evaluation.run_id, uri))


@app.command("refit", cls=Command)
@takes(opts.RefitOptions)
def refit_command(options: opts.RefitOptions, quiet: Quiet = False) -> None:
    """Retrain a model's configuration on every day up to the latest; register it, promoted only if not worse."""
    env = environment(quiet)
    done, uri = call(lambda: workflows.refit(options, env), "the refit run was ended KILLED.")
    typer.echo(f"refit of {done.info.label}:")
    if done.result is not None:
        typer.echo(render.run_summary(done.run_id, uri, done.result))
    typer.echo(render.registered_line(done.registration))
    if done.run_id:
        typer.echo(_where(done.run_id, uri))


@app.command("report", cls=Command)
@takes(opts.ReportOptions)
def report_command(options: opts.ReportOptions, quiet: Quiet = False) -> None:
    """A Markdown summary of an experiment: best configurations, their ratio to persistence, backtests."""
    env = environment(quiet)
    text = call(lambda: workflows.report(options, env), "no report.")
    typer.echo(f"report written to {options.output}" if options.output else text)
    _record(lambda tracking: tracking.record_report(LAUNCHED[0], options.experiment, text))


@app.command("fetch", cls=Command)
@takes(opts.FetchOptions)
def fetch_command(options: opts.FetchOptions, quiet: Quiet = False) -> None:
    """Download daily USD candles (Coinbase Exchange, via ccxt) into a new immutable snapshot."""
    from cryptolstm.data.fetch import describe

    env = environment(quiet)
    typer.echo(describe(call(lambda: workflows.fetch(options, env), "nothing was stored.")))


data_app = typer.Typer(help="Import, list and verify price data.", no_args_is_help=True, cls=Group)
app.add_typer(data_app, name="data")
DataDir = Annotated[Optional[str], typer.Option(help="Snapshot store (env CRYPTOLSTM_DATA_DIR, else data/).",
                                                metavar="DIR")]


@data_app.command("import", cls=Command)
def import_command(
    file: Annotated[str, typer.Argument(help="A daily price CSV (Yahoo, Kaggle, CoinMarketCap export...).")],
    coin: Annotated[str, typer.Option(help="Coin the file holds: BTC or ETH.", metavar="COIN")],
    data_dir: DataDir = None,
) -> None:
    """Validate a foreign CSV and store it, in the project's format, as a new snapshot."""
    from cryptolstm.data.imports import describe_import, import_csv

    directory = environment(True).data_dir_for(data_dir)
    snap = call(lambda: import_csv(file, coin.upper(), directory), "nothing was stored.")
    typer.echo(describe_import(file, snap, coin.upper(), directory))


@data_app.command("list", cls=Command)
def list_command(data_dir: DataDir = None) -> None:
    """The snapshots of a data directory, oldest first; * marks the current one."""
    from cryptolstm.data.snapshots import describe_all

    directory = environment(True).data_dir_for(data_dir)
    typer.echo(call(lambda: describe_all(directory), "nothing was listed."))


@data_app.command("verify", cls=Command)
def verify_command(
    run: Annotated[str, typer.Option("--run", help="MLflow run id whose data to check.", metavar="RUN_ID")],
    data_dir: Annotated[Optional[str], typer.Option(help="Data directory (default: the one the run read).",
                                                    metavar="DIR")] = None,
) -> None:
    """Exit 0 if the data on disk is byte-identical to what the run used, else 1 with the difference."""
    from cryptolstm.tracking.runs import verify_run_data

    env = environment(True)
    verdict = call(lambda: verify_run_data(run, data_dir, env.tracking_uri), "nothing was checked.")
    typer.echo(verdict.message)
    raise typer.Exit(code=0 if verdict.same else 1)


def main() -> None:
    """The command line (`cryptolstm.__main__` runs it). A Ctrl-C outside a command's work (while
    its options are read or its result printed) is exit 130 through typer, silently: say it."""
    try:
        app()
    except SystemExit as exc:
        if exc.code == 130 and not INTERRUPTED:
            typer.echo("interrupted.", err=True)
        for signum in (signal.SIGINT, signal.SIGTERM):  # while the libraries' exit handlers run
            signal.signal(signum, _interrupted_on_exit)
        raise


def _interrupted_on_exit(signum, frame) -> None:
    sys.stderr.write("interrupted while exiting, after the command had ended (what it printed stands).\n")
    sys.stderr.flush()
    os._exit(130)
