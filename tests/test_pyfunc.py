"""The registered model (`cryptolstm.pyfunc`): raw rows in, USD closes out; the same in a fresh
process, and through Keras when its ONNX export failed."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from cryptolstm.config import RunConfig
from cryptolstm.errors import DataError
from cryptolstm.pyfunc import example_rows, forecast
from cryptolstm.rows import check_trained_on, input_columns, prepare_rows, trained_prices
from cryptolstm.models.network import NetworkForecaster
from cryptolstm.intervals import LEVELS
from cryptolstm.windowing import input_rows
from tests.conftest import ROOT, cli_env, synthetic_frame, tiny_config

CFG = RunConfig()  # the default model: close and volume of both coins, a window of 7 days
ROWS = example_rows(synthetic_frame(10, seed=1), CFG)
MERGE = "2021-01-01"  # 334 synthetic days, to 2021-11-30


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda r: r.head(5), "the input has 5 row(s); this model needs at least 7 daily rows."),
        (lambda r: r.drop(columns=["ETH_volume"]), "the input lacks column(s) ETH_volume; it needs date, "
                                                   "BTC_close, BTC_volume, ETH_close, ETH_volume."),
        (lambda r: r.assign(BTC_close=-1.0), "every price and volume in the last rows must be a number greater than 0."),
        (lambda r: r.assign(BTC_close="abc"), "every price and volume in the last rows must be a number greater than 0."),
        (lambda r: r.assign(date="yesterday"), "the input's date 'yesterday' is not a YYYY-MM-DD date."),
        (lambda r: r.drop(index=[3]).pipe(lambda d: pd.concat([d, d.tail(1)])), "the last 7 rows must be consecutive days."),
        (lambda r: r.to_dict(), "the input must be a table of daily rows."),
        (lambda r: r.assign(BTC_volume=[1e6] * 6 + [1e15]), "the input's BTC_volume on 2020-01-10 is 1e+15, outside "
                                                             "the plausible range (a daily volume is 0 or 1 to 1e+14 USD)."),
        (lambda r: r.assign(ETH_close=2e9), "the input's ETH_close on 2020-01-04 is 2e+09, outside the plausible "
                                            "range (a price is 1e-06 to 1e+09 USD)."),
        (lambda r: pd.concat([r] * 2858), "the input has 20006 rows; a request may send at most 20,000 daily rows."),
    ],
)
def test_bad_rows_give_one_sentence(change, words):
    with pytest.raises(DataError) as refused:
        prepare_rows(change(ROWS.copy()), CFG)
    assert str(refused.value) == words


RANGES = RunConfig(features="close,parkinson", window_len=5)  # reads BTC's and ETH's high, low and close


@pytest.mark.parametrize("column, factor", [("BTC_high", 0.5), ("ETH_low", 2.0), ("BTC_open", 3.0)])
def test_a_day_whose_high_is_not_above_its_open_close_and_low_is_refused(column, factor):
    rows = input_rows(synthetic_frame(10, seed=1), RANGES).assign(BTC_open=lambda r: r["BTC_close"])
    rows.loc[rows.index[-2], column] *= factor
    with pytest.raises(DataError) as refused:
        prepare_rows(rows, RANGES)
    assert str(refused.value) == (f"the input's {column[:3]} row of {rows['date'].iloc[-2]} is not a day's prices: its "
                                  f"high must be at least its open, close and low, and its low at most its open and close.")


def test_rows_are_checked_against_the_prices_the_model_trained_on():
    frame = synthetic_frame(40, seed=1)
    record = trained_prices({"first_date": "2020-01-01", "columns": {c: frame[c].iloc[:30].tolist() for c in CFG_COLUMNS}})
    same = prepare_rows(example_rows(frame.iloc[:30], CFG), CFG)
    check_trained_on(record, same)  # the days it trained on, as they were
    check_trained_on(record, prepare_rows(example_rows(frame, CFG), CFG))  # later days
    check_trained_on(None, same.assign(BTC_close=same["ETH_close"]))  # a model that recorded no prices
    with pytest.raises(DataError, match=r"^the input's prices are not those this model was trained on: BTC_close on "
                                        r"2020-01-29 is [\d.]+ there but was [\d.]+ \(1 of the 7 shared days differ\)"):
        check_trained_on(record, same.assign(BTC_close=same["BTC_close"].where(same.index != "2020-01-29", 1.0)))
    later = prepare_rows(example_rows(frame, CFG), CFG)
    with pytest.raises(DataError, match=r"^the input's BTC_close / ETH_close on 2020-02-03 is 1, while it was "):
        check_trained_on(record, later.assign(BTC_close=later["ETH_close"]))


CFG_COLUMNS = ["BTC_close", "BTC_volume", "ETH_close", "ETH_volume"]


def test_rows_are_sorted_the_last_window_kept_and_extra_columns_ignored():
    longer = example_rows(synthetic_frame(12, seed=1), RunConfig(window_len=12)).iloc[::-1]
    frame = prepare_rows(longer.assign(BTC_open=1.0, note="x"), CFG)
    assert list(frame.columns) == input_columns(CFG)[1:] == ["BTC_close", "BTC_volume", "ETH_close", "ETH_volume"]
    assert len(frame) == 7 and frame.index.is_monotonic_increasing and frame.index[-1] == pd.Timestamp("2020-01-12")
    # a model of other features reads other columns: its own, and its coin's close (the target)
    ranges = RunConfig(coin="ETH", features="parkinson")
    assert input_columns(ranges) == ["date", "BTC_high", "BTC_low", "ETH_high", "ETH_low", "ETH_close"]


def test_forecast_gives_each_day_ahead_in_usd_with_its_intervals():
    """A network forecaster of three days with a Gaussian head and a fixed network of numpy: mean
    returns 1 %, 2 %, 3 %, scale 2 %; the rows are those returns on the last close, the intervals
    the Gaussian's quantiles."""
    cfg = RunConfig(head="gaussian", horizon=3)
    params = np.array([[0.01, 0.02, 0.03, 0.02, 0.02, 0.02]], dtype=np.float32)
    model = NetworkForecaster(cfg, [lambda X: np.repeat(params, len(X), axis=0)])
    rows = input_rows(synthetic_frame(10, seed=1), cfg)  # 10 days: the last 7 are the input of one forecast
    last = rows["BTC_close"].iloc[-1]
    out = forecast(model, rows)
    assert out["date"].tolist() == ["2020-01-11", "2020-01-12", "2020-01-13"] and out["horizon"].tolist() == [1, 2, 3]
    assert (out["coin"] == "BTC").all() and (out["last_close"] == last).all()
    np.testing.assert_allclose(out["forecast_close"], last * np.array([1.01, 1.02, 1.03]), rtol=1e-6)
    np.testing.assert_allclose(out["forecast_return"], [0.01, 0.02, 0.03], rtol=1e-5)
    z95, z80 = norm.ppf(0.975), norm.ppf(0.9)
    np.testing.assert_allclose(out["upper_95"], last * (1 + np.array([0.01, 0.02, 0.03]) + z95 * 0.02), rtol=1e-6)
    np.testing.assert_allclose(out["lower_80"], last * (1 + np.array([0.01, 0.02, 0.03]) - z80 * 0.02), rtol=1e-6)
    # every window of the rows at once: one row per origin and horizon, with every quantile in USD
    every = forecast(model, rows, every_day=True)
    assert every["origin"].tolist() == [d for d in rows["date"].iloc[6:] for _ in range(3)]
    assert len(every) == 4 * 3 and {f"q{q:g}" for q in LEVELS} <= set(every)
    last_origin = every[every["origin"] == rows["date"].iloc[-1]].reset_index(drop=True)
    pd.testing.assert_frame_equal(last_origin[out.columns], out)
    assert last_origin["q0.975"].to_numpy() == pytest.approx(last_origin["upper_95"].to_numpy(), rel=1e-12)


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
def test_champion_forecast_in_a_fresh_process_equals_the_training_process(tracking, synthetic_data, tmp_path):
    from cryptolstm.data import load_market
    from cryptolstm.tracking import registry, tracked_train

    cfg = tiny_config(synthetic_data, merge_date=MERGE, protocol="seed", train_frac=0.8,
                      recurrent_activation="hard_sigmoid_keras2", head="gaussian")
    market = load_market(synthetic_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market)
    registry.register_run(run_id, "BTC")
    rows = example_rows(market.frame, cfg)
    here = forecast(result.forecaster, rows)  # the training process's own forecast (Keras), with its intervals
    assert here["date"].tolist() == ["2021-12-01"]
    # A process that cannot import the project from its checkout: the model brings its code.
    done = subprocess.run([sys.executable, "-c", FRESH, "models:/cryptolstm-btc@champion",
                           json.dumps(rows.to_dict(orient="records")), str(ROOT)],
                          cwd=tmp_path, env=cli_env(PYTHONPATH=""), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    there = pd.DataFrame(json.loads(lines[0]))
    columns = ["forecast_close", "lower_80", "upper_80", "lower_95", "upper_95"]
    # ONNX Runtime there, Keras here: the same forecast to 1e-6 (relative); the calibration travelled too
    np.testing.assert_allclose(there[columns].iloc[0].to_numpy(float), here[columns].iloc[0].to_numpy(float), rtol=1e-6)
    low95, low80, point, high80, high95 = here[["lower_95", "lower_80", "forecast_close", "upper_80",
                                                 "upper_95"]].iloc[0]
    assert low95 < low80 < point < high80 < high95
    assert there["date"].iloc[0] == "2021-12-01"
    # an MlflowException (its subclass Refusal: its sentence alone, whatever the server prepends)
    assert lines[1] == "Refusal the input has 2 row(s); this model needs at least 7 daily rows."
    assert json.loads(lines[2]) == []  # ONNX Runtime forecast: neither TensorFlow nor Keras was imported


@pytest.mark.slow
@pytest.mark.parametrize("changes", [
    dict(head="student_t", features="ranges"),
    dict(head="gaussian_pinned", features="returns"),
    dict(head="student_t_pinned", features="ranges", cell="gru"),
    dict(head="garch_scaled", features="garch", ensemble=2),
], ids=lambda c: "-".join(str(v) for v in c.values()))
def test_every_new_head_feature_set_cell_and_ensemble_is_served_by_onnx_as_trained(changes, tracking, synthetic_data):
    """#21's models travel: the logged pyfunc (ONNX Runtime, every member of an ensemble, the features'
    fitted state, the calibration) forecasts what the training process forecast, to 1e-6; a pinned head's
    median is the last close."""
    from cryptolstm.data import load_market
    from cryptolstm.tracking import tracked_train

    cfg = tiny_config(synthetic_data, merge_date=MERGE, **changes)
    market = load_market(synthetic_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market)
    rows = example_rows(market.frame, cfg)
    here = forecast(result.forecaster, rows)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    networks = model.unwrap_python_model().forecaster.networks
    assert len(networks) == cfg.ensemble and all("onnx" in n.__qualname__ for n in networks)
    there = model.predict(rows)
    columns = ["forecast_close", "lower_80", "upper_80", "lower_95", "upper_95"]
    np.testing.assert_allclose(there[columns].to_numpy(float), here[columns].to_numpy(float), rtol=1e-6)
    low95, low80, point, high80, high95 = there[["lower_95", "lower_80", "forecast_close", "upper_80",
                                                  "upper_95"]].iloc[0]
    assert low95 < low80 < point < high80 < high95
    if cfg.head_spec.pinned:
        assert point == pytest.approx(rows["BTC_close"].iloc[-1], rel=1e-9)


def _log_by_hand(name: str, artifacts: dict[str, str], params: dict[str, str] | None = None,
                 tags: dict[str, str] | None = None) -> str:
    """A run holding a pyfunc ``name`` made of ``artifacts`` (as a model of an earlier cryptolstm was
    logged), with ``params`` and ``tags``; its run id."""
    from cryptolstm.pyfunc import LstmForecaster

    with mlflow.start_run(tags=tags) as run:
        mlflow.log_params(params or {})
        mlflow.pyfunc.log_model(name=name, python_model=LstmForecaster(), code_paths=[str(ROOT / "cryptolstm")],
                                artifacts=artifacts, pip_requirements=[])  # none inferred: a process that loads it
    return run.info.run_id


def _network_kind(model) -> str:
    """``onnx`` or ``keras``: what runs the loaded pyfunc's network."""
    (network,) = model.unwrap_python_model().forecaster.networks
    return network.__qualname__.split("_network")[0].lstrip("_")


@pytest.mark.slow
def test_a_model_saved_for_keras_only_forecasts_the_same_through_keras(tracking, synthetic_data, tmp_path):
    """A model whose ONNX export failed carries the .keras file and is run by Keras; its forecast
    equals the ONNX model's to 1e-6. A failed export says why."""
    from cryptolstm.data import load_market
    from cryptolstm.models.base import History
    from cryptolstm.packaging import export_onnx
    from cryptolstm.tracking import tracked_train

    cfg = tiny_config(synthetic_data, merge_date=MERGE, head="quantile")
    market = load_market(synthetic_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market)
    windows = result.forecaster.windows(result.splits.val.take(slice(0, 4)), History(market.frame, cfg.coin))
    assert windows.shape == (4, 7, 4)
    (tmp_path / "a-file").write_text("")  # no folder can be made here: the export fails
    keras_model = result.forecaster.members[0].model
    assert export_onnx(keras_model, str(tmp_path / "a-file" / "lstm.onnx"), windows).startswith("ONNX export failed")
    assert export_onnx(keras_model, str(tmp_path / "lstm.onnx"), windows) is None  # and where it can, it is equal
    model_uri = mlflow.MlflowClient().get_run(run_id).data.tags["model_uri"]
    folder = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "model"))) / "artifacts"
    artifacts = {name: str(folder / f"{name}.json") for name in ("config", "calibration", "training")}
    artifacts["keras_model"] = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="keras/lstm.keras",
                                                                   dst_path=str(tmp_path))
    keras_only = _log_by_hand("keras_only", artifacts)
    rows = example_rows(market.frame, cfg)
    through_keras = mlflow.pyfunc.load_model(f"runs:/{keras_only}/keras_only")
    through_onnx = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert (_network_kind(through_keras), _network_kind(through_onnx)) == ("keras", "onnx")
    calibration = result.forecaster.calibration.to_dict()
    assert through_keras.unwrap_python_model().forecaster.calibration.to_dict() == calibration
    columns = ["forecast_close", "lower_80", "upper_80", "lower_95", "upper_95"]
    np.testing.assert_allclose(through_keras.predict(rows)[columns].to_numpy(float),
                               through_onnx.predict(rows)[columns].to_numpy(float), rtol=1e-6)


