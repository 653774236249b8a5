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
DEFAULT_SPACE = "experiments/search-default.yaml"

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
    launched = os.environ.get("MLFLOW_RUN_ID")
    if launched:  # `mlflow run` made the run before we started: say in it why it failed
        try:
            from mlflow import MlflowClient

            MlflowClient().set_tag(launched, "error", message)
        except Exception:  # noqa: BLE001 - the sentence on stderr is what matters
            pass
    raise typer.Exit(code=2)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _setup(quiet: bool) -> None:
    # `kill` (SIGTERM) ends a run like Ctrl-C does: KILLED in MLflow, never left RUNNING.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr,
                        force=True)
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for noisy in ("absl", "tensorflow"):  # tf.function retracing notes between trials
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _check_splits(market, cfg) -> None:
    """Build the splits once before any run exists: too few days is one sentence, not a failed run."""
    from cryptolstm.splits import make_splits

    make_splits(market.frame, cfg)


def ensure_data(data_dir: str) -> None:
    """Fetch prices into ``data_dir`` first if it holds none (and fetching is not switched off
    with CRYPTOLSTM_OFFLINE=1); a network failure is one sentence saying how to supply data."""
    from cryptolstm.data import HOW_TO_SUPPLY, snapshots
    from dataclasses import replace

    from cryptolstm.data import fetch as fetching

    if snapshots.has_data(data_dir) or os.environ.get("CRYPTOLSTM_OFFLINE", "") not in ("", "0"):
        return
    logging.getLogger(__name__).info("no price data in %s: fetching it first", data_dir)
    try:
        report = fetching.fetch(data_dir, retry=replace(fetching.DEFAULT_RETRY, attempts=2))
    except fetching.NetworkUnavailable as exc:
        raise CryptoLstmError(f"there is no price data in {data_dir} and fetching it failed ({exc}); "
                              f"{HOW_TO_SUPPLY}") from None
    logging.getLogger(__name__).info("fetched snapshot %s", report.snapshot.id)


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

        ensure_data(cfg.data_dir)
        market = load_market(cfg.data_dir, cfg.merge_date, cfg.end_date, cfg.fill_gaps)
        _check_splits(market, cfg)
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


def _number(name: str, value: str | None, kind=int):
    """Parse an option given as text ("" = not given) or stop with one sentence."""
    if value in (None, ""):
        return None
    try:
        number = kind(value)
        if kind is int and str(number) != str(value).strip():
            raise ValueError
        return number
    except ValueError:
        raise CryptoLstmError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}.") from None


def _or(value, default):
    """``value`` unless it was not given (None); 0 stays 0 and is then refused by validation."""
    return default if value is None else value


def _flag(name: str, value: str | None, default: bool) -> bool:
    if value in (None, ""):
        return default
    if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
        raise CryptoLstmError(f"{name} must be true or false, got {value!r}.")
    return value.lower() in {"true", "1", "yes"}


Text = Optional[str]


@app.command("search")
def search_command(
    coin: Annotated[Text, typer.Option(help="Coin: BTC or ETH.")] = None,
    engine: Annotated[str, typer.Option(help="optuna or keras-tuner.")] = "optuna",
    space: Annotated[str, typer.Option(help="Search space file (YAML).")] = DEFAULT_SPACE,
    n_trials: Annotated[Text, typer.Option(help="Finished trials the study should hold (default 20).")] = None,
    timeout: Annotated[Text, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    study_name: Annotated[Text, typer.Option(help="Study name (default <coin>-<engine>-<space>).")] = None,
    storage: Annotated[Text, typer.Option(help="Optuna storage URL (default sqlite:///optuna.db).")] = None,
    seed: Annotated[Text, typer.Option(help="Seed of the sampler and of every trial's model.")] = None,
    data_dir: Annotated[Text, typer.Option(help="Price directory (env CRYPTOLSTM_DATA_DIR, else data/).")] = None,
    protocol: Annotated[Text, typer.Option(help="honest (default) or seed.")] = None,
    merge_date: Annotated[Text, typer.Option(help="First day of the data (YYYY-MM-DD).")] = None,
    end_date: Annotated[Text, typer.Option(help="Last day of the data (YYYY-MM-DD).")] = None,
    max_epochs: Annotated[Text, typer.Option(help="Cap on epochs per trial.")] = None,
    algorithm: Annotated[Text, typer.Option(help="optuna: tpe, random, qmc; keras-tuner: hyperband, bayesian.")] = None,
    prune: Annotated[Text, typer.Option(help="Prune unpromising Optuna trials (true/false, default true).")] = None,
    tuner_dir: Annotated[Text, typer.Option(help="keras-tuner state directory (default keras_tuner).")] = None,
    overwrite: Annotated[Text, typer.Option(help="keras-tuner: discard an existing search of this name.")] = None,
    experiment_name: Annotated[Text, typer.Option(help="MLflow experiment (default cryptolstm-<coin>).")] = None,
    register: Annotated[Text, typer.Option(help="Register the chosen model afterwards (true/false, default true).")] = None,
    n_workers: Annotated[Text, typer.Option(help="Worker processes on this machine (default 1; >1 needs a journal: or postgresql:// storage).")] = None,
    heartbeat: Annotated[Text, typer.Option(help="Seconds between trial heartbeats on an RDB storage (default 30 for postgresql://, else off).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or info messages.")] = False,
) -> None:
    """Search the space with Optuna or keras-tuner; every trial a child run of the study's run.

    Several workers (processes or machines) can share one study: give them the same
    --study-name and a --storage they all reach (postgresql://...), see docs/distributed.md.
    """
    given = {k: v for k, v in locals().items() if v not in (None, "") and k != "quiet"}
    _setup(quiet)
    try:
        from cryptolstm.data import load_market
        from cryptolstm.search.space import load_space
        from cryptolstm.search.study import SearchOptions, run_search

        overrides = {"coin": coin, "protocol": protocol, "data_dir": data_dir, "merge_date": merge_date,
                     "end_date": end_date, "seed": _number("seed", seed)}
        space_spec = load_space(find_experiment(space), **resolve_data_dir({k: v for k, v in overrides.items() if v not in (None, "")}))
        workers = _or(_number("n_workers", n_workers), 1)
        default_storage = "sqlite:///optuna.db" if workers == 1 else "journal:optuna.journal"
        storage = storage or default_storage
        beat = _number("heartbeat", heartbeat)
        if beat is None and storage.startswith("postgresql"):
            beat = 30
        argv = [sys.executable, "-m", "cryptolstm", "search"]
        for key, value in {**given, "storage": storage, "n_workers": "1", "register": "false"}.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        options = SearchOptions(
            engine=engine, study_name=study_name or None, storage=storage,
            n_trials=_or(_number("n_trials", n_trials), 20), timeout=_number("timeout", timeout, float),
            seed=space_spec.base.seed, max_epochs=_number("max_epochs", max_epochs), algorithm=algorithm or None,
            prune=_flag("prune", prune, True), tuner_dir=tuner_dir or "keras_tuner",
            overwrite=_flag("overwrite", overwrite, False), experiment_name=experiment_name,
            n_workers=workers, heartbeat=beat, worker_argv=(*argv, "--quiet"),
        )
        do_register = _flag("register", register, True)
        base = space_spec.base
        ensure_data(base.data_dir)
        market = load_market(base.data_dir, base.merge_date, base.end_date, base.fill_gaps)
        for dim in space_spec.dimensions:  # the longest window the space allows must still fit
            if dim.name == "window_len":
                _check_splits(market, base.replace(window_len=int(dim.high if dim.high else max(dim.choices))))
        _check_splits(market, base)
    except CryptoLstmError as exc:
        _fail(str(exc))
    from cryptolstm import tracking

    uri = tracking.use_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
    try:
        result = run_search(space_spec, market, options, progress=not quiet)
    except CryptoLstmError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted: the study run was ended KILLED; run the same command to resume.", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(f"study {result.study_name}: best {space_spec.objective} with {result.best_values}")
    if result.best is None:
        typer.echo(f"this worker's trials are done; the last worker out re-trains the chosen config "
                   f"(parent run {result.parent_run_id}).")
        return
    typer.echo(summary(result.parent_run_id, uri, result.best))
    if do_register:
        from mlflow import MlflowClient

        from cryptolstm import registry

        typer.echo(_registered(registry.register(MlflowClient().get_run(result.parent_run_id), space_spec.base.coin)))


def _registered(reg) -> str:
    verdict = "beats" if reg.beats_persistence else "does not beat"
    alias = "now @champion" if reg.promoted else "not champion"
    return (f"registered {reg.name} version {reg.version} ({alias}: {reg.reason}); "
            f"it {verdict} persistence (MAE ratio {reg.ratio:.4f}).")


@app.command("register")
def register_command(
    coin: Annotated[str, typer.Option(help="Coin: BTC or ETH.")] = "BTC",
    run_id: Annotated[Text, typer.Option(help="Register this run's model.")] = None,
    study_name: Annotated[Text, typer.Option(help="Register the best run of this study.")] = None,
    experiment_name: Annotated[Text, typer.Option(help="Register the best run of this MLflow experiment.")] = None,
    force: Annotated[Text, typer.Option(help="Make it champion even if it is not better (true/false).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No info messages.")] = False,
) -> None:
    """Register the best run (by validation MAE ratio) as a new version; promote it to @champion if better."""
    _setup(quiet)
    from mlflow import MlflowClient

    from cryptolstm import registry, tracking

    tracking.use_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
    try:
        registry.model_name(coin)
        if run_id:
            run = MlflowClient().get_run(run_id)
        else:
            run = registry.best_run(coin, experiment_name or None, study_name or None)
        reg = registry.register(run, coin, force=_flag("force", force, False))
    except CryptoLstmError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - an unknown run id and the like: one sentence
        _fail(f"cannot register a {coin.upper()} model: {str(exc).splitlines()[0]}")
    typer.echo(_registered(reg))


@app.command("predict")
def predict_command(
    coin: Annotated[str, typer.Option(help="Coin: BTC or ETH.")] = "BTC",
    model_uri: Annotated[Text, typer.Option(help="Model to use (default models:/cryptolstm-<coin>@champion).")] = None,
    data_dir: Annotated[Text, typer.Option(help="Price directory (env CRYPTOLSTM_DATA_DIR, else data/).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No info messages.")] = False,
) -> None:
    """Forecast the close for the day after the last day in the data directory."""
    _setup(quiet)
    from cryptolstm import registry, tracking
    from cryptolstm.data import load_market
    from cryptolstm.forecaster import example_rows

    tracking.use_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
    label = model_uri or f"the {coin.upper()} champion"
    try:
        registry.model_name(coin)
        directory = _data_dir(data_dir)
        market = load_market(directory, "2000-01-01")
        model, label = registry.load_champion(coin, model_uri or None)
        out = model.predict(example_rows(market.frame, 60))
    except CryptoLstmError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a model logged before the forecaster existed
        _fail(f"{label} could not forecast: {str(exc).splitlines()[0][:300]}")
    row = out.iloc[0]
    typer.echo(f"{row['coin']} close on {row['date']}: {row['forecast_close']:,.2f} USD "
               f"(last close {row['last_close']:,.2f}, {row['forecast_return']:+.2%}); model {label}")


@app.command("backtest")
def backtest_command(
    config: Annotated[str, typer.Option(help="Experiment file, run id, runs:/ID or models:/NAME@ALIAS to test.")] = DEFAULT_EXPERIMENT,
    coin: Annotated[Text, typer.Option(help="Coin: BTC or ETH (default: the config's).")] = None,
    start: Annotated[str, typer.Option(help="First test day (YYYY-MM-DD).")] = "2019-01-01",
    end: Annotated[str, typer.Option(help="Last test day (YYYY-MM-DD).")] = "2023-12-31",
    fold_months: Annotated[Text, typer.Option(help="Months per test fold (default 3).")] = None,
    seeds: Annotated[Text, typer.Option(help="Seeds per fold: the config's seed and the next ones (default 3).")] = None,
    max_epochs: Annotated[Text, typer.Option(help="Cap on each fit's epochs (default: the config's).")] = None,
    workers: Annotated[Text, typer.Option(help="Processes fitting folds in parallel (default 1).")] = None,
    arima: Annotated[Text, typer.Option(help="Include the ARIMA baseline (true/false, default true).")] = None,
    ma_window: Annotated[Text, typer.Option(help="Closes averaged by the moving-average baseline (default 7).")] = None,
    data_dir: Annotated[Text, typer.Option(help="Price directory (env CRYPTOLSTM_DATA_DIR, else the config's).")] = None,
    experiment_name: Annotated[Text, typer.Option(help="MLflow experiment (default cryptolstm-<coin>).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or info messages.")] = False,
) -> None:
    """Walk-forward backtest: retrain per fold, several seeds, beside persistence, drift, MA and ARIMA."""
    _setup(quiet)
    from cryptolstm import tracking

    uri = tracking.use_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
    try:
        from cryptolstm.backtest.runner import BacktestOptions
        from cryptolstm.backtest.source import resolve
        from cryptolstm.data import load_market

        options = BacktestOptions(
            start=start or "2019-01-01", end=end or "2023-12-31",
            fold_months=_or(_number("fold_months", fold_months), 3), seeds=_or(_number("seeds", seeds), 3),
            max_epochs=_number("max_epochs", max_epochs), workers=_or(_number("workers", workers), 1),
            ma_window=_or(_number("ma_window", ma_window), 7), arima=_flag("arima", arima, True),
        )
        overrides = resolve_data_dir({k: v for k, v in {"coin": coin, "data_dir": data_dir}.items() if v})
        cfg, source_tags = resolve(find_experiment(config or DEFAULT_EXPERIMENT), overrides)
        ensure_data(cfg.data_dir)
        market = load_market(cfg.data_dir, cfg.merge_date, None, cfg.fill_gaps)
        from cryptolstm.backtest.runner import backtest_config, plan

        plan(backtest_config(cfg, options), market, options)
    except CryptoLstmError as exc:
        _fail(str(exc))
    from cryptolstm.backtest.tracked import tracked_backtest

    try:
        run_id, _, _, markdown = tracked_backtest(cfg, market, options, source_tags, experiment_name, progress=not quiet)
    except CryptoLstmError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted: the backtest run was ended KILLED.", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(f"backtest run {run_id} ({uri})")
    typer.echo(markdown)


@app.command("report")
def report_command(
    experiment: Annotated[str, typer.Option("--experiment", help="MLflow experiment name, e.g. cryptolstm-btc.")],
    output: Annotated[Text, typer.Option(help="Write the Markdown here (default: print it).")] = None,
    top: Annotated[Text, typer.Option(help="How many configurations to list (default 10).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No info messages.")] = False,
) -> None:
    """A Markdown summary of an experiment: best configurations, their ratio to persistence, backtests."""
    _setup(quiet)
    from cryptolstm import tracking
    from cryptolstm.report import experiment_report

    uri = tracking.use_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
    try:
        text = experiment_report(experiment, top=_or(_number("top", top), 10), tracking_uri=uri)
        if output:
            Path(output).write_text(text)
    except CryptoLstmError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror}.")
    typer.echo(f"report written to {output}" if output else text)


def _data_dir(value: str | None) -> str:
    return value or os.environ.get("CRYPTOLSTM_DATA_DIR") or "data"


@app.command("fetch")
def fetch_command(
    coins: Annotated[str, typer.Option(help="Comma-separated coins to fetch.")] = "BTC,ETH",
    data_dir: Annotated[Text, typer.Option(help="Snapshot store (env CRYPTOLSTM_DATA_DIR, else data/).")] = None,
    full: Annotated[Text, typer.Option(help="Fetch the whole history into a fresh snapshot (true/false).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No info messages.")] = False,
) -> None:
    """Download daily USD candles (Coinbase Exchange, via ccxt) into a new immutable snapshot."""
    _setup(quiet)
    from cryptolstm.data.fetch import SOURCE, fetch

    directory = _data_dir(data_dir)
    try:
        wanted = tuple(c.strip().upper() for c in (coins or "BTC,ETH").split(",") if c.strip())
        report = fetch(directory, wanted, full=_flag("full", full, False))
    except CryptoLstmError as exc:
        _fail(str(exc))
    if report.snapshot is None:
        typer.echo(f"{directory} is up to date: no complete UTC day after the last stored one ({SOURCE}).")
        return
    snap = report.snapshot
    typer.echo(f"snapshot {snap.id} is now current in {directory}:")
    for coin, info in sorted(snap.coins.items()):
        added = f", {report.new_days[coin]} new day(s) ({report.mode[coin]})" if coin in report.new_days else ""
        typer.echo(f"  {coin}: {info.first_date}..{info.last_date}, {info.rows} rows, sha256 {info.sha256[:16]}{added}")


data_app = typer.Typer(help="Import, list and verify price data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("import")
def import_command(
    file: Annotated[str, typer.Argument(help="A daily price CSV (Yahoo, Kaggle, CoinMarketCap export...).")],
    coin: Annotated[str, typer.Option(help="Coin the file holds: BTC or ETH.")],
    data_dir: Annotated[Text, typer.Option(help="Snapshot store (env CRYPTOLSTM_DATA_DIR, else data/).")] = None,
) -> None:
    """Validate a foreign CSV and store it, in the project's format, as a new snapshot."""
    from cryptolstm.data.imports import import_csv

    directory = _data_dir(data_dir)
    try:
        snap = import_csv(file, coin.upper(), directory)
    except CryptoLstmError as exc:
        _fail(str(exc))
    info = snap.coins[coin.upper()]
    typer.echo(f"imported {file} as {info.coin}: {info.first_date}..{info.last_date}, {info.rows} rows; "
               f"snapshot {snap.id} is now current in {directory}.")


@data_app.command("list")
def list_command(
    data_dir: Annotated[Text, typer.Option(help="Snapshot store (env CRYPTOLSTM_DATA_DIR, else data/).")] = None,
) -> None:
    """The snapshots of a data directory, oldest first; * marks the current one."""
    from cryptolstm.data import snapshots

    directory = _data_dir(data_dir)
    try:
        if not Path(directory).is_dir():
            raise CryptoLstmError(f"data directory {directory} does not exist.")
        every, now = snapshots.all_snapshots(directory), snapshots.current(directory)
    except CryptoLstmError as exc:
        _fail(str(exc))
    if not every:
        typer.echo(f"{directory} has no snapshots (a plain directory of price files, or empty).")
    for snap in every:
        mark = "*" if now is not None and snap.id == now.id else " "
        coins = ", ".join(f"{c} {f.first_date}..{f.last_date} ({f.source})" for c, f in sorted(snap.coins.items()))
        typer.echo(f"{mark} {snap.id}: {coins}")


@data_app.command("verify")
def verify_command(
    run: Annotated[str, typer.Option("--run", help="MLflow run id whose data to check.")],
    data_dir: Annotated[Text, typer.Option(help="Data directory (default: the one the run read).")] = None,
) -> None:
    """Exit 0 if the data on disk is byte-identical to what the run used, else 1 with the difference."""
    from mlflow import MlflowClient

    from cryptolstm import tracking
    from cryptolstm.data.verify import verify

    tracking.use_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
    try:
        try:
            found = MlflowClient().get_run(run)
        except Exception as exc:  # noqa: BLE001 - an unknown run id
            raise CryptoLstmError(f"cannot read run {run}: {str(exc).splitlines()[0][:200]}") from None
        directory = data_dir or found.data.tags.get("data.dir") or found.data.params.get("config.data_dir")
        if not directory:
            raise CryptoLstmError(f"run {run} does not say which data directory it read; pass --data-dir.")
        verdict = verify(run, found.data.tags, directory)
    except CryptoLstmError as exc:
        _fail(str(exc))
    typer.echo(verdict.message)
    raise typer.Exit(code=0 if verdict.same else 1)


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
