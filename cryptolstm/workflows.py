"""One library call per command: options in, results out; no argv, no environment.

Each function takes a workflow's options (`cryptolstm.options`) and the `Environment`
the command line read, prepares the data, runs the workflow with its tracking
attached, and returns what the command prints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptolstm.config import RunConfig, load_config
from cryptolstm.data.prepare import prepare_market
from cryptolstm.options import (BacktestOptions, EvaluateOptions, FetchOptions, PredictOptions, RefitOptions,
                                RegisterOptions, ReportOptions, SearchOptions, TrainOptions)


@dataclass(frozen=True)
class Environment:
    """What the command line read from the environment and its own flags, handed down as values.

    ``launched``: the run ``mlflow run`` made for this command; ``data_dir``: the default price
    directory (``CRYPTOLSTM_DATA_DIR``); ``fetch_missing``: fetch prices into an empty directory.
    """

    tracking_uri: str | None = None
    launched: str | None = None
    data_dir: str | None = None
    fetch_missing: bool = True
    progress: bool = True

    def data_dir_for(self, given: str | None) -> str:
        """``given``, else the environment's price directory, else the config's default (``data``)."""
        return given or self.data_dir or RunConfig.__dataclass_fields__["data_dir"].default


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


@contextlib.contextmanager
def _bar(total: int | None, desc: str, unit: str, env: Environment) -> Iterator[Callable[[int], None] | None]:
    """``advance(to)``, which moves a progress bar of ``total`` steps (None: not known) to step ``to``,
    and closes it afterwards, whatever happens; None without progress."""
    if not env.progress:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit) as bar:
        yield lambda to: bar.update(to - bar.n)


def train(options: TrainOptions, overrides: dict[str, Any], env: Environment):
    """`cryptolstm train`: (run id, tracking URI, `TrainResult`)."""
    from cryptolstm import tracking

    experiment = find_file(options.experiment)
    cfg = load_config(experiment, **_with_data_dir(overrides, env))
    market = prepare_market(cfg, env.fetch_missing)
    uri = tracking.use_tracking_uri(env.tracking_uri)
    with _bar(cfg.epochs, f"{cfg.coin} epochs", "epoch", env) as advance:
        hooks = [lambda epoch, logs: advance(epoch + 1)] if advance else []
        run_id, result = tracking.tracked_train(cfg, market, experiment, options.experiment_name, hooks, env.launched)
    return run_id, uri, result


def search(options: SearchOptions, env: Environment):
    """`cryptolstm search`: (`SearchResult`, tracking URI, the `Registration` or None)."""
    from cryptolstm import registry, tracking
    from cryptolstm.search.space import load_space
    from cryptolstm.search.storage import is_parallel_safe
    from cryptolstm.search.study import run_search
    from cryptolstm.tracking.search import MlflowSearchTracker

    space = load_space(find_file(options.space), **_with_data_dir(options.base_overrides(), env))
    base = space.base
    market = prepare_market(base, env.fetch_missing, (base, *space.extreme_configs()))
    uri = tracking.use_tracking_uri(env.tracking_uri)
    experiment = options.experiment_name or tracking.runs.default_experiment_name(base)
    tracker = MlflowSearchTracker(market, base, experiment, env.launched,
                                  single_process=options.n_workers == 1 and not is_parallel_safe(options.storage_url))
    result = run_search(space, market, options, tracker, progress=env.progress)
    registered = None
    if result.best is not None and options.register:
        registered = registry.register_run(result.parent_run_id, base.coin)
    return result, uri, registered


def backtest(options: BacktestOptions, env: Environment):
    """`cryptolstm backtest`: (run id, tracking URI, Markdown summary)."""
    from cryptolstm import tracking
    from cryptolstm.backtest.runner import backtest_config, forecasters, plan
    from cryptolstm.tracking.backtest import tracked_backtest
    from cryptolstm.tracking.source import resolve

    uri = tracking.use_tracking_uri(env.tracking_uri)
    cfg, source_tags = resolve(find_file(options.config), _with_data_dir(options.overrides(), env))
    market = prepare_market(cfg, env.fetch_missing, checks=(), every_day=True)
    folds = plan(backtest_config(cfg, options), market, options)  # every fold checked before the run exists
    fits = len(folds) * len(forecasters(cfg, options))
    with _bar(fits, f"{cfg.coin} backtest fits", "fit", env) as advance:
        done = iter(range(1, fits + 1))
        on_job = (lambda: advance(next(done))) if advance else None
        run_id, _, _, markdown = tracked_backtest(cfg, market, options, source_tags, on_job, env.launched, folds)
    return run_id, uri, markdown


def register(options: RegisterOptions, env: Environment):
    """`cryptolstm register`: the `Registration`."""
    from cryptolstm import registry, tracking

    tracking.use_tracking_uri(env.tracking_uri)
    return registry.register_best(options)


def predict(options: PredictOptions, env: Environment):
    """`cryptolstm predict`: (one-row forecast frame, the model's label)."""
    from cryptolstm import registry, tracking
    from cryptolstm.data import load_market
    from cryptolstm.forecaster import example_rows

    tracking.use_tracking_uri(env.tracking_uri)
    registry.model_name(options.coin)
    market = load_market(env.data_dir_for(options.data_dir), "2000-01-01")
    return registry.forecast_with(options.coin, options.model_uri, example_rows(market.frame, 60))


def evaluate(options: EvaluateOptions, env: Environment):
    """`cryptolstm evaluate`: (the `tracking.live.Evaluation`, tracking URI)."""
    from cryptolstm import tracking
    from cryptolstm.tracking.live import evaluate as evaluate_model

    uri = tracking.use_tracking_uri(env.tracking_uri)
    return evaluate_model(options.model, env.data_dir_for(options.data_dir), options.since, options.until,
                          env.launched, env.fetch_missing), uri


def refit(options: RefitOptions, env: Environment):
    """`cryptolstm refit`: (the `tracking.refit.Refit`, tracking URI)."""
    from cryptolstm import tracking
    from cryptolstm.tracking.refit import refit as refit_model

    uri = tracking.use_tracking_uri(env.tracking_uri)
    with _bar(None, "refit epochs", "epoch", env) as advance:
        hooks = [lambda epoch, logs: advance(epoch + 1)] if advance else []
        done = refit_model(options.model, env.data_dir_for(options.data_dir), options.end_date, options.force,
                           env.launched, env.fetch_missing, hooks)
    return done, uri


def report(options: ReportOptions, env: Environment) -> str:
    """`cryptolstm report`: the Markdown text (also written to ``options.output`` if given)."""
    from cryptolstm import tracking
    from cryptolstm.errors import CryptoLstmError
    from cryptolstm.tracking.report import experiment_report

    uri = tracking.use_tracking_uri(env.tracking_uri)
    text = experiment_report(options.experiment, top=options.top, tracking_uri=uri)
    if options.output:
        try:
            Path(options.output).write_text(text)
        except OSError as exc:
            raise CryptoLstmError(f"cannot write {options.output}: {exc.strerror}.") from None
    return text


def fetch(options: FetchOptions, env: Environment):
    """`cryptolstm fetch`: the `FetchReport`."""
    from cryptolstm.data.fetch import fetch as fetch_prices

    return fetch_prices(env.data_dir_for(options.data_dir), options.coin_list, full=options.full)


def run_summary(run_id: str, uri: str, result) -> str:
    """A few lines: where the run is, and each split's MAE beside persistence."""
    cfg = result.config
    units = {"usd": "USD", "return": "normalised units"}[cfg.rules.units]
    lines = [f"run {run_id} ({uri}); {cfg.coin}, protocol {cfg.protocol}, MAE in {units}:",
             f"  {'split':<6}{'model':>14}{'persistence':>14}{'ratio':>8}{'direction':>11}"]
    for split in ("val", "test"):
        if f"{split}/mae" in result.metrics:
            m = {k.split("/", 1)[1]: v for k, v in result.metrics.items() if k.startswith(split + "/")}
            lines.append(f"  {split:<6}{m['mae']:>14.6g}{m['persistence_mae']:>14.6g}"
                         f"{m['mae_ratio']:>8.3f}{m['direction_accuracy']:>10.1%}")
    lines.append(f"  ratio < 1 means the model beat persistence on those days; training ran {result.epochs_run} "
                 f"epoch(s){' (stopped early)' if result.stopped_early else ''} and kept epoch {result.best_epoch + 1}.")
    if cfg.horizon > 1:
        lines += horizon_lines(result.metrics, cfg.horizon)
    if cfg.head != "point":
        lines += interval_lines(result.metrics)
    return "\n".join(lines)


def horizon_lines(metrics: dict[str, float], horizon: int) -> list[str]:
    """The MAE ratio to persistence of each horizon k = 1..H, per evaluated split."""
    lines = ["  MAE ratio to persistence by horizon (days ahead):",
             f"  {'split':<6}" + "".join(f"{f'h{h}':>7}" for h in range(1, horizon + 1))]
    for split in ("val", "test"):
        if f"{split}/h1/mae_ratio" in metrics:
            lines.append(f"  {split:<6}" + "".join(f"{metrics[f'{split}/h{h}/mae_ratio']:>7.3f}"
                                                  for h in range(1, horizon + 1)))
    return lines


def interval_lines(metrics: dict[str, float]) -> list[str]:
    """The intervals of a run with a distribution head: coverage (calibrated, raw), CRPS, and
    the CRPS ratio to GARCH and to the empirical baseline with their DM p-values, per split."""
    lines = [f"  intervals (calibrated on val): {'split':<6}{'cover 80':>9}{'cover 95':>9}{'raw 80/95':>11}"
             f"{'CRPS ratio GARCH (p)':>22}{'empirical (p)':>16}"]
    for split in ("val", "test"):
        if f"{split}/coverage_80" in metrics:
            m = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(split + "/")}
            lines.append(f"  {'':<30}{split:<6}{m['coverage_80']:>9.2f}{m['coverage_95']:>9.2f}"
                         f"{m['raw_coverage_80']:>6.2f}/{m['raw_coverage_95']:.2f}"
                         f"{m['crps_ratio_garch']:>14.3f} ({m['crps_dm_p_garch']:.2g})"
                         f"{m['crps_ratio_empirical']:>9.3f} ({m['crps_dm_p_empirical']:.2g})")
    lines.append("  a CRPS ratio < 1 means the LSTM's forecast distribution beat that baseline's; coverage on the "
                 "val days is in-sample (they calibrated it).")
    return lines


def forecast_line(row, label: str) -> str:
    """One line of `predict`: the forecast close, the last close, the move and, when the model has
    intervals, its 80 % and 95 % intervals (USD)."""
    text = (f"{row['coin']} close on {row['date']}: {row['forecast_close']:,.2f} USD "
            f"(last close {row['last_close']:,.2f}, {row['forecast_return']:+.2%})")
    if "lower_80" in row:
        text += (f"; 80 % interval {row['lower_80']:,.2f} to {row['upper_80']:,.2f}, "
                 f"95 % {row['lower_95']:,.2f} to {row['upper_95']:,.2f}")
    return f"{text}; model {label}"


def forecast_text(out, label: str) -> str:
    """What `predict` prints: `forecast_line` for a next-day model, else a small table of the H
    forecast days (date, horizon, close, move from the last close and the intervals if any)."""
    if len(out) == 1:
        return forecast_line(out.iloc[0], label)
    first = out.iloc[0]
    intervals = "lower_80" in out
    lines = [f"{first['coin']} from the last close {first['last_close']:,.2f} USD, {len(out)} days ahead; model {label}:",
             f"  {'date':<12}{'h':>3}{'close (USD)':>14}{'move':>9}"
             + (f"{'80 % interval (USD)':>28}{'95 % interval (USD)':>28}" if intervals else "")]
    for _, row in out.iterrows():
        line = f"  {row['date']:<12}{row['horizon']:>3}{row['forecast_close']:>14,.2f}{row['forecast_return']:>+9.2%}"
        if intervals:
            for c in (80, 95):
                span = f"{row['lower_' + str(c)]:,.2f} to {row['upper_' + str(c)]:,.2f}"
                line += f"{span:>28}"
        lines.append(line)
    return "\n".join(lines)


def registered_line(reg) -> str:
    """One line: which version was registered, whether it is champion, and against persistence."""
    verdict = "beats" if reg.beats_persistence else "does not beat"
    alias = "now @champion" if reg.promoted else "not champion"
    if not reg.added:
        return f"{reg.name} version {reg.version} ({alias}): {reg.reason}; it {verdict} persistence (MAE ratio {reg.ratio:.4f})."
    return (f"registered {reg.name} version {reg.version} ({alias}: {reg.reason}); "
            f"it {verdict} persistence (MAE ratio {reg.ratio:.4f}).")


def live_summary(evaluation) -> str:
    """What `evaluate` prints: the days scored, the model beside persistence on them (USD), the
    intervals when the model has them, and where the evaluation is."""
    result, ref = evaluation.result, evaluation.ref
    m = {k.removeprefix("live/"): v for k, v in result.metrics.items()}
    days = "new day(s)" if evaluation.new_days else "day(s), its test days (not new)"
    lines = [f"{ref.label} on {result.n_days} {days}, {result.first}..{result.last}, one day ahead "
             f"(no refit), USD:",
             f"  {'':<13}{'MAE':>12}{'RMSE':>12}",
             f"  {'model':<13}{m['mae']:>12,.2f}{m['rmse']:>12,.2f}",
             f"  {'persistence':<13}{m['persistence_mae']:>12,.2f}{m['persistence_rmse']:>12,.2f}",
             f"  MAE ratio {m['mae_ratio']:.4f} ({'beats' if m['mae_ratio'] < 1 else 'does not beat'} persistence), "
             f"Diebold-Mariano p {m['dm_p']:.3g}; direction {m['direction_accuracy']:.1%} "
             f"(95 % interval {m['direction_low']:.1%}..{m['direction_high']:.1%}, p {m['direction_p']:.3g} against "
             f"a coin flip)"]
    horizons = sorted(int(k.split("/")[0][1:]) for k in m if k.startswith("h") and k.endswith("/mae_ratio"))
    if horizons:  # a model of several days, scored per horizon on the windows whose days all fall in range
        lines.append("  MAE ratio by horizon: " + ", ".join(f"h{h} {m[f'h{h}/mae_ratio']:.3f}" for h in horizons))
    if "coverage_80" in m:
        lines.append(f"  intervals: coverage {m['coverage_80']:.2f} (80 %) / {m['coverage_95']:.2f} (95 %); CRPS "
                     f"ratio to GARCH {m['crps_ratio_garch']:.3f} (p {m['crps_dm_p_garch']:.2g}), to the empirical "
                     f"quantiles {m['crps_ratio_empirical']:.3f} (p {m['crps_dm_p_empirical']:.2g})")
    if ref.version and evaluation.new_days:
        lines.append(f"  tagged {ref.name} version {ref.version}: live.mae_ratio {m['mae_ratio']:.4f}, "
                     f"live.days {result.n_days}, live.first_date {result.first}, live.last_date {result.last}")
    return "\n".join(lines)
