"""Registry: versions, the champion alias, loading back, serving, concurrent registrations."""

import json
import os
import shutil
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


def _runs(shared_data, coin="BTC", merge_date="2023-01-01", seeds=(1, 2)):
    """Tiny finished runs of ``coin``, one per seed, worst first by val/mae_ratio."""
    market = load_market(shared_data, merge_date)
    runs = []
    for seed in seeds:
        run_id, _ = tracked_train(tiny_config(shared_data, coin=coin, seed=seed, merge_date=merge_date), market)
        runs.append(MlflowClient().get_run(run_id))
    runs.sort(key=lambda r: -r.data.metrics["val/mae_ratio"])
    ratios = [r.data.metrics["val/mae_ratio"] for r in runs]
    assert ratios == sorted(set(ratios), reverse=True), ratios
    return runs, market


def _two_runs(shared_data, coin="BTC", merge_date="2023-01-01"):
    """Two tiny finished runs of ``coin``, (worse, better) by val/mae_ratio."""
    return _runs(shared_data, coin, merge_date)


def _champion(coin="BTC"):
    return MlflowClient().get_model_version_by_alias(registry.model_name(coin), registry.ALIAS)


def _versions() -> list[tuple[str, str]]:
    """(model name, version) of every registered version in the store."""
    return sorted((v.name, str(v.version)) for v in MlflowClient().search_model_versions())


def _cli(tmp_path, *args) -> subprocess.CompletedProcess:
    """``python -m cryptolstm <args>`` on the test's store (its environment), from ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    return subprocess.run([sys.executable, "-m", "cryptolstm", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_promotion_only_when_better_on_the_same_evaluation(tracking, shared_data):
    (worst, middle, best), market = _runs(shared_data, seeds=(1, 2, 3))
    first = registry.register(middle, "BTC")
    assert (first.version, first.promoted, first.reason, first.added) == ("1", True, "first champion", True)
    second = registry.register(best, "BTC")
    assert second.promoted and str(_champion().version) == "2" and "beats champion version 1" in second.reason
    third = registry.register(worst, "BTC")
    assert third.version == "3" and not third.promoted and str(_champion().version) == "2"
    version = MlflowClient().get_model_version("cryptolstm-btc", third.version)
    assert "does not beat champion version 2" in version.tags["promotion"]
    assert version.tags["source_run"] == worst.info.run_id and version.tags["protocol"] == "honest"
    ratio = worst.data.metrics["test/mae_ratio"]
    assert version.tags["beats_persistence"] == str(ratio < 1).lower()
    assert float(version.tags["persistence_ratio"]) == pytest.approx(ratio)
    # Another data range is another evaluation: not compared, not promoted, unless forced.
    other = MlflowClient().get_run(tracked_train(tiny_config(shared_data, merge_date="2022-06-01", neurons=2),
                                                 load_market(shared_data, "2022-06-01"))[0])
    moved = registry.register(other, "BTC")
    assert not moved.promoted and "not compared" in moved.reason and str(_champion().version) == "2"
    forced = registry.register(other, "BTC", force=True)  # as the reason says; its version, none added
    assert (forced.version, forced.added, forced.promoted) == (moved.version, False, True)
    assert "already registered" in forced.reason and forced.reason.endswith("promoted by force over version 2")
    assert str(_champion().version) == forced.version and len(_versions()) == 4


def test_a_run_is_registered_once_and_only_under_its_own_coin(tracking, shared_data, tmp_path):
    (btc,), _ = _runs(shared_data, seeds=(1,))
    with pytest.raises(ConfigError) as refused:
        registry.register(btc, "ETH")
    assert str(refused.value) == f"run {btc.info.run_id} is a BTC run; it cannot be registered as cryptolstm-eth."
    assert _versions() == []
    # A run that names no coin, or two coins, or holds no val/mae_ratio: refused, nothing registered.
    for tags, params, coin, match in (({}, {}, "BTC", "names no coin"),
                                      ({"coin": "ETH"}, {"config.coin": "BTC"}, "ETH", "is a BTC run"),
                                      ({"coin": "BTC"}, {"config.coin": "ETH"}, "BTC", "is an ETH run")):
        with mlflow.start_run(tags=tags) as bare:
            mlflow.log_params(params)
            mlflow.log_metric("val/mae_ratio", 0.5)
        with pytest.raises(ConfigError, match=match):
            registry.register(MlflowClient().get_run(bare.info.run_id), coin)
    with mlflow.start_run(tags={"coin": "BTC"}) as backtest_like:
        pass
    with pytest.raises(ConfigError, match="has no val/mae_ratio: only a training run"):
        registry.register(MlflowClient().get_run(backtest_like.info.run_id), "BTC")
    assert _versions() == []

    # A registration cut short after the version was created (no alias, no promotion tag yet):
    # registering the run again completes it, without a second version.
    client = MlflowClient()
    first = registry.register(btc, "BTC")
    client.delete_registered_model_alias("cryptolstm-btc", registry.ALIAS)
    client.delete_model_version_tag("cryptolstm-btc", "1", "promotion")
    resumed = registry.register(btc, "BTC")
    assert (resumed.version, resumed.added, resumed.promoted) == ("1", False, True)
    assert resumed.reason.endswith("nothing was added; first champion") and str(_champion().version) == "1"
    again = registry.register(btc, "BTC")
    assert (again.version, again.added, again.promoted) == ("1", False, True)
    assert again.reason == f"run {btc.info.run_id} was already registered as version 1; nothing was added"
    assert (again.beats_persistence, again.ratio) == (first.beats_persistence, first.ratio)
    assert _versions() == [("cryptolstm-btc", "1")]

    # The command: the same run again exits 0 and says so; another coin's run is one sentence, exit 2.
    done = _cli(tmp_path, "register", "-q", "--coin", "BTC", "--run-id", btc.info.run_id)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already registered as version 1; nothing was added" in done.stdout
    wrong = _cli(tmp_path, "register", "-q", "--coin", "ETH", "--run-id", btc.info.run_id)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, wrong.stderr[-2000:]
    assert "is a BTC run; it cannot be registered as cryptolstm-eth." in wrong.stderr
    assert _versions() == [("cryptolstm-btc", "1")]


def test_predict_refuses_a_model_of_another_coin(tracking, shared_data, tmp_path):
    (btc,), market = _runs(shared_data, seeds=(1,))
    registry.register(btc, "BTC")
    rows = example_rows(market.frame, 10)
    with pytest.raises(ConfigError) as refused:
        registry.forecast_with("ETH", "models:/cryptolstm-btc@champion", rows)
    assert str(refused.value) == ("models:/cryptolstm-btc@champion is a BTC model; it cannot forecast ETH "
                                  "(pass --coin BTC, or --model-uri of an ETH model).")
    # A BTC model made ETH champion behind the registry's back (as the unchecked register once did).
    version = mlflow.register_model(btc.data.tags["model_uri"], "cryptolstm-eth").version
    MlflowClient().set_registered_model_alias("cryptolstm-eth", registry.ALIAS, version)
    with pytest.raises(ConfigError, match=r"^models:/cryptolstm-eth@champion \(version 1\) is a BTC model; "):
        registry.load_champion("ETH")
    assert registry.forecast_with("BTC", None, rows)[0]["coin"].tolist() == ["BTC"]
    done = _cli(tmp_path, "predict", "-q", "--coin", "ETH", "--data-dir", str(shared_data))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "models:/cryptolstm-eth@champion (version 1) is a BTC model; it cannot forecast ETH" in done.stderr


def test_a_missing_or_truncated_artifact_is_one_sentence_naming_its_path(tracking, shared_data, tmp_path):
    (btc,), market = _runs(shared_data, seeds=(1,))
    registry.register(btc, "BTC")
    (network_file,) = tmp_path.glob("mlruns/**/artifacts/lstm.onnx")  # what the pyfunc runs
    folder = network_file.parents[1]  # the logged model's folder: MLmodel, artifacts/lstm.onnx
    assert (folder / "MLmodel").is_file()
    whole = network_file.read_bytes()
    uri = "models:/cryptolstm-btc@champion"

    def refusal(model_uri=None) -> str:
        with pytest.raises(ConfigError) as refused:
            registry.load_champion("BTC", model_uri)
        assert "\n" not in str(refused.value)
        return str(refused.value)

    network_file.write_bytes(whole[: len(whole) // 2])
    assert refusal() == (f"cannot load {uri}: its artifact lstm.onnx is truncated or damaged "
                         f"(not a valid ONNX model) ({network_file}).")
    done = _cli(tmp_path, "predict", "-q", "--coin", "BTC", "--data-dir", str(shared_data))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"cannot load {uri}: its artifact lstm.onnx is truncated" in done.stderr and str(network_file) in done.stderr
    network_file.write_bytes(b"")
    assert "lstm.onnx is truncated" in refusal()
    network_file.unlink()
    assert refusal() == f"cannot load {uri}: its artifact lstm.onnx is missing ({network_file})."
    shutil.rmtree(folder)  # was "No such artifact: ''", naming nothing
    assert refusal() == f"cannot load {uri}: the model's folder is missing ({folder})."
    assert refusal(f"runs:/{btc.info.run_id}/model") == (f"cannot load runs:/{btc.info.run_id}/model: "
                                                         f"the model's folder is missing ({folder}).")
    # A model that was never registered says so, without a path to name.
    assert refusal("models:/cryptolstm-btc/7").startswith("cannot load models:/cryptolstm-btc/7: ")


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
