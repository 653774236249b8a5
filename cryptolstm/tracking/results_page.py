"""One self-contained HTML page of an experiment's results (``cryptolstm report --html PATH``): the answer in
one sentence, a leaderboard per set of val and test days, the champion and why, the backtests, and the leading
runs' figures as base64 data URIs (no network, no external file), from `report.gather` plus the figures."""

from __future__ import annotations

import base64
import re
import tempfile
from html import escape
from pathlib import Path

import mlflow
from mlflow.entities import Run

from cryptolstm.models.network import MEAN
from cryptolstm.models.interval_baselines import INTERVAL
from cryptolstm.registry import ALIAS, DISTRIBUTION_METRIC
from cryptolstm.render import COMPARED, percent, policy_text, ratio_p, verdict
from cryptolstm.tracking.report import POOLED, Gathered, config_text, folds_text, groups, kind, num
from cryptolstm.tracking.describe import WHY
from cryptolstm.tracking.runs import ui_url

CRPS = re.compile(r"^test/crps_ratio_(\w+)$")  # test/crps_ratio_garch, _har, _combination...
FIGURES = re.compile(r"^plots/(fan_\w+|reliability_\w+|mae_ratio_by_horizon|live_cumulative_gap)\.png$")
LABELS = {b.name: b.display for b in INTERVAL}  # garch -> GARCH: a baseline's name in prose, as it declares it
ORDER = [b.name for b in INTERVAL]  # the tables' order; a baseline not declared (any more) goes last
STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}table{border-collapse:collapse;"
         "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}th{background:#f3f3f3}"
         ".champion{background:#fff6d5}p.answer{font-size:1.25em;font-weight:bold}figure{display:inline-block;vertical-align:top;width:570px;margin:4px}img{width:100%}")


def _champion_run(g: Gathered) -> tuple[str | None, str]:
    """The champion's source run id and why it is champion: its description's last sentence, else its
    ``promotion`` tag (None, "": no champion)."""
    version = next((v for v in g.versions if str(v.version) == g.champion), None)
    if version is None:
        return None, ""
    said = version.description or ""
    why = said.rsplit(WHY, 1)[1].removesuffix(".") if WHY in said else version.tags.get("promotion", "")
    return version.tags.get("source_run", version.run_id), why


def answer(g: Gathered) -> str:
    """The answer in one sentence: how many configurations beat persistence on their test days (DM test at
    5 %) and how the lead group's best distribution model does against each interval baseline."""
    tested = [r.data.metrics for r in g.runs if "test/mae_ratio" in r.data.metrics and r.info.status == "FINISHED"]
    if not tested:
        return "No run has been scored on test days yet."
    beats = sum(verdict(m["test/mae_ratio"], m.get("test/dm_p", float("nan"))) == "beats" for m in tested)
    said = ("no configuration beats persistence on its test days" if not beats else
            f"{beats} of {len(tested)} configurations {'beats' if beats == 1 else 'beat'} persistence on "
            f"{'its' if beats == 1 else 'their'} test days") + f" ({len(tested)} scored, DM test at 5 %)"
    found, champion = groups(g.runs), _champion_run(g)[0]
    lead = next((rs for rs in found.values() if any(r.info.run_id == champion for r in rs)),  # the champion's group,
                max(found.values(), key=len, default=[]))  # else the one with the most runs
    dist = sorted((r for r in lead if DISTRIBUTION_METRIC in r.data.metrics),
                  key=lambda r: r.data.metrics[DISTRIBUTION_METRIC])
    best, words = (dist[0].data.metrics if dist else {}), {}
    for b in _ordered(_baselines(best) & COMPARED.keys()):  # the baselines the terminal's verdict lines name
        words.setdefault(verdict(best[f"test/crps_ratio_{b}"], best.get(f"test/crps_dm_p_{b}", float("nan"))), []).append(LABELS[b])
    if words:  # "ties GARCH and HAR, loses to empirical"
        against = ", ".join(f"{v} {_and(names)}" for v, names in words.items())
        said += f"; the best distribution model ({dist[0].info.run_id[:8]}, by validation CRPS) {against} on CRPS"
    return said[0].upper() + said[1:] + "."


def _baselines(metrics: dict[str, float]) -> set[str]:
    """The baselines a run's CRPS was compared with on its test days (``garch`` of ``test/crps_ratio_garch``)."""
    return {match.group(1) for key in metrics if (match := CRPS.match(key))}


def _ordered(baselines: set[str]) -> list[str]:
    return sorted(baselines, key=lambda b: (ORDER.index(b) if b in ORDER else len(ORDER), b))


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _link(run: Run) -> str:
    return _run_link(run.info.experiment_id, run.info.run_id)


def _run_link(experiment_id: str, run_id: str) -> str:
    """The run's id, short, linked to its page in `mlflow ui` (the only addresses on the page)."""
    return f'<a href="{escape(ui_url(experiment_id, run_id))}">{escape(run_id[:8])}</a>'


def _table(head: list[str], rows: list[str]) -> str:
    """A table: a header row of the texts ``head``, then ``rows`` (`_tr`)."""
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>\n" + "\n".join(rows) + "</table>"


def _tr(cells: list[str], css: str = "") -> str:
    return f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _mcs(backtest: Run | None) -> str:
    """Whether the LSTM is in each model confidence set its backtest logged (``mcs.<loss>.included``)."""
    if backtest is None:
        return "-"
    sets = {k.split(".")[1]: v.split(",") for k, v in backtest.data.tags.items() if k.startswith("mcs.") and k.endswith(".included")}
    return ", ".join(f"{loss}: {'in' if MEAN in names else 'out'}" for loss, names in sorted(sets.items())) or "-"


def _row(run: Run, baselines: list[str], g: Gathered, champion: str | None) -> str:
    """A leaderboard row: ratios to persistence, DM p and MDE, CRPS ratios, MCS, configuration."""
    m = run.data.metrics
    test = {k.removeprefix("test/"): v for k, v in m.items() if k.startswith("test/")}
    mark = f" <b>@{ALIAS}</b>" if run.info.run_id == champion else ""
    cells = [f"{_link(run)} {escape(run.info.run_name or '')}{mark}", escape(kind(run)), num(m.get("val/mae_ratio")),
             num(m.get("test/mae_ratio")), num(m.get("test/dm_p"), 2, "g"),
             escape(percent(m.get("test/dm_mde", float("nan")))),
             *(escape(ratio_p(test, b)) if f"crps_ratio_{b}" in test else "-" for b in baselines),
             escape(_mcs(g.backtested.get(run.info.run_id))), escape(config_text(run))]
    return _tr(cells, ' class="champion"' if mark else "")


def _leaderboard(g: Gathered, top: int) -> list[str]:
    """One table per set of validation and test days, ranked by validation MAE ratio within it."""
    champion = _champion_run(g)[0]
    out = ["<h2>Leaderboard: ranked by validation MAE ratio to persistence, within the days each group was scored on</h2>"]
    for (val, test), runs in groups(g.runs).items():
        baselines = _ordered(set().union(*(_baselines(r.data.metrics) for r in runs)))
        head = ["run", "kind", "val ratio", "test ratio", "test DM p", "detectable effect",
                *(f"CRPS ratio {LABELS.get(b, b)} (p, MDE)" for b in baselines), "in the MCS (backtest)", "configuration"]
        out += [f"<h3>Validated on {escape(val)}, tested on {escape(test)} ({len(runs)} run{'s' if len(runs) > 1 else ''})</h3>",
                _table(head, [_row(r, baselines, g, champion) for r in runs[:top]])]
    return out if len(out) > 1 else out + ["<p>No finished run has a validation MAE ratio yet.</p>"]


def _champion(g: Gathered) -> list[str]:
    """The champion version, its run and why it was promoted (its ``promotion`` tag)."""
    run_id, why = _champion_run(g)
    if run_id is None:
        return [f"<h2>Champion</h2><p>No version of {escape(g.name)} holds the alias @{ALIAS}.</p>"]
    return [f"<h2>Champion</h2><p>Version {escape(g.champion)} of {escape(g.name)} (@{ALIAS}), from run "
            f"{_run_link(g.experiment_id, run_id)}: {escape(why or 'no reason recorded')}.</p>"]


def _backtests(g: Gathered) -> list[str]:
    """Every finished backtest: its folds, pooled ratios, how its folds were fitted, its MCS."""
    if not g.backtests:
        return ["<h2>Walk-forward backtests</h2><p>None yet.</p>"]
    rows = []
    for run in g.backtests:
        m, p, t = run.data.metrics, run.data.params, run.data.tags
        prefix = f"{MEAN}/crps_ratio_"
        crps = ", ".join(f"{LABELS.get(b, b)} {m[prefix + b]:.3f}"
                         for b in _ordered({k.removeprefix(prefix) for k in m if k.startswith(prefix)}))
        policy = policy_text(p.get("backtest.retrain", ""), int(p.get("backtest.retrain_every", 1)),
                             p.get("backtest.warm_epochs"), p.get("backtest.warm_patience"), int(p.get("config.ensemble", 1)))
        sets = "; ".join(f"{k.split('.')[1]}: {v.replace(',', ', ')}" for k, v in sorted(t.items())
                         if k.startswith("mcs.") and k.endswith(".included"))
        cells = [_link(run), escape(folds_text(run)), num(m.get(POOLED), 3), escape(crps or "-"),
                 escape(t.get("backtest.folds_beating_persistence", "-")), escape(policy), escape(sets or "-")]
        rows.append(_tr(cells))
    head = ["run", "folds", "pooled MAE ratio", "pooled CRPS ratios", "folds beating persistence", "policy", "MCS"]
    return ["<h2>Walk-forward backtests</h2>", _table(head, rows)]


def _figures(g: Gathered) -> list[str]:
    """The fan, reliability, per-horizon and live-gap PNGs, each as a data URI, of the leading runs: each group's
    first, the champion's, and the latest evaluation of the champion."""
    by_id, champion = {r.info.run_id: r for r in g.runs}, _champion_run(g)[0]
    lead = [rs[0] for rs in groups(g.runs).values()] + ([by_id[champion]] if champion in by_id else [])
    lead += [r for r in g.runs if champion and r.data.tags.get("evaluated.source_run") == champion][:1]
    out = ["<h2>Figures of the leading runs</h2>"]
    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory() as folder:
        for run in {r.info.run_id: r for r in lead}.values():  # each run once
            for name in [a.path for a in client.list_artifacts(run.info.run_id, "plots") if FIGURES.match(a.path)]:
                data = Path(client.download_artifacts(run.info.run_id, name, folder)).read_bytes()
                out.append(f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
                           f'{base64.b64encode(data).decode()}"><figcaption>{_link(run)} {escape(name)}</figcaption></figure>')
    return out if len(out) > 1 else out + ["<p>No fan, reliability, horizon or live-gap figure was logged.</p>"]


def results_page(g: Gathered, top: int = 10) -> str:
    """The whole page (see module docstring) of the gathered experiment ``g``, ``top`` runs per group."""
    body = [f"<h1>Experiment {escape(g.name)}</h1>", f'<p class="answer">{escape(answer(g))}</p>',
            "<p>A ratio below 1 beats the baseline on the same days; DM p: the Diebold-Mariano test's p value; the "
            "detectable effect (MDE): the smallest difference that test detects 80 % of the time at 5 %.</p>",
            *_leaderboard(g, top), *_champion(g), *_backtests(g), *_figures(g)]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(g.name)}: results</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
