import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from cryptolstm.data import load_market
from cryptolstm.errors import TrainingError
from cryptolstm.forecaster import example_rows
from cryptolstm.tracking import tracked_train
from tests.conftest import ROOT, tiny_config

pytestmark = pytest.mark.slow

EXPECTED_ARTIFACTS = {
    "config.yaml",
    "experiment/default.yaml",
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


def test_a_run_logs_config_epochs_metrics_dataset_figures_and_model(tracking, shared_data):
    cfg = tiny_config(shared_data, epochs=3)
    market = load_market(shared_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market, experiment_file=str(ROOT / "experiments" / "default.yaml"))
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "cryptolstm-btc"
    assert run.info.run_name == "BTC-honest-w7-1x4-d0.25-b64-s7"
    # Every config value as a param.
    assert run.data.params == {f"config.{k}": ("" if v is None else str(v)) for k, v in cfg.to_dict().items()}
    assert run.data.tags["coin"] == "BTC" and run.data.tags["protocol"] == "honest"
    # Per-epoch losses, one point per epoch, equal to Keras' history.
    for name, key in (("train/loss", "loss"), ("val/loss", "val_loss")):
        points = client.get_metric_history(run_id, name)
        assert [p.step for p in points] == list(range(result.epochs_run))
        np.testing.assert_allclose([p.value for p in points], result.history[key], rtol=1e-6)
    for key, value in result.metrics.items():
        assert run.data.metrics[key] == pytest.approx(value)
    assert run.data.metrics["test/mae_ratio"] == pytest.approx(
        run.data.metrics["test/mae"] / run.data.metrics["test/persistence_mae"]
    )
    # The dataset, with its digest, range and file fingerprints.
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == run.data.tags["data.digest"]
    assert run.data.tags["data.first_date"] == "2023-01-01" and run.data.tags["data.last_date"] == "2023-12-31"
    assert run.data.tags["data.sha256.btc"] == market.files["BTC"][1]
    assert run.data.tags["split.test.last"] == "2023-12-31"
    assert EXPECTED_ARTIFACTS <= _artifact_paths(client, run_id)
    # The logged forecaster turns the test days' last window into the model's test forecast.
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    rows = example_rows(market.frame.iloc[:-1], cfg.window_len)  # the window before the last day
    out = model.predict(rows)
    assert out["date"].tolist() == ["2023-12-31"] and out["coin"].tolist() == ["BTC"]
    assert out["forecast_close"].iloc[0] == pytest.approx(result.forecasts["test"].close()[-1], rel=1e-5)
    assert out["last_close"].iloc[0] == market.frame["BTC_close"].iloc[-2]


def test_a_failing_run_ends_failed_not_running(tracking, shared_data):
    cfg = tiny_config(shared_data, learning_rate=1e30, loss="mse", output_activation="linear", epochs=3)
    market = load_market(shared_data, cfg.merge_date)
    with pytest.raises(TrainingError, match="NaN or infinite in epoch 1; try a lower learning_rate"):
        tracked_train(cfg, market)
    (run,) = MlflowClient().search_runs([mlflow.get_experiment_by_name("cryptolstm-btc").experiment_id])
    assert run.info.status == "FAILED"
