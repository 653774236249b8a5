"""An evaluation (`cryptolstm.evaluate.evaluate`) recorded in MLflow: one run in the coin's experiment, linked
to the model version and its logged model; on enough new days, the version's ``live.*`` tags too."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from cryptolstm import plots
from cryptolstm.data import Market
from cryptolstm.errors import error_tag
from cryptolstm.render import NOTE, detects, live_text
from cryptolstm.tracking.commands import command_run, finish
from cryptolstm.tracking.describe import run_version_text
from cryptolstm.tracking.runs import coin_experiment, ui_url


def log_evaluation(evaluation, market: Market, data_dir: str, launched: str | None) -> str:
    """One run in the coin's experiment: metrics, per-day CSV, figure, links; then the version's tags."""
    client, ref, result = MlflowClient(), evaluation.info, evaluation
    cfg = ref.config
    run_id = command_run(launched, coin_experiment(cfg.coin))
    try:
        metrics = {k: v for k, v in result.metrics.items() if pd.notna(v)} | {"live/days": result.n_days}
        now, model_id = int(time.time() * 1000), ref.extra.get("model_id") or None
        tags = _tags(ref, cfg, result, market, run_id)
        if result.opening is not None:  # the model's seal, and its opening by this run
            tags |= result.opening.tags()
            if result.opening.again:
                tags["seal.again"] = result.opening.again
        elif ref.sealed_from:
            tags["sealed_from"] = ref.sealed_from
        params = {"model": ref.uri, "since": result.first, "until": result.last,
                  "data_dir": str(Path(data_dir).resolve())}
        # linked to the logged model too (MLflow 3): its page lists them beside its training metrics
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0, model_id=model_id) for k, v in metrics.items()],
                         params=[Param(f"evaluate.{k}", v) for k, v in params.items()],  # beside mlflow run's own
                         tags=[RunTag(k, v) for k, v in tags.items()])
        client.log_text(run_id, result.days.to_csv(index=False), "live/forecasts.csv")
        client.log_figure(run_id, plots.live_gap(result.days, cfg.coin, ref.label), "plots/live_cumulative_gap.png")
        if result.tags_version:  # enough new days: not its test days again, not a day or two
            _tag_version(client, ref, result, run_id)
        # the opening on the model's training run (where the next opening reads the earlier ones) and version
        if result.opening is not None:
            for key, value in (result.opening.tags() | {"seal.opened_run": run_id}).items():
                client.set_tag(ref.run_id, key, value)
                if ref.version:
                    client.set_model_version_tag(ref.name, ref.version, key, value)
    except BaseException as exc:
        finish(run_id, launched, error=error_tag(exc), killed=isinstance(exc, KeyboardInterrupt))
        raise
    finish(run_id, launched)
    return run_id


def _tags(ref, cfg, result, market: Market, run_id: str) -> dict[str, str]:
    """The run's tags: what was scored, on which days and data, and a description with links."""
    m = result.metrics
    version = f"v{ref.version}" if ref.version else ref.run_id[:8]
    links = f"[its training run]({ui_url(ref.extra.get('experiment_id', ''), ref.run_id, '')})"
    if ref.version:
        links += f", [the model version](#/models/{ref.name}/versions/{ref.version})"
    days = "new days" if ref.is_new(result.first) else "days (not new: from its test days)"
    note = (f"{ref.label} ({cfg.coin}, {cfg.protocol} protocol) scored on {result.n_days} {days}, "
            f"{result.first}..{result.last}, one day ahead, without refitting: MAE {m['live/mae']:,.2f} USD "
            f"against persistence's {m['live/persistence_mae']:,.2f} (ratio {m['live/mae_ratio']:.4f}, "
            f"DM p {m['live/dm_p']:.3g}; {detects(m.get('live/dm_mde', float('nan')))}). Links: {links}. Per-day forecasts: live/forecasts.csv.")
    return {"cryptolstm.entry": "evaluate", "coin": cfg.coin, "protocol": cfg.protocol,
            "mlflow.runName": f"live {m['live/mae_ratio']:.3f} · evaluate-{cfg.coin.lower()}-{version}", NOTE: note,
            "evaluated.model_uri": ref.uri, "evaluated.model": ref.name or "", "evaluated.version": ref.version or "",
            "evaluated.source_run": ref.run_id, "live.first_date": result.first,
            "live.last_date": result.last, "live.days": str(result.n_days), "data.dir": str(Path(market.files[cfg.coin][0]).parent),
            "data.last_date": market.last_date,
            **{f"data.sha256.{coin.lower()}": digest for coin, (_, digest) in market.files.items()}}


def _tag_version(client: MlflowClient, ref, result, run_id: str) -> None:
    """The version's ``live.*`` tags, and its description, which ends with the same in a sentence."""
    m = result.metrics
    values = {"live.first_date": result.first, "live.last_date": result.last, "live.days": str(result.n_days),
              "live.mae_ratio": f"{m['live/mae_ratio']:.6f}", "live.dm_p": f"{m['live/dm_p']:.6g}",
              "live.run": run_id}
    for key, value in values.items():
        client.set_model_version_tag(ref.name, ref.version, key, value)
    live = live_text(result.first, result.last, result.n_days, m["live/mae_ratio"], m["live/dm_p"],
                     m.get("live/dm_mde", float("nan")), run_id)
    source = client.get_run(ref.run_id)
    client.update_model_version(ref.name, ref.version, description=f"{run_version_text(source)} {live}")
