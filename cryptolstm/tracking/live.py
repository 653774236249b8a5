"""`cryptolstm evaluate`: a registered model scored on the days after its training, in MLflow.

The model is loaded as a user loads it (the pyfunc, `registry.load_model`) and forecasts every
window at once (its ``every_day`` parameter; a model logged before that parameter existed is
called once per day). Which days it trained and validated on is read from its training run's
tags (``split.val.last``: the last day training or validation used; ``data.last_date``: the
last day of its data). The evaluation is one run in the coin's experiment, linked to the
model version (tags, a link in its description) and the version gets ``live.*`` tags.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from cryptolstm import plots, registry
from cryptolstm.data import Market, load_market
from cryptolstm.data.prepare import ensure_data
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.live import LiveResult, score_live
from cryptolstm.models.interval_baselines import interval_baselines
from cryptolstm.tracking.commands import command_run, finish
from cryptolstm.tracking.describe import NOTE
from cryptolstm.tracking.runs import coin_experiment, ui_url

log = logging.getLogger(__name__)

VERSION_TAGS = ("live.first_date", "live.last_date", "live.days", "live.mae_ratio", "live.dm_p")
BASELINES = ("garch", "empirical")  # the interval baselines beside a model with intervals


def every_day(model):
    """``rows -> every window's forecast`` of a loaded pyfunc: one call with ``every_day``, or, for
    a model logged before that parameter existed, one call per window (slower, the same numbers)."""
    schema = model.metadata.get_params_schema()
    if schema is not None and "every_day" in {p.name for p in schema.params}:
        return lambda rows: model.predict(rows, params={"every_day": True})
    window = registry.config_of(model).window_len

    def one_by_one(rows: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for end in range(window, len(rows) + 1):
            out = model.predict(rows.iloc[end - window:end])
            if "horizon" not in out:  # a next-day model logged before several days were possible
                out = out.assign(horizon=1)
            parts.append(out.assign(origin=rows["date"].iloc[end - 1]))
        return pd.concat(parts, ignore_index=True)

    return one_by_one


def trained_until(ref: registry.ModelRef) -> tuple[str, str]:
    """(the last day ``ref``'s training or validation used, the last day of its data), ISO dates."""
    tags = ref.run.data.tags
    used, data_last = tags.get("split.val.last"), tags.get("data.last_date")
    if not used or not data_last:
        raise ConfigError(f"{ref.label}'s training run {ref.run.info.run_id} does not say which days it "
                          f"trained on (no split.val.last or data.last_date tag); it cannot be scored on new days.")
    return used, data_last


def next_day(day: str) -> str:
    """The ISO date after ``day``."""
    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def live_days(ref: registry.ModelRef, market: Market, since: str | None, until: str | None,
              data_dir: str) -> tuple[str, str]:
    """The days to score (first, last): from ``since`` (default: the day after the model's data)
    to ``until`` (default: the data's last day). One sentence for a day the model trained or
    validated on, and when no new day is left."""
    used, data_last = trained_until(ref)
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

    ref: registry.ModelRef
    run_id: str
    result: LiveResult


def evaluate(model_uri: str, data_dir: str, since: str | None = None, until: str | None = None,
             launched: str | None = None, fetch_missing: bool = True) -> Evaluation:
    """Score ``model_uri`` on new days of ``data_dir`` and log the evaluation (module docstring).
    Everything that can be refused is checked before the run exists."""
    ref = registry.model_ref(model_uri)
    model = registry.load_model(ref)
    cfg = registry.config_of(model)
    ensure_data(data_dir, fetch_missing)
    market = load_market(data_dir, cfg.merge_date, None, cfg.fill_gaps)
    first, last = live_days(ref, market, since, until, data_dir)
    baselines = {name: make for name, make in interval_baselines().items() if name in BASELINES}
    started = time.perf_counter()
    result = score_live(every_day(model), cfg, market.frame, first, last, baselines)
    log.info("scored %d day(s) in %.2f s", result.n_days, time.perf_counter() - started)
    run_id = log_evaluation(ref, cfg, result, market, data_dir, launched)
    return Evaluation(ref, run_id, result)


def log_evaluation(ref: registry.ModelRef, cfg, result: LiveResult, market: Market, data_dir: str,
                   launched: str | None) -> str:
    """One run in the coin's experiment: metrics, per-day CSV, figure, links; then the version's tags."""
    client = MlflowClient()
    run_id = command_run(launched, coin_experiment(cfg.coin))
    try:
        metrics = {k: v for k, v in result.metrics.items() if pd.notna(v)} | {"live/days": result.n_days}
        now = int(time.time() * 1000)
        # linked to the logged model too (MLflow 3): its page lists them beside its training metrics
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0, model_id=ref.model_id) for k, v in metrics.items()],
                         params=_params(ref, result, data_dir, launched, client),
                         tags=[RunTag(k, v) for k, v in _tags(ref, cfg, result, market, run_id).items()])
        client.log_text(run_id, result.days.to_csv(index=False), "live/forecasts.csv")
        client.log_figure(run_id, plots.live_gap(result.days, cfg.coin, ref.label), "plots/live_cumulative_gap.png")
        if ref.version:
            _tag_version(client, ref, result, run_id)
    except BaseException as exc:
        finish(run_id, launched, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    finish(run_id, launched)
    return run_id


def _params(ref, result: LiveResult, data_dir: str, launched: str | None, client: MlflowClient) -> list[Param]:
    """The evaluation's params, except those ``mlflow run`` already logged on the run."""
    values = {"model": ref.uri, "since": result.first, "until": result.last,
              "data_dir": str(Path(data_dir).resolve())}
    logged = client.get_run(launched).data.params if launched else {}
    return [Param(f"evaluate.{k}", v) for k, v in values.items() if f"evaluate.{k}" not in logged]


def _tags(ref: registry.ModelRef, cfg, result: LiveResult, market: Market, run_id: str) -> dict[str, str]:
    """The run's tags: what was scored, on which days and data, and a description with links."""
    m = result.metrics
    source = ref.run
    version = f"v{ref.version}" if ref.version else source.info.run_id[:8]
    links = f"[its training run]({ui_url(source.info.experiment_id, source.info.run_id, '')})"
    if ref.version:
        links += f", [the model version](#/models/{ref.name}/versions/{ref.version})"
    note = (f"{ref.label} ({cfg.coin}, {cfg.protocol} protocol) scored on {result.n_days} new days, "
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


def _tag_version(client: MlflowClient, ref: registry.ModelRef, result: LiveResult, run_id: str) -> None:
    m = result.metrics
    values = {"live.first_date": result.first, "live.last_date": result.last, "live.days": str(result.n_days),
              "live.mae_ratio": f"{m['live/mae_ratio']:.6f}", "live.dm_p": f"{m['live/dm_p']:.6g}",
              "live.run": run_id}
    for key, value in values.items():
        client.set_model_version_tag(ref.name, ref.version, key, value)
