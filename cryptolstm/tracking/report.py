"""A Markdown summary of one MLflow experiment: best configurations, backtests, links.

Reads the tracking store only; writes nothing to it.
"""

from __future__ import annotations

import datetime as dt
import math

import mlflow
from mlflow.entities import Run

from cryptolstm.errors import ConfigError
from cryptolstm.tracking.runs import UI, ui_url
SHOWN = ("window_len", "layers", "neurons", "dropout", "batch_size", "activation", "learning_rate")


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _link(run: Run) -> str:
    return f"[`{run.info.run_id[:8]}`]({ui_url(run.info.experiment_id, run.info.run_id)})"


def _kind(run: Run) -> str:
    tags = run.data.tags
    if tags.get("cryptolstm.study"):
        return "study"
    if "trial" in tags:
        return f"trial ({tags.get('engine', '?')})"
    return tags.get("cryptolstm.entry", "run")


def _config(run: Run) -> str:
    params = run.data.params
    if "config.window_len" not in params:  # a study's parent: its chosen values are tags
        return ", ".join(f"{k.removeprefix('best.')}={v}" for k, v in sorted(run.data.tags.items()) if k.startswith("best."))
    return ", ".join(f"{k}={params['config.' + k]}" for k in SHOWN if "config." + k in params)


def _best_section(runs: list[Run], backtested: dict[str, Run], top: int) -> list[str]:
    scored = [r for r in runs if "val/mae_ratio" in r.data.metrics and r.info.status == "FINISHED"]
    scored.sort(key=lambda r: r.data.metrics["val/mae_ratio"])
    lines = [f"## Best configurations by validation MAE ratio to persistence ({len(scored)} scored runs)", ""]
    if not scored:
        return lines + ["No finished run has a validation MAE ratio yet.", ""]
    lines += ["| run | kind | val ratio | test ratio | beats persistence (val) | backtest ratio | configuration |",
              "|---|---|---|---|---|---|---|"]
    for run in scored[:top]:
        m = run.data.metrics
        bt = backtested.get(run.info.run_id)
        bt_cell = f"{_num(bt.data.metrics.get('lstm.mean/usd/mae_ratio'))} ({_link(bt)})" if bt else "not backtested"
        lines.append(
            f"| {_link(run)} {run.info.run_name} | {_kind(run)} | {_num(m['val/mae_ratio'])} | "
            f"{_num(m.get('test/mae_ratio'))} | {'yes' if m['val/mae_ratio'] < 1 else 'no'} | {bt_cell} | {_config(run)} |"
        )
    return lines + [""]


def _backtest_section(backtests: list[Run]) -> list[str]:
    lines = [f"## Walk-forward backtests ({len(backtests)})", ""]
    if not backtests:
        return lines + ["None yet: `cryptolstm backtest --config <file, run id or models:/ URI>`.", ""]
    lines += ["| run | source | folds | LSTM MAE ratio (seeds' mean ± sd) | drift | moving average | ARIMA "
              "| folds beating persistence | LSTM DM p (seeds) |", "|---|---|---|---|---|---|---|---|---|"]
    for run in backtests:
        m, p, t = run.data.metrics, run.data.params, run.data.tags
        seeds_p = [v for k, v in m.items() if k.startswith("lstm.seed") and k.endswith("/usd/dm_p")]
        p_cell = f"{min(seeds_p):.2g}-{max(seeds_p):.2g}" if seeds_p else "-"
        lines.append(
            f"| {_link(run)} | {t.get('backtest.source', '?')} | {p.get('backtest.folds', '?')} x "
            f"{p.get('backtest.fold_months', '?')}m, {p.get('backtest.start', '?')}..{p.get('backtest.end', '?')}, "
            f"{p.get('backtest.seeds', '?')} seeds | {_num(m.get('lstm.mean/usd/mae_ratio'))} ± "
            f"{_num(m.get('lstm.std/usd/mae_ratio'))} | {_num(m.get('drift/usd/mae_ratio'))} | "
            f"{_num(m.get('moving_average/usd/mae_ratio'))} | {_num(m.get('arima/usd/mae_ratio'))} | "
            f"{t.get('backtest.folds_beating_persistence', '-')} | {p_cell} |"
        )
    return lines + [""]


def experiment_report(experiment_name: str, top: int = 10, tracking_uri: str | None = None) -> str:
    """The Markdown report of ``experiment_name`` (see module docstring)."""
    if top < 1:
        raise ConfigError(f"top must be an integer >= 1, got {top}.")
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        names = ", ".join(e.name for e in mlflow.search_experiments()) or "none"
        raise ConfigError(f"there is no MLflow experiment named {experiment_name!r} in {tracking_uri}; experiments there: {names}.")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list", max_results=50_000)
    backtests = [r for r in runs if r.data.tags.get("cryptolstm.entry") == "backtest" and r.info.status == "FINISHED"]
    backtested = {}
    for bt in sorted(backtests, key=lambda r: r.info.start_time):
        if "backtest.source_run" in bt.data.tags:
            backtested[bt.data.tags["backtest.source_run"]] = bt
    lines = [
        f"# Experiment `{experiment_name}`",
        "",
        f"{len(runs)} runs in `{tracking_uri}`, report made {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. "
        f"Links open the run in `mlflow ui --backend-store-uri {tracking_uri}` at {UI}. "
        "A ratio below 1 means a lower MAE than persistence (tomorrow = today) on the same days.",
        "",
        *_best_section(runs, backtested, top),
        *_backtest_section(backtests),
    ]
    return "\n".join(lines)
