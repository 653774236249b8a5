"""A training run in MLflow (`cryptolstm.tracking.train`): what it logs, its packaged model, its
end; the records of commands that train nothing; the descriptions the UI shows."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from cryptolstm.data import load_market
from cryptolstm.errors import TrainingError
from cryptolstm.pyfunc import example_rows
from cryptolstm.render import result_text
from cryptolstm.tracking import tracked_train
from tests.conftest import ROOT, tiny_config

MERGE = "2021-01-01"  # 334 synthetic days, to 2021-11-30

EXPECTED_ARTIFACTS = {
    "config.yaml",
    "experiment/default.yaml",
    "keras/lstm.keras",
    "plots/btc_price_volume.png",
    "plots/learning_curves.png",
    "plots/forecast_val.png",
    "plots/forecast_test.png",
}


def _artifact_paths(client, run_id, path=None):
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@pytest.mark.slow
def test_a_run_logs_config_epochs_metrics_dataset_figures_and_model(tracking, synthetic_data, tmp_path):
    cfg = tiny_config(synthetic_data, merge_date=MERGE, epochs=3)
    market = load_market(synthetic_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market, experiment_file=str(ROOT / "experiments" / "default.yaml"))
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "cryptolstm-btc"
    # Named with its result first, then what tells it from the 2018 model (here only its size, window and seed).
    m = run.data.metrics
    assert run.info.run_name == f"val {m['val/mae_ratio']:.3f} test {m['test/mae_ratio']:.3f} · 1x4-w7-s7"
    # Every config value as a param, an open end_date as the last day it read, no seal as no
    # sealed_from: no param is blank or "None".
    assert run.data.params == {f"config.{k}": str(v) for k, v in cfg.to_dict().items()
                               if k not in ("end_date", "sealed_from")} | {"config.end_date": "2021-11-30"}
    assert run.data.tags["coin"] == "BTC" and run.data.tags["protocol"] == "honest"
    assert run.data.tags["cryptolstm.entry"] == "train" and run.data.tags["experiment_file"].endswith("default.yaml")
    # Per-epoch losses, one point per epoch, equal to Keras' history.
    for name, key in (("train/loss", "loss"), ("val/loss", "val_loss")):
        points = client.get_metric_history(run_id, name)
        assert [p.step for p in points] == list(range(result.epochs_run))
        np.testing.assert_allclose([p.value for p in points], result.history[key], rtol=1e-6)
    for key, value in result.metrics.items():
        assert run.data.metrics[key] == pytest.approx(value)
    assert (run.data.metrics["best_epoch"], run.data.metrics["epochs_run"]) == (result.best_epoch + 1, result.epochs_run)
    assert run.data.metrics["test/mae_ratio"] == pytest.approx(
        run.data.metrics["test/mae"] / run.data.metrics["test/persistence_mae"]
    )
    # The dataset, with its digest, range and file fingerprints; the split days as tags.
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == run.data.tags["data.digest"]
    assert run.data.tags["data.first_date"] == MERGE and run.data.tags["data.last_date"] == "2021-11-30"
    assert run.data.tags["data.sha256.btc"] == market.files["BTC"][1]
    tags = run.data.tags
    for split in ("train", "val", "test"):  # the first and last target day scored, and how many
        target_days = result.forecasts.rows("lstm", split)["date"]
        assert tags[f"split.{split}.first"] == str(target_days.min().date())
        assert tags[f"split.{split}.last"] == str(target_days.max().date())
        assert tags[f"split.{split}.n"] == str(len(target_days))
    for split in ("val", "test"):  # every day of the protocol's period is a target day
        assert (tags[f"split.{split}.first"], tags[f"split.{split}.last"]) == \
            tuple(str(d.date()) for d in (result.periods[split].first, result.periods[split].last))
    assert tags["split.test.last"] == "2021-11-30"
    assert tags["mlflow.note.content"] == result_text(result.metrics)  # the run's description
    assert result_text(result.metrics).startswith(f"MAE ratio to persistence: validation {m['val/mae_ratio']:.4f}")
    assert EXPECTED_ARTIFACTS <= _artifact_paths(client, run_id)

    # The logged model: its package says which days it trained on and what it needs to run.
    # (the whole model: MLflow reads models:/m-.../a/path as a registered model's version)
    folder = Path(mlflow.artifacts.download_artifacts(run.data.tags["model_uri"], dst_path=str(tmp_path / "model")))
    training = json.loads((folder / "artifacts" / "training.json").read_text())
    assert training["periods"] == {split: {"first": str(p.first.date()), "last": str(p.last.date())}
                                   for split, p in result.periods.items()}  # the protocol's days
    assert training["periods"]["val"] == {"first": tags["split.val.first"], "last": tags["split.val.last"]}
    assert training["data"] == {"first_date": MERGE, "last_date": "2021-11-30", "rows": len(market.frame),
                                "sha256": {coin: digest for coin, (_, digest) in market.files.items()}}
    saved = json.loads((folder / "artifacts" / "config.json").read_text())
    assert saved == cfg.to_dict()
    assert sorted(p.name for p in (folder / "artifacts").iterdir()) == ["config.json", "lstm-0.onnx", "training.json"]
    requirements = (folder / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements and "tensorflow" not in requirements and "keras" not in requirements
    # The logged forecaster turns the test days' last window into the model's test forecast.
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    rows = example_rows(market.frame.iloc[:-1], cfg)  # the window before the last day
    out = model.predict(rows)
    assert out["date"].tolist() == ["2021-11-30"] and out["coin"].tolist() == ["BTC"]
    assert out["forecast_close"].iloc[0] == pytest.approx(result.forecast("test")[0].close()[-1], rel=1e-5)
    assert out["last_close"].iloc[0] == market.frame["BTC_close"].iloc[-2]


@pytest.mark.slow
def test_a_failing_run_ends_failed_not_running(tracking, synthetic_data):
    cfg = tiny_config(synthetic_data, merge_date=MERGE, learning_rate=1e30, loss="mse", output_activation="linear",
                      epochs=3)
    market = load_market(synthetic_data, cfg.merge_date)
    with pytest.raises(TrainingError, match="NaN or infinite in epoch 1; try a lower learning_rate"):
        tracked_train(cfg, market)
    (run,) = MlflowClient().search_runs([mlflow.get_experiment_by_name("cryptolstm-btc").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("training loss became NaN or infinite")
    assert run.info.run_name == "failed · 1x4-w7-s7"
    assert run.data.tags["mlflow.note.content"].startswith("Failed: training loss")
    assert "model_uri" not in run.data.tags  # nothing half-logged as a model


@pytest.mark.slow
def test_a_tiny_optuna_study_names_its_objective_and_each_trial_its_child_run(tracking, tmp_path, synthetic_data):
    import optuna

    from cryptolstm.options import SearchOptions
    from cryptolstm.search.space import load_space
    from cryptolstm.search.study import run_search
    from cryptolstm.tracking.search import MlflowSearchTracker

    (tmp_path / "base.yaml").write_text("layers: 1\nneurons: 2\nepochs: 1\nbatch_size: 64\nseed: 3\n")
    (tmp_path / "space.yaml").write_text("base: base.yaml\nspace:\n  neurons: {type: categorical, choices: [2, 3]}\n")
    space = load_space(tmp_path / "space.yaml", data_dir=str(synthetic_data), merge_date="2021-06-01")
    market = load_market(synthetic_data, "2021-06-01")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    options = SearchOptions(study_name="tiny", storage=storage, n_trials=1, max_epochs=1, prune=False, register=False)
    run_search(space, market, options, MlflowSearchTracker(market, space.base, "cryptolstm-btc"))
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert study.metric_names == ["val/mae_ratio"]  # what optuna-dashboard shows instead of "Objective 0"
    (trial,) = study.trials
    child = MlflowClient().get_run(trial.user_attrs["mlflow_run_id"])
    assert child.data.tags["trial"] == f"trial-{trial.number}" and child.data.tags["mlflow.parentRunId"]


def _launched_by_mlflow_run(params: dict[str, str]) -> str:
    """A run as `mlflow run` makes it without --experiment-name: in Default, its parameters logged."""
    client = MlflowClient()
    run = client.create_run("0", tags={"mlflow.project.entryPoint": "predict", "mlflow.source.type": "PROJECT"})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


def test_a_record_launched_in_default_moves_to_the_coins_experiment_and_the_launched_run_points_at_it(tracking):
    import pandas as pd

    from cryptolstm.tracking.commands import record_predict

    launched = _launched_by_mlflow_run({"coin": "BTC", "model_uri": "None"})
    forecast = pd.DataFrame({"date": ["2024-01-01"], "coin": ["BTC"], "forecast_close": [43000.0],
                             "forecast_return": [0.01], "last_close": [42574.0]})
    run_id = record_predict(launched, forecast, "BTC", "models:/cryptolstm-btc@champion (version 1)", "BTC close ...")
    client = MlflowClient()
    # kept (mlflow run ends it after the command; a deleted run cannot be ended), pointing at the record
    left = client.get_run(launched)
    assert left.info.lifecycle_stage == "active" and left.data.tags["cryptolstm.record_run"] == run_id
    assert left.info.run_name == "predict-btc-launch" and run_id in left.data.tags["mlflow.note.content"]
    client.set_terminated(launched)  # what mlflow run does next
    assert client.get_run(launched).info.status == "FINISHED"
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "cryptolstm-btc" and "persistence" in experiment.tags["mlflow.note.content"]
    assert run.info.run_name == "predict-btc" and run.info.status == "FINISHED"
    assert run.data.params == {"coin": "BTC", "model_uri": "None"} and run.data.tags["mlflow.source.type"] == "PROJECT"
    assert run.data.metrics["forecast_close"] == 43000.0 and run.data.metrics["forecast_return"] == 0.01
    assert run.data.tags["model"].endswith("(version 1)") and run.data.tags["mlflow.note.content"] == "BTC close ..."
    assert "forecast_close" in open(client.download_artifacts(run_id, "forecast.csv")).read()


def test_experiments_registered_models_and_versions_are_described(tracking, tmp_path, synthetic_data):
    from cryptolstm.tracking.describe import describe_registered
    from cryptolstm.tracking.runs import run_scope, ui_url, where

    with run_scope(tiny_config(synthetic_data), None) as active:
        mlflow.log_metrics({"val/mae_ratio": 0.98, "test/mae_ratio": 1.02})
        mlflow.set_tags({"coin": "BTC", "protocol": "honest"})
    client = MlflowClient()
    run = client.get_run(active.info.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.note.content"].startswith("BTC runs of cryptolstm")
    (tmp_path / "model").mkdir()
    client.create_registered_model("cryptolstm-btc")
    version = client.create_model_version("cryptolstm-btc", str(tmp_path / "model"), run_id=run.info.run_id)
    describe_registered(client, "cryptolstm-btc", version.version, run)
    assert "@champion" in client.get_registered_model("cryptolstm-btc").description
    text = client.get_model_version("cryptolstm-btc", version.version).description
    assert run.info.run_id in text and "honest protocol" in text
    assert "validation 0.9800 (beats persistence), test 1.0200 (does not beat persistence)" in text
    # The run's page in the UI: MLflow 3's hash routes, on the server itself when the store is one.
    assert ui_url("3") == "http://127.0.0.1:5000/#/experiments/3/runs"
    page = f"http://mlflow:5000/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    assert where(run.info.run_id, "http://mlflow:5000").endswith(f"(id {experiment.experiment_id}): {page}")
    assert f"mlflow ui --backend-store-uri {tracking}" in where(run.info.run_id, tracking)
