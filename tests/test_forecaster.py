"""The logged pyfunc: raw rows in, next-day USD close out, the same in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from cryptolstm.data import load_market
from cryptolstm.forecaster import INPUT_COLUMNS, example_rows, prepare_rows
from cryptolstm.errors import DataError
from cryptolstm.tracking import tracked_train
from tests.conftest import ROOT, synthetic_frame, tiny_config

ROWS = example_rows(synthetic_frame(10, seed=1), 7)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda r: r.head(5), "has 5 row(s); this model needs at least 7 daily rows"),
        (lambda r: r.drop(columns=["ETH_volume"]), "lacks column(s) ETH_volume"),
        (lambda r: r.assign(BTC_close=-1.0), "must be a number greater than 0"),
        (lambda r: r.assign(BTC_close="abc"), "must be a number greater than 0"),
        (lambda r: r.assign(date="yesterday"), "is not a YYYY-MM-DD date"),
        (lambda r: r.drop(index=[3]).pipe(lambda d: pd.concat([d, d.tail(1)])), "must be consecutive days"),
    ],
)
def test_bad_rows_give_one_sentence(change, words):
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        prepare_rows(change(ROWS.copy()), 7)


def test_rows_are_sorted_and_the_last_window_kept():
    longer = example_rows(synthetic_frame(12, seed=1), 12).iloc[::-1]
    frame = prepare_rows(longer, 7)
    assert list(frame.columns) == INPUT_COLUMNS and len(frame) == 7
    assert frame["date"].is_monotonic_increasing and frame["date"].iloc[-1] == pd.Timestamp("2020-01-12")


FRESH = """
import json, sys
# Hide this checkout (the editable install's finder and any path into the repo): the model
# must bring its own code, as in an environment with only the runtime requirements.
repo = sys.argv[3]
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path = [p for p in sys.path if p.rstrip("/") != repo]
try:
    import cryptolstm
    raise SystemExit("cryptolstm is importable without the model")
except ImportError:
    pass
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.DataFrame(json.loads(sys.argv[2]))
print(json.dumps(model.predict(rows).to_dict(orient="records")))  # repr-exact floats
try:
    model.predict(rows.head(2))
except Exception as exc:
    print(type(exc).__name__, str(exc))
print(json.dumps(sorted(m for m in ("tensorflow", "keras") if m in sys.modules)))
"""


@pytest.mark.slow
def test_champion_forecast_in_a_fresh_process_equals_the_training_process(tracking, shared_data, tmp_path):
    from mlflow import MlflowClient

    from cryptolstm import registry
    from cryptolstm.forecaster import forecast

    cfg = tiny_config(shared_data, protocol="seed", train_frac=0.8, recurrent_activation="hard_sigmoid_keras2",
                      head="gaussian")
    market = load_market(shared_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market)
    registry.register(MlflowClient().get_run(run_id), "BTC")
    rows = example_rows(market.frame, 9)
    here = forecast(result.forecaster(), rows)  # the training process's own forecast, with its intervals
    assert here["date"].tolist() == ["2024-01-01"]
    # A process that cannot import the project from its checkout: the model brings its code.
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", FRESH, "models:/cryptolstm-btc@champion",
                           json.dumps(rows.to_dict(orient="records")), str(ROOT)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    there = pd.DataFrame(json.loads(lines[0]))
    columns = ["forecast_close", "lower_80", "upper_80", "lower_95", "upper_95"]
    # ONNX Runtime there, Keras here: the same forecast to 1e-6 (relative); the calibration travelled too
    np.testing.assert_allclose(there[columns].iloc[0].to_numpy(float), here[columns].iloc[0].to_numpy(float), rtol=1e-6)
    low95, low80, point, high80, high95 = here[["lower_95", "lower_80", "forecast_close", "upper_80",
                                                 "upper_95"]].iloc[0]
    assert low95 < low80 < point < high80 < high95
    assert there["date"].iloc[0] == "2024-01-01"
    assert lines[1].startswith("MlflowException") and "at least 7 daily rows" in lines[1]
    assert json.loads(lines[2]) == []  # ONNX Runtime forecast: neither TensorFlow nor Keras was imported


@pytest.mark.slow
def test_a_model_saved_for_keras_only_forecasts_the_same_through_keras(tracking, shared_data, tmp_path):
    """A model whose ONNX export failed (or logged before exports) carries the .keras file and is
    run by Keras; its forecast equals the ONNX model's to 1e-6. A failed export says why."""
    from cryptolstm.forecaster import LstmForecaster
    from cryptolstm.inference import export_onnx

    cfg = tiny_config(shared_data, head="quantile")
    market = load_market(shared_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market)
    (tmp_path / "a-file").write_text("")  # no folder can be made here: the export fails
    assert export_onnx(result.model, str(tmp_path / "a-file" / "lstm.onnx"), result.splits.val.X[:4]).startswith(
        "ONNX export failed")
    keras_file = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="keras/lstm.keras", dst_path=str(tmp_path))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg.to_dict()))
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps(result.calibration.to_dict()))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="keras_only", python_model=LstmForecaster(), code_paths=[str(ROOT / "cryptolstm")],
                                       artifacts={"keras_model": keras_file, "config": str(config),
                                                  "calibration": str(calibration)})
    rows = example_rows(market.frame, 9)
    through_keras = mlflow.pyfunc.load_model(info.model_uri)
    through_onnx = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert type(through_keras.unwrap_python_model().lstm).__name__ == "Lstm"
    assert type(through_onnx.unwrap_python_model().lstm).__name__ == "Predictor"
    columns = ["forecast_close", "lower_80", "upper_80", "lower_95", "upper_95"]
    np.testing.assert_allclose(through_keras.predict(rows)[columns].to_numpy(float),
                               through_onnx.predict(rows)[columns].to_numpy(float), rtol=1e-6)
    requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model/requirements.txt")).read_text()
    assert "onnxruntime==" in requirements and "tensorflow" not in requirements and "keras" not in requirements
