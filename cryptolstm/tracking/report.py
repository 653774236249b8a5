"""A Markdown summary of one MLflow experiment: best configurations, backtests, links. It only reads the
store: `gather` reads it once for this Markdown and for the HTML page (`cryptolstm.tracking.results_page`)."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion

from cryptolstm.errors import ConfigError
from cryptolstm.forecast import USD
from cryptolstm.models.baselines import POINT
from cryptolstm.models.network import MEAN, SEEDED, STD
from cryptolstm.registry import ALIAS
from cryptolstm.render import COMPARED, percent, values_text
from cryptolstm.tracking.runs import UI, ui_url
SHOWN = ("window_len", "layers", "neurons", "dropout", "batch_size", "activation", "learning_rate")

POOLED = f"{MEAN}/usd/mae_ratio"  # a backtest's pooled MAE ratio to persistence, the seeds' mean
PER_HORIZON = re.compile(r"^test/h(\d+)/")  # test/h3/mae_ratio; not test/har/...


def num(value: float | None, digits: int = 4, style: str = "f") -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}{style}}"


def _link(run: Run) -> str:
    return f"[`{run.info.run_id[:8]}`]({ui_url(run.info.experiment_id, run.info.run_id)})"


def kind(run: Run) -> str:
    tags = run.data.tags
    if tags.get("cryptolstm.study"):
        return "study"
    if "trial" in tags:
        return f"trial ({tags.get('engine', '?')})"
    return tags.get("cryptolstm.entry", "run")


def config_text(run: Run) -> str:
    params = run.data.params
    if "config.window_len" not in params:  # a study's parent: its chosen values are tags
        return values_text({k.removeprefix("best."): v for k, v in sorted(run.data.tags.items()) if k.startswith("best.")})
    return values_text({k: params["config." + k] for k in SHOWN if "config." + k in params})


def groups(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """The finished runs with a validation MAE ratio, lowest first, by the val and test days (``first..last``,
    their ``split.*`` tags) they were scored on: only runs of one group are comparable, as in the registry."""
    out: dict[tuple[str, str], list[Run]] = {}
    scored = [r for r in runs if "val/mae_ratio" in r.data.metrics and r.info.status == "FINISHED"]
    for run in sorted(scored, key=lambda r: r.data.metrics["val/mae_ratio"]):
        t = run.data.tags
        days = tuple(f"{t[f'split.{s}.first']}..{t[f'split.{s}.last']}" if f"split.{s}.first" in t
                     else "days not recorded" for s in ("val", "test"))
        out.setdefault(days, []).append(run)
    return out


def folds_text(run: Run) -> str:
    """A backtest's folds in words: ``2 x 1m, 2021-10-01..2021-11-30, 1 seeds``."""
    p = run.data.params
    return (f"{p.get('backtest.folds', '?')} x {p.get('backtest.fold_months', '?')}m, {p.get('backtest.start', '?')}.."
            f"{p.get('backtest.end', '?')}, {p.get('backtest.seeds', '?')} seeds")


def _per_seed(metrics: dict[str, float], suffix: str) -> list[float]:
    """A backtest's metric ``<network>.seed<k><suffix>`` of each seed."""
    return [v for k, v in metrics.items() if k.endswith(suffix) and SEEDED.match(k.removesuffix(suffix))]


def _best_section(runs: list[Run], backtested: dict[str, Run], top: int) -> list[str]:
    found = groups(runs)
    lines = [f"## Best configurations by validation MAE ratio to persistence ({sum(map(len, found.values()))} "
             f"scored runs), ranked only among runs scored on the same days", ""]
    if not found:
        return lines + ["No finished run has a validation MAE ratio yet.", ""]
    for (val, test), scored in found.items():
        lines += [f"### Validated on {val}, tested on {test}", "",
                  "| run | kind | val ratio | test ratio | better than persistence on | backtest ratio | configuration |",
                  "|---|---|---|---|---|---|---|"]
        for run in scored[:top]:
            m = run.data.metrics
            bt = backtested.get(run.info.run_id)
            bt_cell = f"{num(bt.data.metrics.get(POOLED))} ({_link(bt)})" if bt else "not backtested"
            better = " and ".join(days for split, days in (("val", "validation days"), ("test", "test days"))
                                  if m.get(f"{split}/mae_ratio", 1.0) < 1) or "neither"  # in the words `register` uses
            lines.append(f"| {_link(run)} {run.info.run_name} | {kind(run)} | {num(m['val/mae_ratio'])} | "
                         f"{num(m.get('test/mae_ratio'))} | {better} | {bt_cell} | {config_text(run)} |")
        lines.append("")
    return lines


def _backtest_section(backtests: list[Run]) -> list[str]:
    lines = [f"## Walk-forward backtests ({len(backtests)})", ""]
    if not backtests:
        return lines + ["None yet: `cryptolstm backtest --config <file, run id or models:/ URI>`.", ""]
    header = ["run", "source", "folds", "LSTM MAE ratio (seeds' mean ± sd)", *(b.display for b in POINT),
              "folds beating persistence", "LSTM DM p (seeds)", "MDE", "90 % model confidence set (MAE)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in backtests:
        m, t = run.data.metrics, run.data.tags
        seeds_p = _per_seed(m, "/usd/dm_p")
        p_cell = f"{min(seeds_p):.2g}-{max(seeds_p):.2g}" if seeds_p else "-"
        mdes = sorted(_per_seed(m, "/usd/dm_mde"))
        mde_cell = percent(mdes[len(mdes) // 2]) if mdes else "-"
        lines.append(f"| {_link(run)} | {t.get('backtest.source', '?')} | {folds_text(run)} | {num(m.get(POOLED))} ± "
                     f"{num(m.get(f'{STD}/usd/mae_ratio'))} | "
                     + "".join(f"{num(m.get(f'{b.name}/{USD}/mae_ratio'))} | " for b in POINT)
                     + f"{t.get('backtest.folds_beating_persistence', '-')} | {p_cell} | {mde_cell} | "
                     f"{t.get('mcs.mae.included', '-').replace(',', ', ')} |")
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
                     f"{num(m.get('search/spa_best_ratio'))} | {m['search/spa_p']:.3g} |")
    return lines + [""]


def _interval_section(runs: list[Run]) -> list[str]:
    """Runs with prediction intervals: their coverage and CRPS ratios to the interval baselines."""
    trained = [r for r in runs if "test/coverage_80" in r.data.metrics and r.info.status == "FINISHED"]
    backtests = [r for r in runs if f"{MEAN}/crps" in r.data.metrics and r.info.status == "FINISHED"]
    if not trained and not backtests:
        return []
    lines = ["## Prediction intervals", "",
             "Coverage of the calibrated 80 % / 95 % intervals on the test days (walk-forward: all folds' days, "
             "seeds' mean) and the CRPS ratio to each interval baseline (below 1 beats it; DM p and "
             "MDE, the smallest difference in CRPS that test detects 80 % of the time at 5 %).", "",
             "| run | kind | coverage 80 / 95 | " + " | ".join(f"CRPS ratio {d} (p)" for d in COMPARED.values()) + " |",
             "|---|---|---|" + "---|" * len(COMPARED)]
    for run, prefix in [*((r, "test/") for r in trained), *((r, f"{MEAN}/") for r in backtests)]:
        m = {k.removeprefix(prefix): v for k, v in run.data.metrics.items() if k.startswith(prefix)}
        ratios = " | ".join(f"{num(m.get(f'crps_ratio_{b}'), 3)} ({num(m.get(f'crps_dm_p_{b}'), 3)}, "
                            f"MDE {percent(m.get(f'crps_dm_mde_{b}', math.nan))})" for b in COMPARED)
        lines.append(f"| {_link(run)} {run.info.run_name} | {kind(run)} | {num(m.get('coverage_80'), 2)} / "
                     f"{num(m.get('coverage_95'), 2)} | {ratios} |")
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
                     + " | ".join(num(m.get(f"test/h{h}/mae_ratio"), 3) for h in range(1, horizon + 1)) + " |")
    return lines + [""]


def _registry_section(experiment_name: str, versions: list[ModelVersion], champion: str | None) -> list[str]:
    """The registered model's versions: val and test ratios at training time beside those on new days (``live.*``)."""
    if not versions:
        return []
    lines = [f"## Registered model `{experiment_name}` ({len(versions)} versions)", "",
             "MAE ratio to persistence on the validation and test days at training time, and on the new days "
             "after its training (`cryptolstm evaluate`, one day ahead, no refit; DM p against persistence).", "",
             "| version | alias | val ratio | test ratio | new days | new-day ratio (DM p) | refit of | source run |",
             "|---|---|---|---|---|---|---|---|"]
    for v in versions:
        t = v.tags
        days = (f"{t['live.days']}, {t.get('live.first_date')}..{t.get('live.last_date')}" if "live.days" in t
                else "not evaluated")
        live = f"{num(float(t['live.mae_ratio']))} ({num(float(t['live.dm_p']), 3)})" if "live.mae_ratio" in t else "-"
        refit = f"version {t['refit.of_version']}" if t.get("refit.of_version") else "-"
        lines.append(f"| {v.version} | {'@' + ALIAS if str(v.version) == champion else ''} | "
                     f"{num(_float(t.get('val/mae_ratio')))} | {num(_float(t.get('test/mae_ratio')))} | {days} | "
                     f"{live} | {refit} | `{t.get('source_run', v.run_id or '')[:8]}` |")
    return lines + [""]


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Gathered:
    """What a report reads from the store, once: the experiment's runs, its finished backtests and the latest
    per source run (``backtested``), the registered model's versions (newest first) and ``champion``'s number."""

    name: str
    experiment_id: str
    tracking_uri: str | None
    runs: list[Run]
    backtests: list[Run]
    backtested: dict[str, Run]
    versions: list[ModelVersion]
    champion: str | None


def gather(experiment_name: str, tracking_uri: str | None = None) -> Gathered:
    """Read ``experiment_name``'s runs and registered versions (`ConfigError` naming those there if absent)."""
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        names = ", ".join(e.name for e in mlflow.search_experiments()) or "none"
        raise ConfigError(f"there is no MLflow experiment named {experiment_name!r} in {tracking_uri}; experiments there: {names}.")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list", max_results=50_000)
    backtests = [r for r in runs if r.data.tags.get("cryptolstm.entry") == "backtest" and r.info.status == "FINISHED"]
    backtested = {bt.data.tags["backtest.source_run"]: bt for bt in sorted(backtests, key=lambda r: r.info.start_time)
                  if "backtest.source_run" in bt.data.tags}
    client = mlflow.MlflowClient()
    versions = sorted(client.search_model_versions(f"name = '{experiment_name}'"), key=lambda v: int(v.version), reverse=True)
    try:
        champion = str(client.get_model_version_by_alias(experiment_name, ALIAS).version) if versions else None
    except Exception:  # noqa: BLE001 - no champion (yet)
        champion = None
    return Gathered(experiment_name, experiment.experiment_id, tracking_uri, runs, backtests, backtested, versions, champion)


def experiment_report(experiment_name: str, top: int = 10, tracking_uri: str | None = None,
                      gathered: Gathered | None = None) -> str:
    """The Markdown report of ``experiment_name`` (see module docstring); ``gathered``: its `gather`, if read already."""
    if top < 1:
        raise ConfigError(f"top must be an integer >= 1, got {top}.")
    g = gathered or gather(experiment_name, tracking_uri)
    return "\n".join([
        f"# Experiment `{experiment_name}`", "",
        f"{len(g.runs)} runs in `{tracking_uri}`, report made {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. "
        f"Links open the run in `mlflow ui --backend-store-uri {tracking_uri}` at {UI}. "
        "A ratio below 1 means a lower MAE than persistence (tomorrow = today) on the same days.", "",
        *_best_section(g.runs, g.backtested, top), *_backtest_section(g.backtests), *_search_section(g.runs),
        *_interval_section(g.runs), *_horizon_section(g.runs),
        *_registry_section(experiment_name, g.versions, g.champion),
    ])
