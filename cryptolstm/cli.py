"""Command line: parse -> one library call (`cryptolstm.workflows`) -> print -> exit code. Each option is a
field of the workflow's options dataclass (``train`` also takes every `RunConfig` field), so ``mlflow run`` and
the CLI cannot drift apart. This is the only module that reads the environment."""

import logging
import os
import signal
import sys
from typing import Annotated, Optional

import typer

from cryptolstm import commandline, noise, options as opts
from cryptolstm import render, workflows
from cryptolstm.errors import sentence_of
from cryptolstm.workflows import Environment

app = typer.Typer(
    help="Next-day BTC/ETH price forecasts with LSTMs, tracked in MLflow, always beside persistence. Runs and models "
         "go to MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this directory (see them: mlflow ui "
         "--backend-store-uri sqlite:///mlflow.db).",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, cls=commandline.Group,
)
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or info messages.", metavar="")]
LAUNCHED: list[str] = []  # the run `mlflow run` made for the command being run (see `_root`)
INTERRUPTED: list[bool] = []  # whether `call` has said what a Ctrl-C did (see `main`)
VERBOSE: list[bool] = []  # the root option --verbose (see `_root`)
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


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def fail(message: str) -> None:
    """Print one sentence and exit 2 (under ``mlflow run``, the sentence is also tagged on its run)."""
    typer.echo(f"error: {message}", err=True)
    if LAUNCHED:
        from cryptolstm.tracking.runs import tag_error

        tag_error(LAUNCHED[0], message)
    raise typer.Exit(code=2)


def call(quiet: bool, work, interrupted: str):
    """``work(env)``, after the set-up every command shares and with the environment, read here and only here: a
    user's error as one sentence, Ctrl-C or SIGTERM as exit 130 saying ``interrupted`` (if any)."""
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` ends a run like Ctrl-C: KILLED, never RUNNING
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", force=True)
    noise.set_logger_levels()
    if not any(VERBOSE):
        noise.quiet_logging(logging.getLogger().handlers)
    env = Environment(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"), launched=next(iter(LAUNCHED), None),
                      data_dir=os.environ.get("CRYPTOLSTM_DATA_DIR") or None,
                      fetch_missing=os.environ.get("CRYPTOLSTM_OFFLINE", "") in ("", "0"), progress=not quiet,
                      user=workflows.current_user())
    try:
        return work(env)
    except Exception as exc:
        if sentence_of(exc) is None:
            raise
        fail(sentence_of(exc))
    except KeyboardInterrupt:
        if interrupted:  # a worker the search started stays silent: its leader says it
            typer.echo(f"interrupted: {interrupted}", err=True)
        INTERRUPTED.append(True)
        raise typer.Exit(code=130) from None


def _record(write) -> None:
    """Under ``mlflow run``, record the command on its run (``write(commands)``); failing to is only a warning."""
    if not LAUNCHED:
        return
    from cryptolstm.tracking import commands

    try:
        write(commands)
    except Exception as exc:  # noqa: BLE001 - the command's result was printed; keep its exit code
        logging.getLogger(__name__).warning("the run %s could not record this command: %s", LAUNCHED[0], exc)


@commandline.command(app, "train", opts.TrainOptions, fail, run_config=True)
def train_command(options: opts.TrainOptions, overrides: dict, quiet: Quiet = False) -> None:
    """Train one LSTM on one coin and log the whole run to MLflow."""
    run_id, uri, result, registered = call(quiet, lambda env: workflows.train(options, overrides, env),
                                           "the run was ended KILLED.")
    typer.echo(render.run_summary(run_id, uri, result))
    typer.echo(f"model: runs:/{run_id}/model")
    if registered is not None:
        typer.echo(render.registered_line(registered))
    typer.echo(workflows.where(run_id, uri))


@commandline.command(app, "search", opts.SearchOptions, fail)
def search_command(options: opts.SearchOptions, quiet: Quiet = False) -> None:
    """Search the space with Optuna or keras-tuner; every trial a child run of the study's run.

    Several workers (processes or machines) can share one study: give them the same
    --study-name and a --storage they all reach (postgresql://...), see docs/distributed.md.
    """
    result, uri, registered = call(quiet, lambda env: workflows.search(options, env), "" if options.follower else
                                   "the study run was ended KILLED; run the same command to resume.")
    typer.echo(render.search_text(result, uri))
    if result.best is None and not result.done_before:
        return  # a worker whose trials are done: the last one out says the rest
    typer.echo(workflows.where(result.parent_run_id, uri))
    if registered is not None:
        typer.echo(render.registered_line(registered))


@commandline.command(app, "register", opts.RegisterOptions, fail)
def register_command(options: opts.RegisterOptions, quiet: Quiet = False) -> None:
    """Register the best run (by validation MAE ratio) as a new version; promote it to @champion if better."""
    registration = call(quiet, lambda env: workflows.register(options, env), "nothing was registered.")
    line = render.registered_line(registration)
    typer.echo(line)
    _record(lambda tracking: tracking.record_register(LAUNCHED[0], registration, options.coin,
                                                      options.experiment_name, line))


@commandline.command(app, "predict", opts.PredictOptions, fail)
def predict_command(options: opts.PredictOptions, quiet: Quiet = False) -> None:
    """Forecast the close of the day(s) after the last day in the data directory."""
    out, label = call(quiet, lambda env: workflows.predict(options, env), "no forecast.")
    line = render.forecast_text(out, label)
    typer.echo(line)
    _record(lambda tracking: tracking.record_predict(LAUNCHED[0], out, options.coin, label, line))


@commandline.command(app, "serve", opts.ServeOptions, fail)
def serve_command(options: opts.ServeOptions, quiet: Quiet = False) -> None:
    """Serve a model over HTTP with MLflow's server (POST rows to /invocations), its files checked first."""
    uri, label = call(quiet, lambda env: workflows.serve(options, env), "nothing was served.")
    typer.echo(f"serving {label} at http://{options.host}:{options.port}/invocations (Ctrl-C stops it)")
    sys.stdout.flush()
    mlflow = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
              "--host", options.host, "--port", str(options.port)]
    os.execv(sys.executable, mlflow)  # MLflow's server in this process: Ctrl-C and signals reach it


@commandline.command(app, "backtest", opts.BacktestOptions, fail)
def backtest_command(options: opts.BacktestOptions, quiet: Quiet = False) -> None:
    """Walk-forward backtest: retrain per fold, several seeds, beside persistence, drift, MA and ARIMA."""
    run_id, uri, markdown = call(quiet, lambda env: workflows.backtest(options, env),
                                 "the backtest run was ended KILLED.")
    typer.echo(f"backtest run {run_id} ({uri})")
    typer.echo(markdown)


@commandline.command(app, "evaluate", opts.EvaluateOptions, fail)
def evaluate_command(options: opts.EvaluateOptions, quiet: Quiet = False) -> None:
    """Score a registered model on the days after its training data, beside persistence, without refitting."""
    evaluation, uri = call(quiet, lambda env: workflows.evaluate(options, env), "no evaluation was logged.")
    if evaluation.opening is not None:
        typer.echo(evaluation.opening.said)
    typer.echo(render.evaluation_summary(evaluation))
    typer.echo(workflows.where(evaluation.run_id, uri))


@commandline.command(app, "refit", opts.RefitOptions, fail)
def refit_command(options: opts.RefitOptions, quiet: Quiet = False) -> None:
    """Retrain a model's configuration on every day up to the latest; register it, promoted only if not worse."""
    done, uri = call(quiet, lambda env: workflows.refit(options, env), "the refit run was ended KILLED.")
    typer.echo(f"refit of {done.info.label}:")
    if done.result is not None:
        typer.echo(render.run_summary(done.run_id, uri, done.result))
    typer.echo(render.registered_line(done.registration))
    if done.run_id:
        typer.echo(workflows.where(done.run_id, uri))


@commandline.command(app, "report", opts.ReportOptions, fail)
def report_command(options: opts.ReportOptions, quiet: Quiet = False) -> None:
    """A Markdown summary of an experiment (best configurations, their ratio to persistence, backtests); --html: a results page."""
    text, page = call(quiet, lambda env: workflows.report(options, env), "no report.")
    typer.echo(f"report written to {options.output}" if options.output else text)
    if options.html:
        typer.echo(f"results page written to {options.html}")
    _record(lambda tracking: tracking.record_report(LAUNCHED[0], options.experiment, text, page))


@commandline.command(app, "fetch", opts.FetchOptions, fail)
def fetch_command(options: opts.FetchOptions, quiet: Quiet = False) -> None:
    """Download daily USD candles (Coinbase Exchange, via ccxt) into a new immutable snapshot."""
    from cryptolstm.data.fetch import describe

    typer.echo(describe(call(quiet, lambda env: workflows.fetch(options, env), "nothing was stored.")))


data_app = typer.Typer(help="Import, list and verify price data.", no_args_is_help=True, cls=commandline.Group)
app.add_typer(data_app, name="data")
DataDir = Annotated[Optional[str], typer.Option(help="Snapshot store (env CRYPTOLSTM_DATA_DIR, else data/).",
                                                metavar="DIR")]


@data_app.command("import", cls=commandline.Command)
def import_command(
    file: Annotated[str, typer.Argument(help="A daily price CSV (Yahoo, Kaggle, CoinMarketCap export...).")],
    coin: Annotated[str, typer.Option(help="Coin the file holds: BTC or ETH.", metavar="COIN")],
    data_dir: DataDir = None,
) -> None:
    """Validate a foreign CSV and store it, in the project's format, as a new snapshot."""
    from cryptolstm.data.imports import describe_import, import_csv

    def store(env: Environment):
        directory = env.data_dir_for(data_dir)
        return import_csv(file, coin.upper(), directory), directory

    snap, directory = call(True, store, "nothing was stored.")
    typer.echo(describe_import(file, snap, coin.upper(), directory))


@data_app.command("list", cls=commandline.Command)
def list_command(data_dir: DataDir = None) -> None:
    """The snapshots of a data directory, oldest first; * marks the current one."""
    from cryptolstm.data.snapshots import describe_all

    typer.echo(call(True, lambda env: describe_all(env.data_dir_for(data_dir)), "nothing was listed."))


@data_app.command("verify", cls=commandline.Command)
def verify_command(
    run: Annotated[str, typer.Option("--run", help="MLflow run id whose data to check.", metavar="RUN_ID")],
    data_dir: Annotated[Optional[str], typer.Option(help="Data directory (default: the one the run read).",
                                                    metavar="DIR")] = None,
) -> None:
    """Exit 0 if the data on disk is byte-identical to what the run used, else 1 with the difference."""
    from cryptolstm.tracking.runs import verify_run_data

    verdict = call(True, lambda env: verify_run_data(run, data_dir, env.tracking_uri), "nothing was checked.")
    typer.echo(verdict.message)
    raise typer.Exit(code=0 if verdict.same else 1)


def main() -> None:
    """The command line. A Ctrl-C outside a command's work is exit 130 through typer, silently: say it."""
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
