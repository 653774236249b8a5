"""Registry: versions, the champion alias, loading back, serving, concurrent registrations."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from cryptolstm import registry
from cryptolstm.data import load_market
from cryptolstm.errors import ConfigError
from cryptolstm.forecaster import example_rows
from cryptolstm.tracking import tracked_train
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow


def _two_runs(shared_data, coin="BTC", merge_date="2023-01-01"):
    """Two tiny finished runs of ``coin``, (worse, better) by val/mae_ratio."""
    market = load_market(shared_data, merge_date)
    runs = []
    for seed in (1, 2):
        run_id, _ = tracked_train(tiny_config(shared_data, coin=coin, seed=seed, merge_date=merge_date), market)
        runs.append(MlflowClient().get_run(run_id))
    runs.sort(key=lambda r: -r.data.metrics["val/mae_ratio"])
    assert runs[0].data.metrics["val/mae_ratio"] > runs[1].data.metrics["val/mae_ratio"]
    return runs, market


def _champion(coin="BTC"):
    return MlflowClient().get_model_version_by_alias(registry.model_name(coin), registry.ALIAS)


def test_promotion_only_when_better_on_the_same_evaluation(tracking, shared_data):
    (worse, better), market = _two_runs(shared_data)
    first = registry.register(worse, "BTC")
    assert (first.version, first.promoted, first.reason) == ("1", True, "first champion")
    second = registry.register(better, "BTC")
    assert second.promoted and str(_champion().version) == "2" and "beats champion version 1" in second.reason
    again = registry.register(worse, "BTC")
    assert not again.promoted and str(_champion().version) == "2"
    version = MlflowClient().get_model_version("cryptolstm-btc", again.version)
    assert "does not beat champion version 2" in version.tags["promotion"]
    assert version.tags["source_run"] == worse.info.run_id and version.tags["protocol"] == "honest"
    ratio = worse.data.metrics["test/mae_ratio"]
    assert version.tags["beats_persistence"] == str(ratio < 1).lower()
    assert float(version.tags["persistence_ratio"]) == pytest.approx(ratio)
    # Another data range is another evaluation: not compared, not promoted, unless forced.
    other = tracked_train(tiny_config(shared_data, merge_date="2022-06-01", neurons=2),
                          load_market(shared_data, "2022-06-01"))[0]
    moved = registry.register(MlflowClient().get_run(other), "BTC")
    assert not moved.promoted and "not compared" in moved.reason and str(_champion().version) == "2"
    forced = registry.register(MlflowClient().get_run(other), "BTC", force=True)
    assert forced.promoted and str(_champion().version) == forced.version


def test_best_run_of_an_experiment_and_champion_loads_back_to_forecast(tracking, shared_data):
    (worse, better), market = _two_runs(shared_data)
    assert registry.best_run("BTC", "cryptolstm-btc").info.run_id == better.info.run_id
    with pytest.raises(ConfigError, match="no finished ETH run"):
        registry.best_run("ETH", "cryptolstm-btc")
    registry.register(better, "BTC")
    model, label = registry.load_champion("BTC")
    assert label == "models:/cryptolstm-btc@champion (version 1)"
    out = model.predict(example_rows(market.frame, 10))
    run_model = mlflow.pyfunc.load_model(f"runs:/{better.info.run_id}/model")
    assert out.equals(run_model.predict(example_rows(market.frame, 10)))
    with pytest.raises(ConfigError, match="cannot load models:/cryptolstm-eth@champion"):
        registry.load_champion("ETH")


def test_concurrent_registrations_leave_the_alias_on_the_better_model(tracking, shared_data, tmp_path):
    (worse, better), _ = _two_runs(shared_data, coin="ETH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    procs = [subprocess.Popen([sys.executable, "-m", "cryptolstm", "register", "-q", "--coin", "ETH", "--run-id",
                               run.info.run_id], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for run in (better, worse)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    champion = _champion("ETH")
    assert champion.tags["source_run"] == better.info.run_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_predict_command_and_mlflow_models_serve_answer_with_the_champions_forecast(tracking, shared_data, tmp_path):
    (worse, better), market = _two_runs(shared_data)
    registry.register(better, "BTC")
    rows = example_rows(market.frame, 7)
    expected = registry.load_champion("BTC")[0].predict(rows)

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    done = subprocess.run([sys.executable, "-m", "cryptolstm", "predict", "-q", "--coin", "BTC", "--data-dir",
                           str(shared_data)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"BTC close on 2024-01-01: {expected['forecast_close'].iloc[0]:,.2f} USD" in done.stdout
    assert "models:/cryptolstm-btc@champion (version 1)" in done.stdout

    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # as in an activated venv
    port = _free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen([mlflow_bin, "models", "serve", "-m", "models:/cryptolstm-btc@champion",
                               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        body = json.dumps({"dataframe_records": json.loads(rows.to_json(orient="records", double_precision=15))})
        answer = None
        deadline = time.time() + 180
        while time.time() < deadline and server.poll() is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                                 headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
                break
            except OSError:
                time.sleep(1)
        assert answer is not None, server.stderr.read()[-2000:] if server.poll() is not None else "no answer"
        (prediction,) = answer["predictions"]
        assert prediction["date"] == "2024-01-01"
        assert prediction["forecast_close"] == pytest.approx(expected["forecast_close"].iloc[0], rel=1e-9)
        # Too few rows: a 400 with the sentence.
        short = json.dumps({"dataframe_records": json.loads(rows.head(3).to_json(orient="records"))})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=short.encode(),
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=30)
        assert info.value.code == 400 and "at least 7 daily rows" in info.value.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)
