"""One library call per command: its options (`cryptolstm.options`) and the `Environment` in, what the
command prints out; no argv, no environment."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptolstm.config import RunConfig, load_config
from cryptolstm.data.prepare import prepare_market
from cryptolstm.errors import ConfigError
from cryptolstm.progress import CountBar, EpochBar
from cryptolstm.options import (BacktestOptions, EvaluateOptions, FetchOptions, PredictOptions, RefitOptions,
                                RegisterOptions, ReportOptions, SearchOptions, ServeOptions, TrainOptions)


@dataclass(frozen=True)
class Environment:
    """What the command line read from the environment and its flags: ``launched``, the run ``mlflow run``
    made; ``data_dir``, ``CRYPTOLSTM_DATA_DIR``; ``fetch_missing``: fetch prices into an empty directory."""

    tracking_uri: str | None = None
    launched: str | None = None
    data_dir: str | None = None
    fetch_missing: bool = True
    progress: bool = True
    user: str = ""  # who runs the command (recorded when a seal is opened)

    def data_dir_for(self, given: str | None) -> str:
        """``given``, else the environment's price directory, else the config's default (``data``)."""
        return given or self.data_dir or RunConfig.__dataclass_fields__["data_dir"].default


def current_user() -> str:
    """Who runs the command (recorded when a seal is opened)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "unknown"


def where(run_id: str, uri: str) -> str:
    """The run's experiment and its page in the UI (`cryptolstm.tracking.runs.where`)."""
    from cryptolstm.tracking.runs import where as said

    return said(run_id, uri)


def find_file(path: str) -> str:
    """``path`` as given, or, if relative and absent here, inside this project's checkout."""
    beside_package = Path(__file__).resolve().parents[1] / path
    here = Path(path)
    return str(beside_package) if not here.exists() and not here.is_absolute() and beside_package.exists() else path


def _with_data_dir(overrides: dict[str, Any], env: Environment) -> dict[str, Any]:
    """``--data-dir``, else the environment's, else whatever the config file says."""
    if overrides.get("data_dir") is None and env.data_dir:
        return {**overrides, "data_dir": env.data_dir}
    return overrides


def train(options: TrainOptions, overrides: dict[str, Any], env: Environment):
    """`cryptolstm train`: (run id, tracking URI, `TrainResult`, the `Registration` or None)."""
    from cryptolstm import tracking
    from cryptolstm.tracking.registry import register_run

    experiment = find_file(options.experiment)
    cfg = load_config(experiment, **_with_data_dir(overrides, env))
    market = prepare_market(cfg, env.fetch_missing)
    uri = tracking.use_tracking_uri(env.tracking_uri)
    hooks = [EpochBar(f"{cfg.coin} epochs", env.progress)]
    run_id, result = tracking.tracked_train(cfg, market, experiment, options.experiment_name, hooks, env.launched)
    return run_id, uri, result, register_run(run_id, cfg.coin, chosen=True) if options.register else None


def search(options: SearchOptions, env: Environment):
    """`cryptolstm search`: (`SearchResult`, tracking URI, the `Registration` or None)."""
    from cryptolstm import tracking
    from cryptolstm.search.space import load_space
    from cryptolstm.tracking import registry as tracked_registry
    from cryptolstm.search.storage import is_parallel_safe
    from cryptolstm.search.study import run_search
    from cryptolstm.tracking.search import MlflowSearchTracker

    space = load_space(find_file(options.space), **_with_data_dir(options.base_overrides(), env))
    base = space.base
    market = prepare_market(base, env.fetch_missing, (base, *space.extreme_configs()))
    uri = tracking.use_tracking_uri(env.tracking_uri)
    experiment = options.experiment_name or tracking.runs.coin_experiment(base.coin)
    tracker = MlflowSearchTracker(market, base, experiment, env.launched,
                                  single_process=options.n_workers == 1 and not is_parallel_safe(options.storage_url))
    result = run_search(space, market, options, tracker, progress=env.progress)
    if (result.best is not None or result.done_before) and options.register:
        return result, uri, tracked_registry.register_pick(result.parent_run_id, base.coin)
    return result, uri, None


def backtest(options: BacktestOptions, env: Environment):
    """`cryptolstm backtest`: (run id, tracking URI, Markdown summary)."""
    from cryptolstm import tracking
    from cryptolstm.backtest.cluster import check_scheduler
    from cryptolstm.backtest.runner import plan
    from cryptolstm.tracking.backtest import tracked_backtest
    from cryptolstm.tracking.source import resolve

    uri = tracking.use_tracking_uri(env.tracking_uri)
    cfg, source_tags = resolve(find_file(options.config), _with_data_dir(options.overrides(), env))
    market = prepare_market(cfg, env.fetch_missing, checks=(), to_last_day=True)
    planned = plan(cfg, market, options)  # every fold checked before the run exists
    if options.cluster:
        check_scheduler(options.cluster)  # and the cluster's address
    seeds = f"{options.seeds} seed{'s' if options.seeds > 1 else ''}"
    bar = CountBar(len(planned.folds), f"{cfg.coin} backtest, {seeds}, {options.retrain}", "fold", env.progress)
    epochs = [EpochBar("  LSTM fit", env.progress, position=1, leave=False)]
    try:
        run_id, _, _, markdown = tracked_backtest(planned, source_tags,
                                                  lambda fold: bar.advance(f"fold {fold.period.label} done"),
                                                  env.launched, epochs)
    finally:
        bar.close()
    return run_id, uri, markdown


def register(options: RegisterOptions, env: Environment):
    """`cryptolstm register`: the `Registration`."""
    from cryptolstm import tracking
    from cryptolstm.tracking.registry import register_best

    tracking.use_tracking_uri(env.tracking_uri)
    return register_best(options)


def predict(options: PredictOptions, env: Environment):
    """`cryptolstm predict`: (one-row forecast frame, the model's label)."""
    from cryptolstm import tracking
    from cryptolstm.data import load_market
    from cryptolstm.registry import model_name
    from cryptolstm.tracking.registry import forecast_with
    from cryptolstm.windowing import market_rows

    tracking.use_tracking_uri(env.tracking_uri, read_only=True)
    model_name(options.coin)
    market = load_market(env.data_dir_for(options.data_dir), "2000-01-01")
    return forecast_with(options.coin, options.model_uri, market_rows(market.frame))


def serve(options: ServeOptions, env: Environment) -> tuple[str, str]:
    """`cryptolstm serve`: (the model's pinned URI, its label), once the model loads and forecasts
    its coin: a damaged file is one sentence here, not a server's traceback later."""
    from cryptolstm import tracking
    from cryptolstm.registry import champion_uri
    from cryptolstm.tracking.registry import load, resolve

    tracking.use_tracking_uri(env.tracking_uri, read_only=True)
    info = resolve(options.model_uri or champion_uri(options.coin))
    load(info, None if options.model_uri else options.coin)
    return info.pinned_uri, info.label


def _model(options: EvaluateOptions | RefitOptions) -> str:
    """The model ``options`` name: ``--model``, else ``--coin``'s champion."""
    from cryptolstm.registry import champion_uri

    return options.model or champion_uri(options.coin)


def evaluate(options: EvaluateOptions, env: Environment):
    """`cryptolstm evaluate`: (the `cryptolstm.evaluate.Evaluation`, tracking URI)."""
    from cryptolstm import tracking
    from cryptolstm.evaluate import evaluate as evaluate_model
    from cryptolstm.tracking.registry import MlflowModels

    uri = tracking.use_tracking_uri(env.tracking_uri)
    return evaluate_model(MlflowModels(env.launched), _model(options), env.data_dir_for(options.data_dir), options.since,
                          options.until, env.fetch_missing, env.user if options.open_seal else None), uri


def refit(options: RefitOptions, env: Environment):
    """`cryptolstm refit`: (the `cryptolstm.refit.Refit`, tracking URI)."""
    from cryptolstm import tracking
    from cryptolstm.refit import refit as refit_model
    from cryptolstm.tracking.registry import MlflowModels

    uri = tracking.use_tracking_uri(env.tracking_uri)
    hooks = [EpochBar("refit epochs", env.progress)]
    return refit_model(MlflowModels(env.launched), _model(options), env.data_dir_for(options.data_dir),
                       options.end_date, options.force, env.fetch_missing, hooks, options.retrain, options.warm_epochs,
                       options.sealed_from), uri


def report(options: ReportOptions, env: Environment) -> tuple[str, str | None]:
    """`cryptolstm report`: the Markdown text and, with ``options.html``, the HTML results page;
    each also written where the options say (both places checked before the store is read)."""
    from cryptolstm import tracking
    from cryptolstm.tracking.report import experiment_report, gather

    for path in filter(None, (options.output, options.html)):
        _check_writable(path)
    uri = tracking.use_tracking_uri(env.tracking_uri, read_only=True)
    gathered = gather(options.experiment, uri)
    text = experiment_report(options.experiment, top=options.top, tracking_uri=uri, gathered=gathered)
    page = None
    if options.html:
        from cryptolstm.tracking.results_page import results_page

        page = results_page(gathered, options.top)
    for path, content in zip((options.output, options.html), (text, page)):
        if path:
            _write_whole(path, content)
    return text, page


def _check_writable(path: str) -> None:
    """A `ConfigError` in one sentence unless a file can be written at ``path``."""
    target = Path(path)
    why = ("it is a directory" if target.is_dir() else f"there is no directory {target.parent}" if not target.parent.is_dir()
           else f"the directory {target.parent} cannot be written" if not os.access(target.parent, os.W_OK) else None)
    if why:
        raise ConfigError(f"cannot write {path}: {why}.")


def _write_whole(path: str, text: str) -> None:
    """``text`` at ``path``, whole or not at all (written beside it, then moved into place)."""
    part = Path(f"{path}.part")
    try:
        part.write_text(text)
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}.") from None


def fetch(options: FetchOptions, env: Environment):
    """`cryptolstm fetch`: the `FetchReport`."""
    from cryptolstm.data.fetch import fetch as fetch_prices

    return fetch_prices(env.data_dir_for(options.data_dir), options.coin_list, full=options.full)
