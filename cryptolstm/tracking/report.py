"""A Markdown summary of one MLflow experiment: best configurations, backtests, links.

Reads the tracking store only; writes nothing to it.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import mlflow
from mlflow.entities import Run

from cryptolstm.errors import ConfigError
from cryptolstm.registry import ALIAS
from cryptolstm.render import percent, values_text
from cryptolstm.tracking.runs import UI, ui_url
SHOWN = ("window_len", "layers", "neurons", "dropout", "batch_size", "activation", "learning_rate")

PER_HORIZON = re.compile(r"^test/h(\d+)/")  # test/h3/mae_ratio; not test/har/...


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
        return values_text({k.removeprefix("best."): v for k, v in sorted(run.data.tags.items()) if k.startswith("best.")})
    return values_text({k: params["config." + k] for k in SHOWN if "config." + k in params})


def _better_on(metrics: dict[str, float]) -> str:
    """On which days the run beat persistence, in the words `register` uses (its test days decide)."""
    days = [split for split in ("val", "test") if metrics.get(f"{split}/mae_ratio", 1.0) < 1]
    return " and ".join({"val": "validation days", "test": "test days"}[d] for d in days) or "neither"


def _best_section(runs: list[Run], backtested: dict[str, Run], top: int) -> list[str]:
    scored = [r for r in runs if "val/mae_ratio" in r.data.metrics and r.info.status == "FINISHED"]
    scored.sort(key=lambda r: r.data.metrics["val/mae_ratio"])
    lines = [f"## Best configurations by validation MAE ratio to persistence ({len(scored)} scored runs)", ""]
    if not scored:
        return lines + ["No finished run has a validation MAE ratio yet.", ""]
    lines += ["| run | kind | val ratio | test ratio | better than persistence on | backtest ratio | configuration |",
              "|---|---|---|---|---|---|---|"]
    for run in scored[:top]:
        m = run.data.metrics
        bt = backtested.get(run.info.run_id)
        bt_cell = f"{_num(bt.data.metrics.get('lstm.mean/usd/mae_ratio'))} ({_link(bt)})" if bt else "not backtested"
        lines.append(
            f"| {_link(run)} {run.info.run_name} | {_kind(run)} | {_num(m['val/mae_ratio'])} | "
            f"{_num(m.get('test/mae_ratio'))} | {_better_on(m)} | {bt_cell} | {_config(run)} |"
        )
    return lines + [""]


def _backtest_section(backtests: list[Run]) -> list[str]:
    lines = [f"## Walk-forward backtests ({len(backtests)})", ""]
    if not backtests:
        return lines + ["None yet: `cryptolstm backtest --config <file, run id or models:/ URI>`.", ""]
    lines += ["| run | source | folds | LSTM MAE ratio (seeds' mean ± sd) | drift | moving average | ARIMA "
              "| folds beating persistence | LSTM DM p (seeds) | MDE | 90 % model confidence set (MAE) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in backtests:
        m, p, t = run.data.metrics, run.data.params, run.data.tags
        seeds_p = [v for k, v in m.items() if k.startswith("lstm.seed") and k.endswith("/usd/dm_p")]
        p_cell = f"{min(seeds_p):.2g}-{max(seeds_p):.2g}" if seeds_p else "-"
        mdes = sorted(v for k, v in m.items() if k.startswith("lstm.seed") and k.endswith("/usd/dm_mde"))
        mde_cell = percent(mdes[len(mdes) // 2]) if mdes else "-"
        lines.append(
            f"| {_link(run)} | {t.get('backtest.source', '?')} | {p.get('backtest.folds', '?')} x "
            f"{p.get('backtest.fold_months', '?')}m, {p.get('backtest.start', '?')}..{p.get('backtest.end', '?')}, "
            f"{p.get('backtest.seeds', '?')} seeds | {_num(m.get('lstm.mean/usd/mae_ratio'))} ± "
            f"{_num(m.get('lstm.std/usd/mae_ratio'))} | {_num(m.get('drift/usd/mae_ratio'))} | "
            f"{_num(m.get('moving_average/usd/mae_ratio'))} | {_num(m.get('arima/usd/mae_ratio'))} | "
            f"{t.get('backtest.folds_beating_persistence', '-')} | {p_cell} | {mde_cell} | "
            f"{t.get('mcs.mae.included', '-').replace(',', ', ')} |"
        )
    return lines + [""]


def _search_section(runs: list[Run]) -> list[str]:
    """Finished Optuna studies: Hansen's SPA test of their best trial against the benchmark."""
    studies = [r for r in runs if "search/spa_p" in r.data.metrics and r.info.status == "FINISHED"]
    if not studies:
        return []
    lines = ["## Searches: the best trial against the benchmark, as the best of many", "",
             "Hansen's SPA p value (small: the best trial beats the benchmark beyond what trying so many explains) "
             "over every finished trial's validation days.", "",
             "| study | objective | trials | days | best / benchmark (val) | SPA p |", "|---|---|---|---|---|---|"]
    for run in studies:
        m, t = run.data.metrics, run.data.tags
        lines.append(f"| {_link(run)} {t.get('study_name', '?')} | {t.get('objective', '?')} | "
                     f"{int(m['search/spa_trials'])} | {int(m['search/spa_days'])} | "
                     f"{_num(m.get('search/spa_best_ratio'))} | {m['search/spa_p']:.3g} |")
    return lines + [""]


def _interval_section(runs: list[Run]) -> list[str]:
    """Runs with prediction intervals: their coverage and CRPS ratios to the interval baselines."""
    trained = [r for r in runs if "test/coverage_80" in r.data.metrics and r.info.status == "FINISHED"]
    backtests = [r for r in runs if "lstm.mean/crps_ratio_garch" in r.data.metrics and r.info.status == "FINISHED"]
    if not trained and not backtests:
        return []
    lines = ["## Prediction intervals", "",
             "Coverage of the calibrated 80 % / 95 % intervals on the test days (walk-forward: all folds' days, "
             "seeds' mean) and the CRPS ratio to GARCH(1,1)-t and to the empirical quantiles (below 1 beats them; DM p and "
             "MDE, the smallest difference in CRPS that test detects 80 % of the time at 5 %).", "",
             "| run | kind | coverage 80 / 95 | CRPS ratio GARCH (p) | CRPS ratio empirical (p) |", "|---|---|---|---|---|"]
    for run, prefix in [*((r, "test/") for r in trained), *((r, "lstm.mean/") for r in backtests)]:
        m = {k.removeprefix(prefix): v for k, v in run.data.metrics.items() if k.startswith(prefix)}
        lines.append(f"| {_link(run)} {run.info.run_name} | {_kind(run)} | {_num(m.get('coverage_80'), 2)} / "
                     f"{_num(m.get('coverage_95'), 2)} | {_num(m.get('crps_ratio_garch'), 3)} "
                     f"({_num(m.get('crps_dm_p_garch'), 3)}, MDE {percent(m.get('crps_dm_mde_garch', math.nan))}) | "
                     f"{_num(m.get('crps_ratio_empirical'), 3)} ({_num(m.get('crps_dm_p_empirical'), 3)}, "
                     f"MDE {percent(m.get('crps_dm_mde_empirical', math.nan))}) |")
    return lines + [""]


def _horizon_section(runs: list[Run]) -> list[str]:
    """Runs forecasting several days: the test MAE ratio to persistence per horizon."""
    several = [r for r in runs if "test/h2/mae_ratio" in r.data.metrics and r.info.status == "FINISHED"]
    if not several:
        return []
    horizon = max(int(m.group(1)) for r in several for k in r.data.metrics if (m := PER_HORIZON.match(k)))
    lines = ["## Several days ahead", "", "Test MAE ratio to persistence per horizon (days ahead).", "",
             "| run | " + " | ".join(f"h{h}" for h in range(1, horizon + 1)) + " |", "|---|" + "---|" * horizon]
    for run in several:
        m = run.data.metrics
        lines.append(f"| {_link(run)} {run.info.run_name} | "
                     + " | ".join(_num(m.get(f"test/h{h}/mae_ratio"), 3) for h in range(1, horizon + 1)) + " |")
    return lines + [""]


def _registry_section(experiment_name: str) -> list[str]:
    """The versions of the registered model named like the experiment (``cryptolstm-btc``): their
    validation and test ratios at training time beside how they did on new days (``live.*``)."""
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name = '{experiment_name}'")
    if not versions:
        return []
    try:
        champion = str(client.get_model_version_by_alias(experiment_name, ALIAS).version)
    except Exception:  # noqa: BLE001 - no champion (yet)
        champion = None
    lines = [f"## Registered model `{experiment_name}` ({len(versions)} versions)", "",
             "MAE ratio to persistence on the validation and test days at training time, and on the new days "
             "after its training (`cryptolstm evaluate`, one day ahead, no refit; DM p against persistence).", "",
             "| version | alias | val ratio | test ratio | new days | new-day ratio (DM p) | refit of | source run |",
             "|---|---|---|---|---|---|---|---|"]
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        t = v.tags
        days = (f"{t['live.days']}, {t.get('live.first_date')}..{t.get('live.last_date')}" if "live.days" in t
                else "not evaluated")
        live = f"{_num(float(t['live.mae_ratio']))} ({_num(float(t['live.dm_p']), 3)})" if "live.mae_ratio" in t else "-"
        refit = f"version {t['refit.of_version']}" if t.get("refit.of_version") else "-"
        lines.append(f"| {v.version} | {'@' + ALIAS if str(v.version) == champion else ''} | "
                     f"{_num(_float(t.get('val/mae_ratio')))} | {_num(_float(t.get('test/mae_ratio')))} | {days} | "
                     f"{live} | {refit} | `{t.get('source_run', v.run_id or '')[:8]}` |")
    return lines + [""]


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


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
        *_search_section(runs),
        *_interval_section(runs),
        *_horizon_section(runs),
        *_registry_section(experiment_name),
    ]
    return "\n".join(lines)
