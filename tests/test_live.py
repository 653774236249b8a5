"""A registered model after registration: scored on new days (evaluate), refitted (refit), reported."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm import registry
from cryptolstm.cli import app
from cryptolstm.data import load_market
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.live import score_live
from cryptolstm.windowing import input_rows
from cryptolstm.metrics import direction
from cryptolstm.tracking import tracked_train, use_tracking_uri
from cryptolstm.tracking.live import evaluate
from cryptolstm.tracking.models import config_of, every_day, load_model, model_ref
from cryptolstm.tracking.refit import refit
from cryptolstm.workflows import live_summary
from cryptolstm.tracking.report import experiment_report
from tests.conftest import all_runs, tiny_config

pytestmark = pytest.mark.slow

CUT = "2022-12-31"  # the model's data ends here; 2023 is new to it
V1 = "models:/cryptolstm-btc/1"


@pytest.fixture(scope="module")
def store(tmp_path_factory, shared_data):
    """A store with one tiny BTC model (Gaussian head, so it has intervals) trained on 2022 only,
    registered as version 1 and champion."""
    root = tmp_path_factory.mktemp("live")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(leaked, raising=False)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        use_tracking_uri(uri)
        cfg = tiny_config(shared_data, merge_date="2022-01-01", end_date=CUT, head="gaussian", epochs=3)
        run_id, result = tracked_train(cfg, load_market(shared_data, cfg.merge_date, cfg.end_date))
        registration = registry.register(MlflowClient().get_run(run_id), "BTC")
        assert (registration.version, registration.promoted) == ("1", True)
        yield SimpleNamespace(uri=uri, root=root, run_id=run_id, result=result, cfg=cfg)


def _days(first: str, last: str) -> list[str]:
    return [d.date().isoformat() for d in pd.date_range(first, last)]


def _csv(run_id: str) -> pd.DataFrame:
    return pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="live/forecasts.csv"))


def test_evaluate_scores_exactly_the_days_after_the_cut(store, shared_data):
    done = evaluate(V1, str(shared_data))
    assert (done.result.first, done.result.last, done.result.n_days) == ("2023-01-01", "2023-12-31", 365)
    said = live_summary(done)
    assert said.startswith("cryptolstm-btc version 1 on 365 new day(s), 2023-01-01..2023-12-31") and "tagged" in said
    days = _csv(done.run_id)
    assert days["date"].tolist() == _days("2023-01-01", "2023-12-31")
    # each row's actual close and persistence are the data's, not the model's
    closes = load_market(shared_data, "2022-12-01").frame["BTC_close"]
    assert np.allclose(days["actual"], closes.loc["2023-01-01":"2023-12-31"].to_numpy())
    assert np.allclose(days["persistence"], closes.loc["2022-12-31":"2023-12-30"].to_numpy())

    run = MlflowClient().get_run(done.run_id)
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
    assert m["live/days"] == 365 and 0 <= m["live/dm_p"] <= 1 and m["live/crps_ratio_garch"] > 0
    assert days["cumulative_gap"].iloc[-1] == pytest.approx((error.abs() - naive.abs()).sum())

    # one finished run in the coin's experiment, linked to the version it scored
    assert run.info.status == "FINISHED"
    assert MlflowClient().get_experiment(run.info.experiment_id).name == "cryptolstm-btc"
    tags = run.data.tags
    assert (tags["evaluated.model"], tags["evaluated.version"], tags["evaluated.source_run"]) == \
        ("cryptolstm-btc", "1", store.run_id)
    assert store.run_id in tags["mlflow.note.content"] and "#/models/cryptolstm-btc/versions/1" in tags["mlflow.note.content"]
    assert {f.path for f in MlflowClient().list_artifacts(done.run_id, "plots")} == {"plots/live_cumulative_gap.png"}
    version = MlflowClient().get_model_version("cryptolstm-btc", "1").tags
    assert (version["live.first_date"], version["live.last_date"], version["live.days"]) == ("2023-01-01", "2023-12-31", "365")
    assert float(version["live.mae_ratio"]) == pytest.approx(m["live/mae_ratio"], rel=1e-5)
    assert float(version["live.dm_p"]) == pytest.approx(m["live/dm_p"], rel=1e-5)
    assert version["live.run"] == done.run_id
    described = MlflowClient().get_model_version("cryptolstm-btc", "1").description
    assert described.startswith("BTC LSTM, honest protocol") and f"On 365 new days after its training" in described
    assert f"{m['live/mae_ratio']:.4f}" in described and done.run_id in described
    linked = MlflowClient().get_logged_model(model_ref(V1).model_id)
    assert {m.key: m.value for m in linked.metrics}["live/mae_ratio"] == pytest.approx(m["live/mae_ratio"])
    report = experiment_report("cryptolstm-btc", tracking_uri=store.uri)
    assert "## Registered model `cryptolstm-btc`" in report
    assert f"| 1 | @champion | {float(version['val/mae_ratio']):.4f}" in report
    assert f"365, 2023-01-01..2023-12-31 | {m['live/mae_ratio']:.4f}" in report


def test_evaluate_on_the_test_days_gives_the_test_metrics_of_training(store, shared_data):
    tags = MlflowClient().get_run(store.run_id).data.tags
    trained = MlflowClient().get_run(store.run_id).data.metrics
    done = evaluate(V1, str(shared_data), since=tags["split.test.first"], until=tags["split.test.last"])
    m = done.result.metrics
    assert done.result.n_days == int(tags["split.test.n"])
    for key in ("mae", "persistence_mae", "rmse", "direction_accuracy", "coverage_80", "coverage_95", "crps"):
        assert m[f"live/{key}"] == pytest.approx(trained[f"test/{key}"], rel=1e-5), key
    said = live_summary(done)
    assert "day(s), its test days (not new)" in said and "tagged" not in said
    # its test days again are not new days: the version's live.* tags stay those of new days, if any
    assert MlflowClient().get_model_version("cryptolstm-btc", "1").tags.get("live.first_date", "2023-01-01") == "2023-01-01"


def test_a_forecast_uses_no_data_of_the_day_it_forecasts(store, shared_data):
    """Changing every price from day D on leaves the forecast of D as it was, and changes D+1's."""
    model = load_model(model_ref(V1))
    frame = load_market(shared_data, "2023-03-01", "2023-03-31").frame
    changed = frame.copy()
    changed.loc["2023-03-20":] *= 1.5
    first, second = (every_day(model)(input_rows(f)).set_index("date")["forecast_close"] for f in (frame, changed))
    assert first.loc["2023-03-20"] == second.loc["2023-03-20"]
    assert first.loc["2023-03-21"] != pytest.approx(second.loc["2023-03-21"], rel=1e-6)
    assert first.index.max() == "2023-04-01"  # the last window forecasts the day after the rows


def test_a_model_of_several_days_by_run_uri_is_scored_every_day_and_per_horizon(store, shared_data):
    cfg = tiny_config(shared_data, merge_date="2022-01-01", end_date=CUT, horizon=3, seed=5)
    run_id, _ = tracked_train(cfg, load_market(shared_data, cfg.merge_date, cfg.end_date))
    done = evaluate(f"runs:/{run_id}/model", str(shared_data), until="2023-01-31")
    m = done.result.metrics
    assert (done.result.first, done.result.last, done.result.n_days) == ("2023-01-01", "2023-01-31", 31)
    assert _csv(done.run_id)["date"].tolist() == _days("2023-01-01", "2023-01-31")
    assert {f"live/h{h}/mae_ratio" for h in (1, 2, 3)} <= set(m)
    assert f"MAE ratio by horizon: h1 {m['live/h1/mae_ratio']:.3f}, h2 " in live_summary(done)
    assert m["live/h1/mae"] != m["live/mae"]  # h1 over the 29 windows whose 3 days all fall in January
    assert MlflowClient().get_run(done.run_id).data.tags["evaluated.version"] == ""  # not a registered version


def test_every_window_at_once_equals_one_window_at_a_time(store, shared_data):
    model = load_model(model_ref(V1))
    rows = input_rows(load_market(shared_data, "2023-03-01", "2023-03-20").frame)
    batch = every_day(model)(rows)
    assert len(batch) == len(rows) - store.cfg.window_len + 1
    for end in (store.cfg.window_len, len(rows)):
        one = model.predict(rows.iloc[end - store.cfg.window_len:end]).iloc[0]
        same = batch[batch["origin"] == rows["date"].iloc[end - 1]].iloc[0]
        assert same["date"] == one["date"]
        for column in ("forecast_close", "last_close", "lower_80", "upper_95"):
            assert same[column] == pytest.approx(one[column], rel=1e-6), column  # float32 batches


def test_a_day_the_model_trained_or_validated_on_is_refused(store, shared_data):
    val_last = MlflowClient().get_run(store.run_id).data.tags["split.val.last"]
    before = len(all_runs(MlflowClient()))
    with pytest.raises(ConfigError, match=f"is not a new day.*used the days up to {val_last}"):
        evaluate(V1, str(shared_data), since=val_last)
    day_after = (dt.date.fromisoformat(val_last) + dt.timedelta(days=1)).isoformat()
    assert evaluate(V1, str(shared_data), since=day_after, until=day_after).result.n_days == 1
    assert len(all_runs(MlflowClient())) == before + 1  # the refused one left no run


def _cut_data(shared_data: Path, folder: Path, last: str) -> Path:
    """The shared price files up to ``last``, in ``folder`` (a data directory of the test's own)."""
    folder.mkdir()
    for name in ("btc-usd-daily.csv", "eth-usd-daily.csv"):
        frame = pd.read_csv(shared_data / name)
        frame[frame["date"] <= last].to_csv(folder / name, index=False)
    return folder


@pytest.mark.parametrize("args, words", [
    (["--model", "models:/cryptolstm-btc/99"], "there is no model models:/cryptolstm-btc/99"),
    (["--model", "models:/nothing@champion"], "there is no model models:/nothing@champion"),
    (["--model", "cryptolstm-btc"], "model must be a model URI"),
    (["--model", V1, "--since", "2023-05-01", "--until", "2023-04-01"], "is after --until"),
    (["--model", V1, "--since", "2023-13-01"], "since must be a date written YYYY-MM-DD"),
    (["--model", V1, "CUT"], "no new day to score: the data in"),
])
def test_bad_input_is_one_sentence_and_leaves_no_run(store, shared_data, tmp_path, args, words):
    data = str(_cut_data(shared_data, tmp_path / "cut", CUT)) if "CUT" in args else str(shared_data)
    args = [a for a in args if a != "CUT"]
    before = len(all_runs(MlflowClient()))
    done = CliRunner().invoke(app, ["evaluate", *args, "--data-dir", data, "--quiet"])
    assert done.exit_code == 2, done.output
    message = done.output.strip().splitlines()[-1]
    assert message.startswith("error: ") and words in message and "Traceback" not in done.output
    assert len(all_runs(MlflowClient())) == before
    assert not [r for r in all_runs(MlflowClient()) if r.info.status == "RUNNING"]


def test_refit_registers_a_new_version_and_moves_the_alias_only_if_not_worse(store, shared_data):
    client = MlflowClient()
    champion_before = registry._champion_version(client, "cryptolstm-btc")
    done = refit("models:/cryptolstm-btc@champion", str(shared_data))
    run = client.get_run(done.run_id)
    tags, version = run.data.tags, client.get_model_version("cryptolstm-btc", done.registration.version)
    # the same configuration, on every day to the latest, the most recent val_frac of them validating
    assert run.info.run_name.startswith("refit-") and tags["refit.of_version"] == champion_before
    assert tags["data.last_date"] == "2023-12-31" and tags["split.val.last"] == "2023-12-31"
    assert "test/mae" not in run.data.metrics and "split.test.first" not in tags
    days = load_market(shared_data, store.cfg.merge_date).frame.index  # validation: the last val_frac of the days
    assert tags["split.val.first"] == days[int((1 - store.cfg.val_frac) * len(days))].date().isoformat()
    for name in ("layers", "neurons", "head", "window_len", "seed", "merge_date"):
        assert run.data.params[f"config.{name}"] == str(getattr(store.cfg, name)), name
    assert (version.tags["refit.of_version"], version.tags["source_run"]) == (champion_before, done.run_id)

    # the common evaluation: the refit's validation tail, all of it new to the champion (trained to 2022)
    frame = load_market(shared_data, "2022-01-01").frame
    scores = {}
    for uri in ("models:/cryptolstm-btc/1", f"models:/cryptolstm-btc/{done.registration.version}"):
        model = load_model(model_ref(uri))
        scores[uri] = score_live(every_day(model), config_of(model), frame, tags["split.val.first"],
                                 "2023-12-31").metrics["live/mae"]
    not_worse = scores[f"models:/cryptolstm-btc/{done.registration.version}"] <= scores["models:/cryptolstm-btc/1"]
    assert done.registration.promoted == not_worse, version.tags["promotion"]
    assert registry._champion_version(client, "cryptolstm-btc") == (done.registration.version if not_worse else "1")
    assert f"{tags['split.val.first']}..2023-12-31" in version.tags["promotion"]

    # --force promotes a further refit whatever the comparison says
    forced = refit(V1, str(shared_data), force=True)
    assert forced.registration.promoted and "by force" in forced.registration.reason
    assert registry._champion_version(client, "cryptolstm-btc") == forced.registration.version


def test_a_version_the_comparison_finds_worse_is_registered_but_not_promoted(store, shared_data):
    """What refit hands the registry: a decision made against the champion under the registry's
    lock. One that says "worse" leaves the alias where it is."""
    client = MlflowClient()
    champion = registry._champion_version(client, "cryptolstm-btc")
    cfg = tiny_config(shared_data, merge_date="2022-01-01", seed=11)
    run_id, _ = tracked_train(cfg, load_market(shared_data, cfg.merge_date))
    seen = []

    def worse(current):
        seen.append(str(current.version))
        return False, "worse on the common evaluation"

    registration = registry.register(client.get_run(run_id), "BTC", decide=worse, tags={"refit.of_version": champion})
    assert seen == [champion] and not registration.promoted
    assert registry._champion_version(client, "cryptolstm-btc") == champion
    tags = client.get_model_version("cryptolstm-btc", registration.version).tags
    assert (tags["promotion"], tags["refit.of_version"]) == ("worse on the common evaluation", champion)


def test_refit_without_new_days_or_of_another_registered_model_is_refused(store, shared_data, tmp_path):
    data = _cut_data(shared_data, tmp_path / "cut", CUT)
    before = len(all_runs(MlflowClient()))
    with pytest.raises(DataError, match="there is no new day to refit on"):
        refit(V1, str(data))
    mlflow.register_model(MlflowClient().get_model_version("cryptolstm-btc", "1").source, "someone-elses")
    with pytest.raises(ConfigError, match="someone-elses version 1 is not one of cryptolstm's registered models"):
        refit("models:/someone-elses/1", str(shared_data))
    assert len(all_runs(MlflowClient())) == before
