"""`cryptolstm evaluate`: a registered model scored on the days after its training, in MLflow.

The model is loaded as a user loads it (the pyfunc, `tracking.models.load_model`) and forecasts
every window at once (`tracking.models.every_day`). Which days it trained and validated on is read from its training run's
tags (``split.val.last``: the last day training or validation used; ``data.last_date``: the
last day of its data). The evaluation is one run in the coin's experiment, linked to the
model version (tags, a link in its description). When every day scored comes after the model's
data (new days, not its test days again), the version gets ``live.*`` tags.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from cryptolstm import plots
from cryptolstm.data import Market, load_market
from cryptolstm.data.prepare import ensure_data
from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.live import LiveResult, next_day, score_live
from cryptolstm.models.interval_baselines import interval_baselines
from cryptolstm.tracking.commands import command_run, finish
from cryptolstm.tracking.describe import NOTE, live_text, version_text
from cryptolstm.tracking.models import ModelRef, config_of, every_day, load_model, model_ref
from cryptolstm.tracking.runs import coin_experiment, ui_url

log = logging.getLogger(__name__)

BASELINES = ("garch", "empirical")  # the interval baselines beside a model with intervals


def live_days(ref: ModelRef, market: Market, since: str | None, until: str | None,
              data_dir: str) -> tuple[str, str]:
    """The days to score (first, last): from ``since`` (default: the day after the model's data)
    to ``until`` (default: the data's last day). One sentence for a day the model trained or
    validated on, and when no new day is left."""
    used, data_last = ref.trained_until()
    first, last = since or next_day(data_last), until or market.last_date
    if first <= used:
        raise ConfigError(f"{first} is not a new day for {ref.label}: its training and validation used the days up "
                          f"to {used}; score days from {next_day(used)} on.")
    if first > market.last_date:
        raise DataError(f"no new day to score: the data in {data_dir} ends on {market.last_date} and "
                        f"{ref.label} {'is scored from ' + first if since else 'trained on data up to ' + data_last}; "
                        f"fetch newer prices (cryptolstm fetch --data-dir {data_dir}).")
    if first > last:
        raise ConfigError(f"no day to score between {first} and {last}.")
    return first, min(last, market.last_date)


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` did: the model, the run that holds the evaluation, and its result."""

    ref: ModelRef
    run_id: str
    result: LiveResult

    @property
    def new_days(self) -> bool:
        """Whether every day scored came after the model's data (and so the version was tagged)."""
        return self.ref.is_new(self.result.first)


def evaluate(model_uri: str, data_dir: str, since: str | None = None, until: str | None = None,
             launched: str | None = None, fetch_missing: bool = True) -> Evaluation:
    """Score ``model_uri`` on new days of ``data_dir`` and log the evaluation (module docstring).
    Everything that can be refused is checked before the run exists."""
    ref = model_ref(model_uri)
    model = load_model(ref)
    cfg = config_of(model)
    ensure_data(data_dir, fetch_missing)
    market = load_market(data_dir, cfg.merge_date, None, cfg.fill_gaps)
    first, last = live_days(ref, market, since, until, data_dir)
    baselines = {name: make for name, make in interval_baselines().items() if name in BASELINES}
    started = time.perf_counter()
    result = score_live(every_day(model), cfg, market.frame, first, last, baselines)
    log.info("scored %d day(s) in %.2f s", result.n_days, time.perf_counter() - started)
    run_id = log_evaluation(ref, cfg, result, market, data_dir, launched)
    return Evaluation(ref, run_id, result)


def log_evaluation(ref: ModelRef, cfg: RunConfig, result: LiveResult, market: Market, data_dir: str,
                   launched: str | None) -> str:
    """One run in the coin's experiment: metrics, per-day CSV, figure, links; then the version's tags."""
    client = MlflowClient()
    run_id = command_run(launched, coin_experiment(cfg.coin))
    try:
        metrics = {k: v for k, v in result.metrics.items() if pd.notna(v)} | {"live/days": result.n_days}
        now = int(time.time() * 1000)
        # linked to the logged model too (MLflow 3): its page lists them beside its training metrics
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0, model_id=ref.model_id) for k, v in metrics.items()],
                         params=_params(ref, result, data_dir),
                         tags=[RunTag(k, v) for k, v in _tags(ref, cfg, result, market, run_id).items()])
        client.log_text(run_id, result.days.to_csv(index=False), "live/forecasts.csv")
        client.log_figure(run_id, plots.live_gap(result.days, cfg.coin, ref.label), "plots/live_cumulative_gap.png")
        if ref.version and ref.is_new(result.first):  # new days only: not its test days again
            _tag_version(client, ref, result, run_id)
    except BaseException as exc:
        finish(run_id, launched, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
               killed=isinstance(exc, KeyboardInterrupt))
        raise
    finish(run_id, launched)
    return run_id


def _params(ref: ModelRef, result: LiveResult, data_dir: str) -> list[Param]:
    """What was evaluated, as params ``evaluate.*`` (beside those ``mlflow run`` logs, unprefixed)."""
    values = {"model": ref.uri, "since": result.first, "until": result.last,
              "data_dir": str(Path(data_dir).resolve())}
    return [Param(f"evaluate.{k}", v) for k, v in values.items()]


def _tags(ref: ModelRef, cfg: RunConfig, result: LiveResult, market: Market, run_id: str) -> dict[str, str]:
    """The run's tags: what was scored, on which days and data, and a description with links."""
    m = result.metrics
    source = ref.run
    version = f"v{ref.version}" if ref.version else source.info.run_id[:8]
    links = f"[its training run]({ui_url(source.info.experiment_id, source.info.run_id, '')})"
    if ref.version:
        links += f", [the model version](#/models/{ref.name}/versions/{ref.version})"
    days = "new days" if ref.is_new(result.first) else "days (not new: from its test days)"
    note = (f"{ref.label} ({cfg.coin}, {cfg.protocol} protocol) scored on {result.n_days} {days}, "
            f"{result.first}..{result.last}, one day ahead, without refitting: MAE {m['live/mae']:,.2f} USD "
            f"against persistence's {m['live/persistence_mae']:,.2f} (ratio {m['live/mae_ratio']:.4f}, "
            f"DM p {m['live/dm_p']:.3g}). Links: {links}. Per-day forecasts: live/forecasts.csv.")
    return {"cryptolstm.entry": "evaluate", "coin": cfg.coin, "protocol": cfg.protocol,
            "mlflow.runName": f"evaluate-{cfg.coin.lower()}-{version}", NOTE: note,
            "evaluated.model_uri": ref.uri, "evaluated.model": ref.name or "", "evaluated.version": ref.version or "",
            "evaluated.source_run": source.info.run_id, "live.first_date": result.first,
            "live.last_date": result.last, "live.days": str(result.n_days), "data.dir": str(Path(market.files[cfg.coin][0]).parent),
            "data.last_date": market.last_date,
            **{f"data.sha256.{coin.lower()}": digest for coin, (_, digest) in market.files.items()}}


def _tag_version(client: MlflowClient, ref: ModelRef, result: LiveResult, run_id: str) -> None:
    """The version's ``live.*`` tags (the days scored, the MAE ratio, the DM p, the run) and its
    description, which ends with the same in a sentence."""
    m = result.metrics
    values = {"live.first_date": result.first, "live.last_date": result.last, "live.days": str(result.n_days),
              "live.mae_ratio": f"{m['live/mae_ratio']:.6f}", "live.dm_p": f"{m['live/dm_p']:.6g}",
              "live.run": run_id}
    for key, value in values.items():
        client.set_model_version_tag(ref.name, ref.version, key, value)
    live = live_text(result.first, result.last, result.n_days, m["live/mae_ratio"], m["live/dm_p"], run_id)
    client.update_model_version(ref.name, ref.version, description=f"{version_text(ref.run)} {live}")
