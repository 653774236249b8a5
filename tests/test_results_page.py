"""The HTML results page (`cryptolstm report --html PATH`, `cryptolstm.tracking.results_page`): made
from a real MLflow store (conftest's registered tiny champion, a real evaluation of it, and runs
logged under the real metric, param and tag names), opened in a real headless Chromium. The browser
tests are skipped, saying why, only where no Chromium binary is installed (.ci/run installs Debian's)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm import plots
from cryptolstm.cli import app
from cryptolstm.evaluate import evaluate
from cryptolstm.models.interval_baselines import INTERVAL
from cryptolstm.tracking.registry import MlflowModels
from cryptolstm.tracking.report import gather
from cryptolstm.tracking.results_page import answer, results_page
from tests.conftest import building_store, work_on_copy
from tests.test_mlproject import launch_here  # noqa: F401 - the fixture: `mlflow run` of an entry point, in-process

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
RUN_PAGE = re.compile(r"^http://127\.0\.0\.1:5000/#/experiments/\d+/runs/[0-9a-f]{32}$")
# Written into the DOM once every image has loaded or failed: each image's natural width (0: broken).
PROBE = ('<script>window.addEventListener("load", () => { for (const img of document.images) '
         'img.setAttribute("data-width", img.naturalWidth); document.body.setAttribute("data-probed", "yes"); });</script>')
runner = CliRunner()


def _log(experiment_id: str, name: str, tags: dict, params: dict, metrics: dict, figure: str | None = None) -> str:
    """A finished run logged by hand under the names the harness logs; its id."""
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        if figure:  # the real figure function, as a horizon run logs it
            h = np.arange(1, 4)
            mlflow.log_figure(plots.ratio_by_horizon(h, np.array([[0.99, 1.0, 1.01]]), {}, "BTC, one run"), figure)
    return run.info.run_id


@pytest.fixture(scope="module")
def results(tmp_path_factory, registered):
    """A store made once from conftest's `registered` one (champion version 1, a Gaussian head):
    the champion evaluated on its 61 new days (for real), a point run scored on the same days
    (``twin``), a distribution run scored on other days (``other``, with a combination baseline and a
    per-horizon figure), and a backtest of the champion's run with its model confidence sets."""
    root = tmp_path_factory.mktemp("results-page")
    with building_store(root, registered.root) as uri:
        evaluation = evaluate(MlflowModels(), "models:/cryptolstm-btc/1", registered.data).run_id
        champion = MlflowClient().get_run(registered.run_id)
        experiment_id, days = champion.info.experiment_id, {k: v for k, v in champion.data.tags.items() if k.startswith("split.")}
        base = {"cryptolstm.entry": "train", "coin": "BTC", "protocol": "honest"}
        twin = _log(experiment_id, "twin", base | days, {"config.window_len": "7", "config.neurons": "8"},
                    {"val/mae_ratio": 0.9, "test/mae_ratio": 1.02, "test/dm_p": 0.4, "test/dm_mde": 0.03})
        other_days = {"split.val.first": "2021-03-01", "split.val.last": "2021-05-31", "split.test.first": "2021-06-01",
                      "split.test.last": "2021-08-31"}
        scores = {"val/mae_ratio": 1.0, "test/mae_ratio": 0.9, "test/dm_p": 0.001, "test/dm_mde": 0.02,
                  "val/crps_ratio_garch": 0.97, "test/crps_ratio_garch": 0.98, "test/crps_dm_p_garch": 0.5,
                  "test/crps_dm_mde_garch": 0.04, "test/crps_ratio_combination": 1.03, "test/crps_dm_p_combination": 0.01}
        other = _log(experiment_id, "other <days>", base | other_days, {"config.window_len": "5"}, scores,
                     "plots/mae_ratio_by_horizon.png")
        backtest = _log(experiment_id, "backtest", {
            "cryptolstm.entry": "backtest", "backtest.source_run": registered.run_id, "backtest.source": registered.run_id,
            "mcs.mae.included": "persistence,lstm.mean", "mcs.crps.included": "garch,har",
            "backtest.folds_beating_persistence": "1/2"}, {
            "backtest.folds": "2", "backtest.fold_months": "1", "backtest.start": "2021-10-01", "backtest.end": "2021-11-30",
            "backtest.seeds": "1", "backtest.retrain": "warm", "backtest.retrain_every": "1", "backtest.warm_epochs": "3",
            "backtest.warm_patience": "3", "config.ensemble": "1"},
            {"lstm.mean/usd/mae_ratio": 1.004, "lstm.mean/crps_ratio_garch": 1.011, "lstm.mean/crps_ratio_combination": 0.993})
    return SimpleNamespace(root=root, uri=uri, champion=registered.run_id, twin=twin, other=other, backtest=backtest,
                           evaluation=evaluation)


@pytest.fixture
def store(results, monkeypatch):
    """`results`' store as this test's tracking store (read only)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", results.uri)
    mlflow.set_tracking_uri(results.uri)
    return results


class Page(HTMLParser):
    """What a page holds: its answer, group headings, each leaderboard row's run (under its heading),
    every link and image, and every attribute or text that names an http(s) address."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.answer, self.headings, self.rows, self.links, self.images, self.addresses = "", [], [], [], [], []
        self._in, self._row_done = None, True
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in = "answer" if attrs.get("class") == "answer" else tag
        self.addresses += [(tag, k, v) for k, v in attrs.items() if v and re.search(r"https?:|//", v) and k != "src"]
        self.addresses += [(tag, k, v[:40]) for k, v in attrs.items() if k == "src" and not v.startswith("data:image/png;base64,")]
        if tag == "tr":
            self._row_done = False
        elif tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
            if not self._row_done and self.headings:
                self.rows.append((self.headings[-1], attrs["href"].rsplit("/", 1)[-1]))
                self._row_done = True
        elif tag == "img":
            self.images.append(attrs)

    def handle_data(self, data):
        if self._in == "answer":
            self.answer += data
        elif self._in == "h3":
            self.headings.append(data)
        if re.search(r"https?://|url\(", data):
            self.addresses.append(("text", "", data))

    def handle_endtag(self, tag):
        self._in = None


def _browse(page: Path, *flags: str) -> str:
    """Headless Chromium on ``page``: what it prints (``--dump-dom``: the DOM after the load event)."""
    if CHROMIUM is None:
        pytest.skip("no Chromium binary on PATH (chromium, chromium-browser or google-chrome); .ci/run installs "
                    "Debian's chromium")
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={page.parent / 'profile'}",
                           *flags, page.as_uri()], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow  # the store trains (conftest's registered model) and Chromium is a process
def test_the_page_opens_in_a_browser_with_the_answer_groups_rows_and_every_figure_loaded(store, tmp_path):
    gathered = gather("cryptolstm-btc", store.uri)
    text = results_page(gathered)
    (tmp_path / "page.html").write_text(text.replace("</body>", PROBE + "</body>"))
    dom = _browse(tmp_path / "page.html", "--dump-dom")
    seen = Page(dom)
    assert 'data-probed="yes"' in dom, "the load event never came"
    # the answer: 1 of 3 tested runs beats persistence (`other`: ratio 0.9, p 0.001); the best distribution
    # model of the champion's days is the champion, whose verdicts come from its logged DM p-values
    m = MlflowClient().get_run(store.champion).data.metrics
    said = [f"{'ties' if m[f'test/crps_dm_p_{b.name}'] >= 0.05 else 'beats' if m[f'test/crps_ratio_{b.name}'] < 1 else 'loses to'}"
            f" {b.display}" for b in INTERVAL if b.compared and f"test/crps_ratio_{b.name}" in m]
    assert seen.answer == answer(gathered)
    assert seen.answer.startswith("1 of 3 configurations beats persistence on its test days (3 scored, DM test at 5 %); "
                                  f"the best distribution model ({store.champion[:8]}, by validation CRPS)")
    assert said and seen.answer.endswith(" on CRPS.")
    for verdict in ("ties", "beats", "loses to"):  # "ties GARCH, HAR and GARCH+HAR, loses to empirical"
        named = [s.removeprefix(verdict + " ") for s in said if s.startswith(verdict + " ")]
        assert not named or f"{verdict} {named[0]}" in seen.answer and all(n in seen.answer for n in named)
    # the leaderboard: the champion's days hold it and the twin (lower validation ratio first), the other days the other run
    tags = MlflowClient().get_run(store.champion).data.tags
    champion_days = f"Validated on {tags['split.val.first']}..{tags['split.val.last']}, tested on " \
                    f"{tags['split.test.first']}..{tags['split.test.last']} (2 runs)"
    other_days = "Validated on 2021-03-01..2021-05-31, tested on 2021-06-01..2021-08-31 (1 run)"
    assert seen.headings == [champion_days, other_days] or seen.headings == [other_days, champion_days]
    assert {(h, run) for h, run in seen.rows} >= {(champion_days, store.twin), (champion_days, store.champion),
                                                   (other_days, store.other)}
    assert [run for h, run in seen.rows if h == champion_days][:2] == [store.twin, store.champion]
    assert all(RUN_PAGE.match(link) for link in seen.links)
    # every figure of the leading runs is there and loaded: fan and reliability (the champion), the live
    # gap (its evaluation), the MAE ratio by horizon (the other days' run)
    names = {img["alt"] for img in seen.images}
    assert {"plots/fan_test.png", "plots/reliability_test.png", "plots/live_cumulative_gap.png",
            "plots/mae_ratio_by_horizon.png"} <= names
    assert [int(img["data-width"]) > 100 for img in seen.images] == [True] * len(seen.images)
    shot = tmp_path / "shot.png"
    _browse(tmp_path / "page.html", f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@pytest.mark.slow  # the store trains (conftest's registered model)
def test_the_page_names_no_address_but_the_run_pages_and_says_what_the_store_says(store):
    text = results_page(gather("cryptolstm-btc", store.uri))
    seen = Page(text)
    assert seen.addresses and all(tag == "a" and key == "href" and RUN_PAGE.match(value)
                                  for tag, key, value in seen.addresses), seen.addresses
    assert len(re.findall(r"https?://", text)) == len(seen.addresses)
    assert "<link" not in text and "<script" not in text and "@import" not in text
    # escaped: a run named "other <days>" is text, not a tag
    assert "other &lt;days&gt;" in text and "<days>" not in text
    # the champion: its row marked, its version and the reason its promotion recorded
    version = MlflowClient().get_model_version("cryptolstm-btc", "1")
    row = next(r for r in text.split("<tr") if store.champion in r)
    assert row.startswith(' class="champion"') and "@champion" in row
    assert "Version 1 of cryptolstm-btc (@champion)" in text and escape(version.tags["promotion"]) in text
    # the CRPS ratio to each logged baseline, the combination's included; the detectable effect
    other = next(r for r in text.split("<tr") if store.other in r)
    assert "0.980 (p 0.5, MDE 4 %)" in other and "1.030 (p 0.01, MDE n/a)" in other and "<td>2 %</td>" in other
    assert "CRPS ratio GARCH+HAR (p, MDE)" in text or "CRPS ratio combination (p, MDE)" in text
    # the champion's backtest: the LSTM is in the MAE confidence set, not in the CRPS one; its pooled ratios and policy
    assert "crps: out, mae: in" in row
    backtest = next(r for r in text.split("<tr") if store.backtest in r)
    assert "2 x 1m, 2021-10-01..2021-11-30, 1 seeds" in backtest and "<td>1.004</td>" in backtest
    assert "warm-started from the last fit&#x27;s weights (at most 3 epochs, patience 3)" in backtest
    assert "crps: garch, har; mae: persistence, lstm.mean" in backtest and "GARCH 1.011" in backtest


@pytest.mark.slow  # the store trains (conftest's registered model)
def test_report_html_writes_the_page_beside_the_markdown(store, tmp_path):
    page, markdown = tmp_path / "results.html", tmp_path / "report.md"
    done = runner.invoke(app, ["report", "--experiment", "cryptolstm-btc", "--output", str(markdown), "--html", str(page)])
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [f"report written to {markdown}", f"results page written to {page}"]
    assert store.twin in page.read_text() and f"/runs/{store.twin})" in markdown.read_text()
    groups = markdown.read_text().split("\n### Validated on ")[1:]  # the Markdown ranks within days too
    assert len(groups) == 2 and [store.twin in g for g in groups].count(True) == 1
    assert [store.other in g for g in groups].count(True) == 1 and not any(store.twin in g and store.other in g
                                                                            for g in groups)
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.slow  # the store trains (conftest's registered model); MLflow's run asks git for the commit
def test_mlflow_run_report_logs_the_page_on_its_run(results, tmp_path, monkeypatch, launch_here):  # noqa: F811
    work_on_copy(results.root, tmp_path, monkeypatch)
    client, record, _ = launch_here("report", {"experiment": "cryptolstm-btc", "html": str(tmp_path / "p.html")},
                                       experiment="cryptolstm-btc")
    assert record.info.run_name == "report-cryptolstm-btc"
    assert {a.path for a in client.list_artifacts(record.info.run_id)} == {"report.md", "results.html"}
    logged = Path(mlflow.artifacts.download_artifacts(run_id=record.info.run_id, artifact_path="results.html"))
    assert logged.read_text() == (tmp_path / "p.html").read_text()


@pytest.mark.parametrize("where, why", [("missing/p.html", "there is no directory"), (".", "it is a directory")])
def test_an_unwritable_page_is_one_sentence_and_no_file(tracking, tmp_path, where, why):
    page, markdown = tmp_path / where, tmp_path / "r.md"
    done = runner.invoke(app, ["report", "--experiment", "Default", "--output", str(markdown), "--html", str(page)])
    said = why if why.startswith("it") else f"{why} {page.parent}"
    assert done.exit_code == 2 and done.stderr == f"error: cannot write {page}: {said}.\n"
    assert not markdown.exists() and not (tmp_path / "missing").exists()


def test_an_experiment_that_does_not_exist_is_one_sentence_and_no_page(tracking, tmp_path):
    done = runner.invoke(app, ["report", "--experiment", "nope", "--html", str(tmp_path / "p.html")])
    assert done.exit_code == 2 and len(done.stderr.splitlines()) == 1
    assert "there is no MLflow experiment named 'nope'" in done.stderr and not (tmp_path / "p.html").exists()
