"""A registered model after registration, in MLflow: scored on new days (`cryptolstm evaluate`),
refitted (`cryptolstm refit`) and reported, through `cryptolstm.tracking.registry.MlflowModels`.
The rules themselves are tested without MLflow in test_lifecycle.py; here, what the store records
and the model as served (its ONNX network through the pyfunc). The model is conftest's
`registered` champion (read-only; `champion_store`, a copy, where a test writes)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.data import load_market
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.evaluate import evaluate, score_days
from cryptolstm.metrics import direction
from cryptolstm.refit import refit
from cryptolstm.registry import next_day
from cryptolstm.render import evaluation_summary, registered_line
from cryptolstm.tracking import registry, tracked_train
from cryptolstm.tracking.registry import MlflowModels
from cryptolstm.tracking.report import experiment_report
from cryptolstm.windowing import input_rows
from tests.conftest import CUT, MERGE, all_runs, cut_data, tiny_config

pytestmark = pytest.mark.slow

NEW = pd.date_range("2021-10-01", "2021-11-30").strftime("%Y-%m-%d").tolist()  # the 61 days new to it (after CUT)
V1 = "models:/cryptolstm-btc/1"


@pytest.fixture
def champion(registered, monkeypatch):
    """conftest's `registered` store as the tracking store, to read from only: version 1 of
    cryptolstm-btc, a Gaussian-head model (so it has intervals) trained on the days `MERGE`..`CUT`."""
    assert (registered.cfg.head, registered.cfg.merge_date, registered.cfg.end_date) == ("gaussian", MERGE, CUT)
    before = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.uri)
    mlflow.set_tracking_uri(registered.uri)
    yield registered
    mlflow.set_tracking_uri(before)


def _csv(run_id: str) -> pd.DataFrame:
    return pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="live/forecasts.csv"))


def _closes(data) -> pd.Series:
    closes = load_market(data, MERGE).frame["BTC_close"]
    return closes.set_axis(closes.index.strftime("%Y-%m-%d"))


def test_evaluate_scores_exactly_the_days_after_the_cut_and_records_them(champion_store):
    done = evaluate(MlflowModels(), V1, champion_store.data)
    assert (done.first, done.last, done.n_days, done.new_days) == (NEW[0], NEW[-1], 61, True)
    said = evaluation_summary(done)
    assert said.startswith(f"cryptolstm-btc version 1 on 61 new day(s), {NEW[0]}..{NEW[-1]}") and "tagged" in said
    days = _csv(done.run_id)
    assert days["date"].tolist() == NEW
    # each row's actual close and persistence are the data's, not the model's
    closes = _closes(champion_store.data)
    assert np.allclose(days["actual"], closes.loc[NEW]) and np.allclose(days["persistence"], closes.shift(1).loc[NEW])

    client = MlflowClient()
    run = client.get_run(done.run_id)
    m = run.data.metrics
    error, naive = days["forecast"] - days["actual"], days["persistence"] - days["actual"]
    by_hand = {"live/mae": error.abs().mean(), "live/persistence_mae": naive.abs().mean(),
               "live/rmse": np.sqrt((error ** 2).mean()), "live/persistence_rmse": np.sqrt((naive ** 2).mean()),
               "live/coverage_80": days["inside_80"].mean(), "live/coverage_95": days["inside_95"].mean()}
    by_hand["live/mae_ratio"] = by_hand["live/mae"] / by_hand["live/persistence_mae"]
    by_hand["live/direction_accuracy"] = direction(days["actual"] - days["persistence"],
                                                   days["forecast"] - days["persistence"])["direction_accuracy"]
    for key, value in by_hand.items():
        assert m[key] == pytest.approx(value, rel=1e-9), key
        assert done.metrics[key] == pytest.approx(m[key], rel=1e-12), key
    assert m["live/days"] == 61 and 0 <= m["live/dm_p"] <= 1 and m["live/crps_ratio_garch"] > 0
    assert days["cumulative_gap"].iloc[-1] == pytest.approx((error.abs() - naive.abs()).sum())

    # one finished run in the coin's experiment, linked to the version it scored
    assert run.info.status == "FINISHED" and run.info.run_name == f"live {m['live/mae_ratio']:.3f} · evaluate-btc-v1"
    assert client.get_experiment(run.info.experiment_id).name == "cryptolstm-btc"
    tags = run.data.tags
    assert (tags["evaluated.model"], tags["evaluated.version"], tags["evaluated.source_run"]) == \
        ("cryptolstm-btc", "1", champion_store.run_id)
    assert (tags["live.first_date"], tags["live.last_date"], tags["live.days"]) == (NEW[0], NEW[-1], "61")
    assert run.data.params["evaluate.model"] == V1 and run.data.params["evaluate.since"] == NEW[0]
    note = tags["mlflow.note.content"]
    assert champion_store.run_id in note and "#/models/cryptolstm-btc/versions/1" in note
    assert {f.path for f in client.list_artifacts(done.run_id, "plots")} == {"plots/live_cumulative_gap.png"}
    version = client.get_model_version("cryptolstm-btc", "1")
    assert (version.tags["live.first_date"], version.tags["live.last_date"], version.tags["live.days"]) == \
        (NEW[0], NEW[-1], "61")
    assert float(version.tags["live.mae_ratio"]) == pytest.approx(m["live/mae_ratio"], rel=1e-5)
    assert float(version.tags["live.dm_p"]) == pytest.approx(m["live/dm_p"], rel=1e-5)
    assert version.tags["live.run"] == done.run_id
    assert version.description.startswith("BTC LSTM, honest protocol") and "On 61 new days after its training" in \
        version.description
    assert f"{m['live/mae_ratio']:.4f}" in version.description and done.run_id in version.description
    linked = client.get_logged_model(done.info.extra["model_id"])
    assert {metric.key: metric.value for metric in linked.metrics}["live/mae_ratio"] == pytest.approx(m["live/mae_ratio"])
    report = experiment_report("cryptolstm-btc", tracking_uri=champion_store.uri)
    assert "## Registered model `cryptolstm-btc`" in report
    assert f"| 1 | @champion | {float(version.tags['val/mae_ratio']):.4f}" in report
    assert f"61, {NEW[0]}..{NEW[-1]} | {m['live/mae_ratio']:.4f}" in report


def test_evaluate_on_the_test_days_gives_the_test_metrics_of_training(champion_store):
    """The model as served scores its test days as training did; its last validation day is refused
    and leaves no run, the day after it (its first test day) is scored and recorded as one run."""
    client = MlflowClient()
    tags, trained = client.get_run(champion_store.run_id).data.tags, client.get_run(champion_store.run_id).data.metrics
    before = len(all_runs(client))
    with pytest.raises(ConfigError, match=f"^{tags['split.val.last']} is not a new day for cryptolstm-btc version 1"):
        evaluate(MlflowModels(), V1, champion_store.data, since=tags["split.val.last"])
    assert len(all_runs(client)) == before
    assert tags["split.test.first"] == next_day(tags["split.val.last"])
    done = evaluate(MlflowModels(), V1, champion_store.data, since=tags["split.test.first"],
                    until=tags["split.test.last"])
    assert done.n_days == int(tags["split.test.n"]) and not done.new_days
    assert len(all_runs(client)) == before + 1
    for key in ("mae", "persistence_mae", "rmse", "direction_accuracy", "coverage_80", "coverage_95", "crps"):
        assert done.metrics[f"live/{key}"] == pytest.approx(trained[f"test/{key}"], rel=1e-5), key
    said = evaluation_summary(done)
    assert "day(s), its test days (not new)" in said and "tagged" not in said
    # its test days again are not new days: they do not become the version's live.* tags
    assert not [k for k in client.get_model_version("cryptolstm-btc", "1").tags if k.startswith("live.")]


def test_a_forecast_uses_no_data_of_the_day_it_forecasts(champion):
    """Changing every price from day D on leaves the forecast of D as it was, and changes D+1's."""
    model = registry.load_pyfunc(V1)
    frame = load_market(champion.data, "2021-10-01", "2021-10-31").frame
    changed = frame.copy()
    changed.loc["2021-10-20":] *= 1.5
    first, second = (model.predict(input_rows(f, champion.cfg), params={"every_day": True}).set_index("date")
                     for f in (frame, changed))
    assert first.loc["2021-10-20", "forecast_close"] == second.loc["2021-10-20", "forecast_close"]
    assert first.loc["2021-10-20", "upper_95"] == second.loc["2021-10-20", "upper_95"]
    assert first.loc["2021-10-21", "forecast_close"] != pytest.approx(second.loc["2021-10-21", "forecast_close"], rel=1e-6)
    assert first.index.max() == "2021-11-01"  # the last window forecasts the day after the rows


def test_every_window_at_once_equals_one_window_at_a_time(champion):
    model = registry.load_pyfunc(V1)
    w = champion.cfg.window_len
    rows = input_rows(load_market(champion.data, "2021-10-01", "2021-10-20").frame, champion.cfg)
    batch = model.predict(rows, params={"every_day": True})
    assert len(batch) == len(rows) - w + 1 and batch["origin"].tolist() == rows["date"].iloc[w - 1:].tolist()
    for end in (w, len(rows)):
        one = model.predict(rows.iloc[end - w:end]).iloc[0]
        same = batch[batch["origin"] == rows["date"].iloc[end - 1]].iloc[0]
        assert same["date"] == one["date"] == next_day(rows["date"].iloc[end - 1])
        for column in ("forecast_close", "last_close", "lower_80", "upper_95"):
            assert same[column] == pytest.approx(one[column], rel=1e-6), column  # float32 batches


def test_a_model_of_several_days_by_run_uri_is_scored_every_day_and_per_horizon(champion_store):
    cfg = tiny_config(champion_store.data, merge_date=MERGE, end_date=CUT, horizon=3, seed=5)
    run_id, _ = tracked_train(cfg, load_market(champion_store.data, cfg.merge_date, cfg.end_date))
    done = evaluate(MlflowModels(), f"runs:/{run_id}/model", champion_store.data, until="2021-10-31")
    m = done.metrics
    assert (done.first, done.last, done.n_days) == (NEW[0], "2021-10-31", 31)
    assert _csv(done.run_id)["date"].tolist() == NEW[:31]
    assert {f"live/h{h}/mae_ratio" for h in (1, 2, 3)} <= set(m)
    assert f"MAE ratio by horizon: h1 {m['live/h1/mae_ratio']:.3f}, h2 " in evaluation_summary(done)
    assert m["live/h1/mae"] != m["live/mae"]  # h1 over the 29 windows whose 3 days all fall in October
    tags = MlflowClient().get_run(done.run_id).data.tags
    assert tags["evaluated.version"] == "" and tags["mlflow.runName"] == \
        f"live {m['live/mae_ratio']:.3f} · evaluate-btc-{run_id[:8]}"


@pytest.mark.parametrize("args, words", [
    (["--model", "models:/cryptolstm-btc/99"], "there is no model models:/cryptolstm-btc/99"),
    (["--model", "models:/nothing@champion"], "there is no model models:/nothing@champion"),
    (["--model", "cryptolstm-btc"], "model must be a model URI"),
    (["--model", V1, "--since", "2021-11-01", "--until", "2021-10-01"], "is after --until"),
    (["--model", V1, "--since", "2021-13-01"], "since 2021-13-01 is not a day of the calendar (there is no month 13"),
    (["--model", V1, "--since", "2021-02-01"], "2021-02-01 is not a new day for cryptolstm-btc version 1"),
    (["--model", V1, "CUT"], "no new day to score: the data in"),
])
def test_bad_input_is_one_sentence_and_leaves_no_run(champion_store, synthetic_data, tmp_path, args, words):
    data = str(cut_data(synthetic_data, tmp_path / "cut", CUT)) if "CUT" in args else champion_store.data
    args = [a for a in args if a != "CUT"]
    before = len(all_runs(MlflowClient()))
    done = CliRunner().invoke(app, ["evaluate", *args, "--data-dir", data, "--quiet"])
    assert done.exit_code == 2, done.output
    message = done.output.strip().splitlines()[-1]
    assert message.startswith("error: ") and words in message and "Traceback" not in done.output
    assert len(all_runs(MlflowClient())) == before
    assert not [r for r in all_runs(MlflowClient()) if r.info.status == "RUNNING"]


def test_refit_registers_a_new_version_and_moves_the_alias_only_if_not_worse(champion_store, synthetic_data, tmp_path):
    client = MlflowClient()
    # refused before training, leaving no run: data with no new day, and another registered model
    runs = len(all_runs(client))
    with pytest.raises(DataError, match="there is no new day to refit on"):
        refit(MlflowModels(), V1, str(cut_data(synthetic_data, tmp_path / "cut", CUT)))
    mlflow.register_model(client.get_model_version("cryptolstm-btc", "1").source, "someone-elses")
    with pytest.raises(ConfigError, match="someone-elses version 1 is not one of cryptolstm's registered models"):
        refit(MlflowModels(), "models:/someone-elses/1", champion_store.data)
    assert len(all_runs(client)) == runs

    champion_before = str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version)
    done = refit(MlflowModels(), "models:/cryptolstm-btc@champion", champion_store.data, end_date="2021-11-15")
    run = client.get_run(done.run_id)
    tags, version = run.data.tags, client.get_model_version("cryptolstm-btc", done.registration.version)
    # the same configuration, on every day to end_date, the most recent val_frac of them validating
    assert run.info.run_name.endswith(" · refit-gaussian-to2021-11-15-1x4-w7-s7")
    assert tags["refit.of_version"] == champion_before
    assert tags["data.last_date"] == "2021-11-15" and tags["split.val.last"] == "2021-11-15"
    assert "test/mae" not in run.data.metrics and "split.test.first" not in tags
    days = load_market(champion_store.data, MERGE, "2021-11-15").frame.index  # validation: the last val_frac
    assert tags["split.val.first"] == days[int((1 - champion_store.cfg.val_frac) * len(days))].date().isoformat()
    for name in ("layers", "neurons", "head", "window_len", "seed", "merge_date", "features", "cell", "ensemble"):
        assert run.data.params[f"config.{name}"] == str(getattr(champion_store.cfg, name)), name
    assert run.data.params["config.end_date"] == "2021-11-15" and tags["init.from"] == "scratch"
    assert (version.tags["refit.of_version"], version.tags["source_run"]) == (champion_before, done.run_id)
    assert version.tags["refit.key"] == tags["refit.key"]

    # the common evaluation: the refit's validation tail, all of it new to the champion (trained to CUT),
    # each model scored here as its registered version forecasts
    frame = load_market(champion_store.data, MERGE).frame
    maes = {}
    for number in (champion_before, done.registration.version):
        info = registry.resolve(f"models:/cryptolstm-btc/{number}")
        maes[number] = score_days(registry.load(info), info.config, frame, tags["split.val.first"], "2021-11-15",
                                  baselines=False)[1]["live/mae"]
    mine, theirs = maes[done.registration.version], maes[champion_before]
    assert done.registration.promoted == (mine <= theirs), version.tags["promotion"]
    assert f"MAE {mine:,.2f} USD against its {theirs:,.2f}" in version.description  # the whole sentence
    assert version.tags["promotion"].startswith(f"on the common evaluation, {tags['split.val.first']}..2021-11-15 (")
    assert len(version.tags["promotion"]) < 80  # one line on the registry page
    now = str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version)
    assert now == (done.registration.version if mine <= theirs else champion_before)

    # the same refit again (of version 1, on the same data): found, not trained again
    runs = len(all_runs(client))
    again = refit(MlflowModels(), V1, champion_store.data, end_date="2021-11-15")
    assert (again.run_id, again.result, again.registration.version, again.registration.added) == \
        (done.run_id, None, done.registration.version, False)
    assert again.registration.reason.startswith(f"this refit was made already, from the same model and data, as "
                                                f"version {done.registration.version}")
    assert len(all_runs(client)) == runs
    # registered again by its run id: still its validation days' ratio (a refit has no test days)
    by_id = registry.register_run(done.run_id, "BTC")
    assert (by_id.version, by_id.added, by_id.ratio_split) == (done.registration.version, False, "validation")
    assert "its validation MAE ratio to persistence is" in registered_line(by_id)

    # --force makes a further refit champion whatever the comparison says
    forced = refit(MlflowModels(), V1, champion_store.data, force=True)
    assert forced.registration.promoted and forced.registration.reason.startswith("made champion by --force over version")
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == forced.registration.version


def test_a_version_the_comparison_finds_worse_is_registered_but_not_promoted(champion_store):
    """What refit hands the registry: a decision made against the champion under the registry's
    lock. One that says "worse" leaves the alias where it is."""
    client = MlflowClient()
    champion = str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version)
    cfg = tiny_config(champion_store.data, merge_date=MERGE, seed=11)
    run_id, _ = tracked_train(cfg, load_market(champion_store.data, cfg.merge_date))
    seen = []

    def worse(current):
        seen.append(current.version)
        return False, "worse on the common evaluation"

    registration = registry.register_run(run_id, "BTC", decide=worse, tags={"refit.of_version": champion})
    assert seen == [champion] and not registration.promoted
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == champion
    tags = client.get_model_version("cryptolstm-btc", registration.version).tags
    assert (tags["promotion"], tags["refit.of_version"]) == ("worse on the common evaluation", champion)
