"""Every text the harness shows a person: the terminal's summaries, a backtest's Markdown tables, the run
names and descriptions in the MLflow UI. Plain values in, text out; nothing here reads a store or a file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptolstm.config import COINS, RunConfig
from cryptolstm.forecast import UNITS, USD
from cryptolstm.options import WARM
from cryptolstm.registry import MIN_TAGGED_DAYS
from cryptolstm.models.network import MEAN, SEEDED, STD, NetworkForecaster
from cryptolstm import cells
from cryptolstm.models.baselines import POINT, Persistence
from cryptolstm.models.interval_baselines import INTERVAL
from cryptolstm.scoring import INTERVAL_BASELINES

NOTE = "mlflow.note.content"  # the tag MLflow shows as a run's or an experiment's description
PERSISTENCE = ("Every error is beside persistence (\"tomorrow = today\") on the same days, in the same units: "
               "`<split>/mae_ratio` is the model's MAE over persistence's, below 1 beats it. Selection uses "
               "`val/mae_ratio` only; the test days are scored once, after selection.")
# the interval baselines summaries set the LSTM beside, in their order: name -> name in prose
COMPARED = {b.name: b.display for b in sorted((b for b in INTERVAL if b.compared), key=lambda b: b.compared)}
LOSS_NAMES = {"mae": "absolute error (USD)", "crps": "CRPS (returns)"}

def number(value) -> str:
    """A parameter's value as a person reads it: floats to 3 significant digits (0.3, not 0.30000000000000004)."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return value
        return number(parsed) if "." in value or "e" in value.lower() else value
    return str(value)


def values_text(values: dict) -> str:
    """``dropout=0.3, learning_rate=0.00361``: a trial's or a config's values, rounded (`number`)."""
    return ", ".join(f"{k}={number(v)}" for k, v in values.items())


def run_name(cfg: RunConfig) -> str:
    """A run's short name, what differs from the 2018 model first: ``gaussian-h7-to2022-12-31-3x512-w7-s202``."""
    from cryptolstm.features import DEFAULT, SETS

    sets = {names: name for name, names in SETS.items()}
    parts = [cfg.head if cfg.head_spec.distribution else "", f"h{cfg.horizon}" if cfg.horizon > 1 else "",
             "" if cfg.feature_names == DEFAULT else sets.get(cfg.feature_names, f"{len(cfg.feature_names)}features"),
             cfg.cell if cfg.cell != cells.DEFAULT.name else "", f"to{cfg.end_date}" if cfg.end_date else "",
             cfg.protocol if not cfg.rules.has_test or cfg.rules.reference != "last" else "",
             f"{cfg.layers}x{cfg.neurons}", f"w{cfg.window_len}", f"x{cfg.ensemble}" if cfg.ensemble > 1 else "",
             f"s{cfg.seed}"]
    return "-".join(p for p in parts if p)


def result_name(cfg: RunConfig, metrics: dict[str, float], base: str | None = None) -> str:
    """A trained run's name, its val and test MAE ratio to persistence first (a distribution's CRPS ratio
    to GARCH): ``val 0.993 test 1.016 · 3x512-w7-s202``; ``base``: the name it started with (`run_name`)."""
    key, prefix = ("crps_ratio_garch", "crps ") if cfg.head_spec.distribution else ("mae_ratio", "")
    scores = " ".join(f"{split} {metrics[f'{split}/{key}']:.3f}" for split in ("val", "test")
                      if f"{split}/{key}" in metrics)
    return f"{prefix}{scores} · {base or run_name(cfg)}"

def experiment_text(name: str) -> str:
    """The description of the experiment ``name`` (``cryptolstm-btc``: BTC's runs)."""
    coin = name.removeprefix("cryptolstm-").upper()
    whose = f"{coin} runs" if name.startswith("cryptolstm-") and coin in COINS else "Runs"
    return (f"{whose} of cryptolstm, close forecasts by an LSTM (the next day, or the next H days, with or "
            "without prediction intervals): training runs (their names start with the validation and test "
            "ratio to persistence, then what sets them apart from the 2018 model, e.g. "
            "'val 0.993 test 1.016 · 3x512-w7-s202'), searches (a parent run per study, "
            "named after it, with a child run per trial), walk-forward backtests (a child run per fold), and "
            f"the records of `register`, `predict`, `evaluate` and `report`. {PERSISTENCE}")

def model_text(name: str) -> str:
    """The description of the registered model ``name`` (``cryptolstm-btc``)."""
    return (f"cryptolstm's {name.removeprefix('cryptolstm-').upper()} close forecaster (an MLflow pyfunc: the last "
            "days' raw daily rows in, one row per forecast day out, the close in USD and, for a distribution head, its "
            "intervals). Each version is one registered run; the alias @champion is the version with the lowest "
            f"validation MAE ratio to persistence among those evaluated on the same days. {PERSISTENCE}")

def _ratios(metrics: dict[str, float]) -> str:
    """The sentence of the val and test MAE ratios to persistence (``not measured`` where absent)."""
    said = {}
    for split in ("val", "test"):
        value = metrics.get(f"{split}/mae_ratio")
        said[split] = "not measured" if value is None else \
            f"{value:.4f} ({'beats' if value < 1 else 'does not beat'} persistence)"
    return f"MAE ratio to persistence: validation {said['val']}, test {said['test']}."

def version_text(run_id: str, run_name: str, experiment_id: str, tags: dict[str, str], params: dict[str, str],
                 metrics: dict[str, float]) -> str:
    """The description of a version registered from a run: coin, protocol, source, ratios."""
    coin = tags.get("coin") or params.get("config.coin", "?")
    return (f"{coin} LSTM, {tags.get('protocol', '?')} protocol, from run {run_id} ({run_name}, experiment id "
            f"{experiment_id}), data {tags.get('data.first_date', '?')}..{tags.get('data.last_date', '?')}. "
            f"{_ratios(metrics)}")

def live_text(first: str, last: str, days: int, ratio: float, dm_p: float, mde: float, run_id: str) -> str:
    """One sentence of a version's score on new days (`cryptolstm evaluate`)."""
    return (f"On {days} new days after its training, {first}..{last}, one day ahead: MAE ratio to persistence "
            f"{ratio:.4f} ({'beats' if ratio < 1 else 'does not beat'} persistence, DM p {dm_p:.3g}; {detects(mde)}; "
            f"evaluation run {run_id}).")

def result_text(metrics: dict[str, float]) -> str:
    """One sentence: the val and test MAE ratios to persistence and any intervals' test coverage and CRPS."""
    text = _ratios(metrics)
    if "test/coverage_80" in metrics:
        text += (f" Intervals on the test days: coverage {metrics['test/coverage_80']:.2f} / "
                 f"{metrics['test/coverage_95']:.2f} (80 % / 95 %), CRPS ratio to GARCH "
                 f"{metrics.get('test/crps_ratio_garch', float('nan')):.3f}.")
    return text

def trial_text(name: str, values: str, objective: str) -> str:
    """The description of a search trial: what it tried; its objective is among its metrics."""
    return f"{name}: {values}. Scored on the validation days only ({objective}); the test days are never read."

def study_text(study: str, objective: str, best: float, best_values: dict, metrics: dict[str, float]) -> str:
    """The description of a study's parent: the best trial's values and the chosen config's result."""
    return (f"Study {study}: its trials are this run's children. Best {objective} {best:.4f} with "
            f"{values_text(best_values)}; that config was re-trained and scored on the test days once. "
            f"{result_text(metrics)} {PERSISTENCE}")


# --- the terminal

def run_summary(run_id: str, uri: str, result) -> str:
    """A few lines: where the run is, and each split's MAE beside persistence."""
    cfg = result.config
    if cfg.head_spec.pinned:  # its median is the last close: a ratio table would be 1.000s
        return "\n".join([f"run {run_id} ({uri}); {cfg.coin}, protocol {cfg.protocol}: head {cfg.head} pins the "
                          f"median at the last close by construction, so its point forecast is persistence's "
                          f"(MAE ratio 1); what it forecasts is the spread around it:", *interval_lines(result.metrics),
                          *verdict_lines(result.metrics)])
    lines = [f"run {run_id} ({uri}); {cfg.coin}, protocol {cfg.protocol}, MAE in {UNITS[cfg.rules.units]}:",
             f"  {'split':<6}{'model':>14}{'persistence':>14}{'ratio':>8}{'DM p':>9}{'MDE':>8}{'direction':>11}"]
    for split in ("val", "test"):
        if f"{split}/mae" in result.metrics:
            m = {k.split("/", 1)[1]: v for k, v in result.metrics.items() if k.startswith(split + "/")}
            lines.append(f"  {split:<6}{m['mae']:>14.6g}{m['persistence_mae']:>14.6g}"
                         f"{m['mae_ratio']:>8.3f}{_fmt(m.get('dm_p', float('nan')), 2, 'g'):>9}"
                         f"{percent(m.get('dm_mde', float('nan'))):>8}{_fmt(m['direction_accuracy'], 1, '%'):>10}")
    lines.append("  MDE: the smallest difference in MAE the Diebold-Mariano test detects (80 % of the time, at 5 %).")
    lines.append(f"  ratio < 1 means the model beat persistence on those days; training ran {result.epochs_run} "
                 f"epoch(s){' (stopped early)' if result.stopped_early else ''} and kept "
                 f"{f'epoch {result.best_epoch + 1}' if result.best_epoch >= 0 else 'the weights it started from'}.")
    if cfg.horizon > 1:
        lines += horizon_lines(result.metrics, cfg.horizon)
    if cfg.head_spec.distribution:
        lines += interval_lines(result.metrics) + verdict_lines(result.metrics)
    return "\n".join(lines)


def verdict(ratio: float, p: float) -> str:
    """``beats``, ``loses to`` or ``ties``: a loss ratio's verdict from its two-sided DM test at 5 %."""
    if not (np.isfinite(ratio) and np.isfinite(p)) or p >= 0.05:
        return "ties"
    return "beats" if ratio < 1 else "loses to"


def verdict_lines(metrics: dict[str, float]) -> list[str]:
    """One line per split in words: the model beats, ties or loses to each interval baseline on CRPS."""
    lines = []
    for split in ("val", "test"):
        said = [f"{verdict(metrics[f'{split}/crps_ratio_{b}'], metrics.get(f'{split}/crps_dm_p_{b}', np.nan))} "
                f"{COMPARED[b]}" for b in COMPARED if f"{split}/crps_ratio_{b}" in metrics]
        if said:
            lines.append(f"  on the {split} days, on CRPS, the model {', '.join(said)} (DM test at 5 %)")
    return lines


def horizon_lines(metrics: dict[str, float], horizon: int) -> list[str]:
    """The MAE ratio to persistence of each horizon k = 1..H, per evaluated split."""
    return ["  MAE ratio to persistence by horizon (days ahead):",
            f"  {'split':<6}" + "".join(f"{f'h{h}':>7}" for h in range(1, horizon + 1)),
            *(f"  {split:<6}" + "".join(f"{metrics[f'{split}/h{h}/mae_ratio']:>7.3f}" for h in range(1, horizon + 1))
              for split in ("val", "test") if f"{split}/h1/mae_ratio" in metrics)]


def detects(mde: float) -> str:
    """A DM test's minimum detectable effect in words: ``this test detects a difference of 0.8 % or more``."""
    return f"this test detects a difference of {percent(mde)} or more"


def percent(share: float) -> str:
    return "n/a" if not np.isfinite(share) else f"{share * 100:.2g} %" if share < 0.1 else f"{share * 100:.0f} %"


def ratio_p(metrics: dict[str, float], baseline: str) -> str:
    """The CRPS ratio to ``baseline``, its DM p-value and MDE: ``1.012 (p 0.034, MDE 0.8 %)``."""
    ratio, p = metrics.get(f"crps_ratio_{baseline}", float("nan")), metrics.get(f"crps_dm_p_{baseline}", float("nan"))
    return f"{ratio:.3f} (p {p:.2g}, MDE {percent(metrics.get(f'crps_dm_mde_{baseline}', float('nan')))})"


def interval_lines(metrics: dict[str, float]) -> list[str]:
    """Per split: the intervals' coverage (calibrated and raw) and CRPS ratio to each baseline (DM p, MDE)."""
    shown = [b for b in COMPARED if any(k.endswith(f"/crps_ratio_{b}") for k in metrics)]
    lines = ["  intervals, calibrated on the val days (their coverage there is in-sample); a CRPS ratio < 1 beats "
             "the baseline; MDE: the smallest difference in CRPS its DM test detects (80 % of the time, at 5 %):", f"  {'split':<6}{'cover 80':>9}{'cover 95':>9}{'raw 80/95':>11}"
             + "".join(f"  {'CRPS / ' + COMPARED[b]:<28}" for b in shown)]
    for split in ("val", "test"):
        if f"{split}/coverage_80" in metrics:
            m = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(split + "/")}
            lines.append(f"  {split:<6}{m['coverage_80']:>9.2f}{m['coverage_95']:>9.2f}{m['raw_coverage_80']:>6.2f}/"
                         f"{m['raw_coverage_95']:.2f}" + "".join(f"  {ratio_p(m, b):<28}" for b in shown))
    return lines


def forecast_text(out, label: str) -> str:
    """What `predict` prints (USD): a line for a next-day model (forecast, last close, move, intervals if
    any), else a small table of the H forecast days."""
    first, intervals = out.iloc[0], "lower_80" in out
    if len(out) == 1:
        text = (f"{first['coin']} close on {first['date']}: {first['forecast_close']:,.2f} USD "
                f"(last close {first['last_close']:,.2f}, {first['forecast_return']:+.2%})")
        if intervals:
            text += (f"; 80 % interval {first['lower_80']:,.2f} to {first['upper_80']:,.2f}, "
                     f"95 % {first['lower_95']:,.2f} to {first['upper_95']:,.2f}")
        return f"{text}; model {label}"
    lines = [f"{first['coin']} from the last close {first['last_close']:,.2f} USD, {len(out)} days ahead; model {label}:",
             f"  {'date':<12}{'h':>3}{'close (USD)':>14}{'move':>9}"
             + (f"{'80 % interval (USD)':>28}{'95 % interval (USD)':>28}" if intervals else "")]
    for _, row in out.iterrows():
        spans = [f"{row[f'lower_{c}']:,.2f} to {row[f'upper_{c}']:,.2f}" for c in (80, 95)] if intervals else []
        lines.append(f"  {row['date']:<12}{row['horizon']:>3}{row['forecast_close']:>14,.2f}"
                     f"{row['forecast_return']:>+9.2%}" + "".join(f"{s:>28}" for s in spans))
    return "\n".join(lines)


def search_text(result, uri: str) -> str:
    """What a search says when it ends (a `SearchResult`): its best trial and the re-trained pick beside
    persistence with the SPA test; or that the study was finished before; or who finishes it."""
    best = f"best {result.objective} {result.best_value:.4f} with {values_text(result.best_values)}" \
        if result.best_value is not None else ""
    if result.done_before:
        return (f"study {result.study_name} is finished ({len(result.trials)} trials; {best}): nothing was run or "
                f"changed; its result is run {result.parent_run_id} (give a larger --n-trials to search on).")
    if result.best is None:
        return (f"this worker's trials are done; the last worker out re-trains the chosen config "
                f"(parent run {result.parent_run_id}).")
    lines = [f"study {result.study_name}: {best}", run_summary(result.parent_run_id, uri, result.best)]
    return "\n".join(lines + ([spa_text(result.spa)] if result.spa is not None else []))


def registered_line(reg) -> str:
    """What a registration did: the version, whether champion and why, its ratio to persistence, what to type."""
    verdict = ("the same as persistence on those days" if abs(reg.ratio - 1) < 5e-5  # a pinned head: exactly 1
               else f"{'better' if reg.beats_persistence else 'worse'} than persistence on those days")
    against = f"its {reg.ratio_split} MAE ratio to persistence is {reg.ratio:.4f} ({verdict})"
    if not reg.version:
        return f"{reg.name}: nothing registered: {reg.reason}."
    alias = "now @champion" if reg.promoted else "not champion"
    head = f"{reg.name} version {reg.version}" if not reg.added else f"registered {reg.name} version {reg.version}"
    reason, advice = reg.reason, ""
    if not reg.promoted and "--force" in reason and reg.run_id:  # the advice once, as the command to type
        coin = reg.name.removeprefix("cryptolstm-").upper()
        reason = reason.replace("; to make it champion anyway, register it with --force", "")
        advice = f"; to make it champion anyway: cryptolstm register --coin {coin} --run-id {reg.run_id} --force"
    return f"{head} ({alias}): {reason}; {against}{advice}."


def evaluation_summary(evaluation) -> str:
    """What `evaluate` prints: the days scored, the model beside persistence on them (USD), any intervals."""
    result, ref = evaluation, evaluation.info
    m = {k.removeprefix("live/"): v for k, v in evaluation.metrics.items()}
    days = "new day(s)" if evaluation.new_days else "day(s), its test days (not new)"
    direction = (f"direction {m['direction_accuracy']:.1%} (95 % interval {m['direction_low']:.1%}.."
                 f"{m['direction_high']:.1%}, p {m['direction_p']:.3g} against a coin flip)"
                 if np.isfinite(m["direction_accuracy"])  # not for a pinned head (median = today's price)
                 else "no direction called (the median forecast is today's price)")
    lines = [f"{ref.label} on {result.n_days} {days}, {result.first}..{result.last}, one day ahead (no refit), USD:",
             f"  {'':<13}{'MAE':>12}{'RMSE':>12}",
             f"  {'model':<13}{m['mae']:>12,.2f}{m['rmse']:>12,.2f}",
             f"  {'persistence':<13}{m['persistence_mae']:>12,.2f}{m['persistence_rmse']:>12,.2f}",
             f"  MAE ratio {m['mae_ratio']:.4f} ({'beats' if m['mae_ratio'] < 1 else 'does not beat'} persistence), "
             f"Diebold-Mariano p {_fmt(m['dm_p'], 3, 'g')}; {detects(m.get('dm_mde', float('nan')))}; {direction}"]
    horizons = sorted(int(k.split("/")[0][1:]) for k in m if k.startswith("h") and k.endswith("/mae_ratio"))
    if horizons:  # a model of several days, scored per horizon on the windows whose days all fall in range
        lines.append("  MAE ratio by horizon: " + ", ".join(f"h{h} {m[f'h{h}/mae_ratio']:.3f}" for h in horizons))
    if "coverage_80" in m:
        ratios = ", ".join(f"{COMPARED[b]} {ratio_p(m, b).rstrip()}" for b in COMPARED if f"crps_ratio_{b}" in m)
        lines.append(f"  intervals: coverage {m['coverage_80']:.2f} (80 %) / {m['coverage_95']:.2f} (95 %); CRPS "
                     f"ratio to {ratios}")
    if evaluation.tags_version:
        lines.append(f"  tagged {ref.name} version {ref.version}: live.mae_ratio {m['mae_ratio']:.4f}, "
                     f"live.days {result.n_days}, live.first_date {result.first}, live.last_date {result.last}")
    elif ref.version and evaluation.new_days:
        lines.append(f"  {ref.name} version {ref.version} keeps its live.* tags: {result.n_days} day(s) are fewer "
                     f"than the {MIN_TAGGED_DAYS} an evaluation needs to replace them (this evaluation's run holds them)")
    return "\n".join(lines)


# --- a backtest's Markdown tables

def _fmt(value: float, digits: int = 3, style: str = "f") -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}{style}}"


def _summary_row(fold: str, rows: pd.DataFrame, baselines: list[str], units: str) -> list[str]:
    ratio = f"{units}/mae_ratio"
    seeds = rows.loc[[bool(SEEDED.match(n)) for n in rows.index]]
    mean, sd = rows.loc[MEAN, ratio], rows.loc[STD, ratio]
    beats = int((seeds[ratio] < 1).sum())
    p_values = seeds[f"{units}/dm_p"]
    several = len(seeds) > 1  # one seed: its values, without a spread that is not there
    return [
        fold, f"{rows['first'].iloc[0]}..{rows['last'].iloc[0]}", str(rows["days"].iloc[0]),
        f"{_fmt(mean)} ± {_fmt(sd)} ({_fmt(seeds[ratio].min())}-{_fmt(seeds[ratio].max())})" if several else _fmt(mean),
        f"{beats}/{len(seeds)} seeds" if several else ("yes" if beats else "no"),
        *[_fmt(rows.loc[b, ratio]) for b in baselines],
        f"{_fmt(p_values.min(), 2, 'g')}-{_fmt(p_values.max(), 2, 'g')}" if several else _fmt(p_values.iloc[0], 2, "g"),
        percent(float(seeds[f"{units}/dm_mde"].median())) if f"{units}/dm_mde" in seeds else "n/a",
        _fmt(rows.loc[MEAN, "direction_accuracy"]),
    ]


def policy_text(retrain: str, every: int, warm_epochs: int | None, warm_patience: int | None = None,
                ensemble: int = 1) -> str:
    """How a backtest's LSTM (an ensemble of ``ensemble`` networks) was fitted fold by fold, in words."""
    patience = f", patience {warm_patience}" if warm_patience else ""
    how = (f"warm-started from the last fit's weights (at most {warm_epochs} epochs{patience})" if retrain == WARM
           else "fitted from scratch")
    what = f"LSTM (a {ensemble}-seed ensemble)" if ensemble > 1 else "LSTM"
    return f"each fold's {what} {how}" + (f", refitted every {every} folds" if every > 1 else "")


def summary_markdown(table: pd.DataFrame, coin: str, units: str = USD, policy: str = "") -> str:
    """A Markdown table per fold and for all days: the LSTM's MAE ratio to persistence (seeds' mean ± sd,
    min-max), each baseline's, DM p, MDE and direction accuracy; ``policy``: `policy_text`, said above it."""
    baselines = [b.name for b in POINT if b.name in set(table["forecaster"])]
    header = ["fold", "test days", "days", "LSTM MAE ratio", "beats persistence",
              *[f"{b} ratio" for b in baselines], "LSTM DM p", "MDE", "LSTM direction"]
    lines = [f"MAE ratio to persistence in {units.upper()} ({coin}{'; ' + policy if policy else ''}); below 1 beats "
             f"persistence; MDE: the smallest difference in MAE the DM test detects (80 % of the time, at 5 %).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fold, rows in table.groupby("fold", sort=False):
        lines.append("| " + " | ".join(_summary_row(fold, rows.set_index("forecaster"), baselines, units)) + " |")
    return "\n".join(lines) + "\n"


def cost_text(epochs: dict[str, int], seconds: float, where: str) -> str:
    """What a backtest cost in words: ``epochs`` (seed label -> epochs over all folds), ``seconds`` on ``where``."""
    each = ", ".join(f"{label.removeprefix(NetworkForecaster.name + '.').replace('seed', 'seed ')}: {n}" for label, n in epochs.items())
    trained = f"the LSTM trained {sum(epochs.values())} epochs ({each})" if epochs else "no LSTM was trained"
    return f"Cost: {trained}; fits and forecasts took {seconds / 60:.1f} min on {where}."


def backtest_text(pooled: float, beaten: str, dm_p: float, mde: float, policy: str) -> str:
    """A backtest's description: its pooled MAE ratio to persistence and how its folds were fitted."""
    return (f"Walk-forward backtest ({policy}): over all test days the LSTM's MAE ratio to persistence is {pooled:.3f} "
            f"(seeds' mean; it {'beats' if pooled < 1 else 'does not beat'} persistence, DM p {dm_p:.2g}; "
            f"{detects(mde)}); it beat persistence in {beaten} folds. Each fold is a child run; the tables are "
            f"backtest/*.md. {PERSISTENCE}")


def spa_text(spa) -> str:
    """One sentence of a search's SPA test (`cryptolstm.snooping.SuperiorAbility`)."""
    verdict = ("so the best trial beats it beyond what trying so many explains" if spa.pvalue < 0.05 else
               "so the best trial's edge is what trying so many configurations explains" if spa.best_ratio < 1 else
               "and no trial did better than it")
    return (f"SPA test over {spa.models} trial(s) on {spa.days} validation days: the best ({spa.best}, loss ratio "
            f"{spa.best_ratio:.4f} to {spa.benchmark}) against {spa.benchmark}: p {spa.pvalue:.3g}, {verdict} "
            f"(stationary bootstrap, mean block {spa.block} days).")


def spa_markdown(spa, objective: str) -> str:
    """The SPA test of a search as a short Markdown note (the parent run's ``spa.md``)."""
    return (f"# Hansen's test of superior predictive ability\n\nObjective {objective}; benchmark {spa.benchmark}; "
            f"every finished trial's per-day validation losses (the days the search selected on).\n\n"
            f"| trials | days | best | best / benchmark | SPA p (consistent) | mean block (days) |\n"
            f"|---|---|---|---|---|---|\n| {spa.models} | {spa.days} | {spa.best} | {spa.best_ratio:.4f} | "
            f"{spa.pvalue:.3g} | {spa.block} |\n\n{spa_text(spa)}\n")


def confidence_markdown(sets: dict, coin: str) -> str:
    """The model confidence sets of a backtest (a `ConfidenceSet` per loss; "" for none) with every MCS p value."""
    lines = []
    for loss, found in sets.items():
        level = f"{(1 - found.size) * 100:.0f} %"
        lines += [f"Model confidence set ({coin}, {LOSS_NAMES.get(loss, loss)}, {level}; stationary bootstrap, mean "
                  f"block {found.block} days, {found.days} days): {', '.join(found.included)} "
                  f"({len(found.included)} of {len(found.pvalues)}: the days cannot tell these from the best).", "",
                  "| forecaster | MCS p | in the set |", "|---|---|---|"]
        lines += [f"| {name} | {p:.3f} | {'yes' if name in found.included else 'no'} |"
                  for name, p in sorted(found.pvalues.items(), key=lambda item: -item[1])]
        lines.append("")
    return "\n".join(lines)


def interval_summary_markdown(table: pd.DataFrame, coin: str) -> str:
    """A Markdown table of the intervals per fold and for all days: coverage and CRPS (percent of the last
    close) of the LSTM (seeds' mean) and each interval baseline, the LSTM's CRPS ratios with DM p and MDE."""
    present = set(table["forecaster"])
    names = [n for n in (MEAN, *INTERVAL_BASELINES) if n in present]
    comparators = [b for b in COMPARED if b in present]
    header = ["fold", "test days", *(f"{n.removesuffix('.mean')} {what}" for n in names
                                     for what in ("cover 80/95", "CRPS %")),
              *(cell for b in comparators for cell in (f"LSTM/{COMPARED[b]} CRPS", "DM p", "MDE"))]
    lines = [f"Prediction intervals ({coin}): coverage (nominal 0.80 / 0.95) and CRPS in percent of the last "
             "close; a CRPS ratio below 1 beats the baseline; MDE: the smallest difference in CRPS the DM test "
             "detects (80 % of the time, at 5 %).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fold, rows in table.groupby("fold", sort=False):
        rows = rows.set_index("forecaster")
        seeds = rows.loc[[bool(SEEDED.match(n)) for n in rows.index]]
        cells = [fold, f"{rows['first'].iloc[0]}..{rows['last'].iloc[0]}"]
        for name in names:  # coverage at 80 % / 95 % and the CRPS in percent
            row = rows.loc[name] if name in rows.index else None
            cells += ["n/a", "n/a"] if row is None else [
                f"{_fmt(row['coverage_80'], 2)} / {_fmt(row['coverage_95'], 2)}", _fmt(100 * row["crps"], 3)]
        for baseline in comparators:
            p = seeds.get(f"crps_dm_p_{baseline}", pd.Series(dtype=float))
            mde = seeds.get(f"crps_dm_mde_{baseline}", pd.Series(dtype=float))
            cells += [_fmt(rows.loc[MEAN].get(f"crps_ratio_{baseline}", np.nan)),
                      f"{_fmt(p.min(), 2, 'g')}-{_fmt(p.max(), 2, 'g')}" if len(p) > 1 else _fmt(p.iloc[0] if len(p) else np.nan, 2, "g"),
                      percent(float(mde.median()) if len(mde) else np.nan)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def horizon_summary_markdown(table: pd.DataFrame, coin: str) -> str:
    """A Markdown table of the MAE ratio to persistence (USD) by horizon, per fold and for all days: the
    LSTM's seeds' mean (± sd), then each baseline's pooled ratio; ``table``: the ``horizons`` `metrics_table`."""
    labels = table["forecaster"].str.rsplit("/", n=1)
    table = table.assign(name=labels.str[0], horizon=labels.str[1])
    horizons = list(dict.fromkeys(table["horizon"]))
    several = (table["name"] == STD).any() and table.loc[table["name"] == STD, "usd/mae_ratio"].gt(0).any()
    lines = [f"MAE ratio to persistence in USD against the horizon ({coin}); below 1 beats persistence "
             "(day t+k forecast from day t; persistence forecasts the close of day t for every k).", "",
             "| fold | forecaster | " + " | ".join(horizons) + " |", "|---|---|" + "---|" * len(horizons)]
    for fold, rows in table.groupby("fold", sort=False):
        names = [MEAN] if fold != "all" else [n for n in dict.fromkeys(rows["name"])
                                                    if not SEEDED.match(n) and n not in (STD, Persistence.name)]
        ratio = rows.set_index(["name", "horizon"])["usd/mae_ratio"]
        for name in names:
            cells = [_fmt(ratio[(name, h)]) if (name, h) in ratio.index else "n/a" for h in horizons]
            if name == MEAN and several:
                cells = [f"{cell} ± {_fmt(ratio[(STD, h)])}" for cell, h in zip(cells, horizons)]
            lines.append(f"| {fold} | {name.removesuffix('.mean')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
