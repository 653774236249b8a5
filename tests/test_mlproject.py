"""The MLproject runs through `mlflow run` exactly as a user would start it."""

import re
import shutil
from collections import Counter
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from cryptolstm.config import FIELD_NAMES
from tests.conftest import ROOT, cli_env

MLPROJECT_TEXT = (ROOT / "MLproject").read_text()
SPEC = yaml.safe_load(MLPROJECT_TEXT)

# A non-default value for every parameter of `main`, to see each one reach the code.
EVERY_PARAM = {
    "experiment": "experiments/seed-blog.yaml",
    "coin": "ETH",
    "protocol": "honest",
    "merge_date": "2021-01-01",
    "end_date": "2021-11-29",
    "fill_gaps": "True",
    "features": "close,log_return",
    "window_len": "5",
    "horizon": "2",
    "train_frac": "0.6",
    "val_frac": "0.2",
    "cell": "gru",
    "layers": "2",
    "neurons": "3",
    "dropout": "0.1",
    "activation": "relu",
    "recurrent_activation": "hard_sigmoid",
    "output_activation": "linear",
    "loss": "huber",
    "optimizer": "rmsprop",
    "learning_rate": "0.002",
    "batch_size": "32",
    "epochs": "2",
    "patience": "1",
    "shuffle": "True",
    "seed": "5",
    "head": "quantile",
    "ensemble": "2",
    "register": "true",
}


def test_each_entry_point_is_one_call_of_its_cli_command_with_matching_options():
    commands = {"main": "train"}
    assert {"main", "search"} <= set(SPEC["entry_points"])
    for entry, spec in SPEC["entry_points"].items():
        command = spec["command"]
        assert command.startswith(f"python -m cryptolstm {commands.get(entry, entry)} ")
        assert "\n" not in command.strip() and "&&" not in command and ";" not in command
        for name in spec["parameters"]:
            assert f"--{name.replace('_', '-')} {{{name}}}" in command
        assert set(re.findall(r"\{(\w+)\}", command)) == set(spec["parameters"])
        options = re.findall(r"--[\w-]+", command)
        assert len(options) == len(set(options)), f"{entry}: an option is passed twice"
    for entry in SPEC["entry_points"]:  # a YAML mapping keeps the last of two equal keys, silently
        block = re.search(rf"^  {entry}:\n(.*?)(?=^  \w|\Z)", MLPROJECT_TEXT, re.S | re.M).group(1)
        keys = re.findall(r"^      (\w+):", block, re.M)
        assert len(keys) == len(set(keys)), f"{entry}: a parameter is declared twice"


def test_no_parameter_defaults_to_an_empty_value():
    # MLflow logs every parameter on the run it launches; an empty one would show blank in the UI.
    for entry, spec in SPEC["entry_points"].items():
        for name, param in spec["parameters"].items():
            assert str(param.get("default", "")).strip(), (entry, name)


def _no_empty_params(run) -> None:
    assert run.data.params and "" not in run.data.params.values(), run.data.params


def test_search_takes_the_issues_parameters():
    params = SPEC["entry_points"]["search"]["parameters"]
    assert {"coin", "engine", "n_trials", "timeout", "study_name", "storage", "seed", "data_dir", "protocol",
            "space", "max_epochs"} <= set(params)


def test_main_takes_every_config_field():
    params = SPEC["entry_points"]["main"]["parameters"]
    assert set(params) == set(FIELD_NAMES) | {"experiment", "register"}
    assert set(EVERY_PARAM) | {"data_dir"} == set(params)


def _mlflow_run(tmp_path, params, env_manager="local", timeout=900, entry="main", ok=True, experiment="e2e"):
    # As with an activated virtualenv: `python` and `uv` are this interpreter's.
    env = cli_env(f"sqlite:///{tmp_path / 'mlflow.db'}", PATH=f"{Path(sys.executable).parent}:{cli_env()['PATH']}")
    args = [str(Path(sys.executable).parent / "mlflow"), "run", str(ROOT), "-e", entry, "--env-manager",
            env_manager, *(["--experiment-name", experiment] if experiment else [])]
    for key, value in params.items():
        args += ["-P", f"{key}={value}"]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert (done.returncode == 0) == ok, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name(experiment or "Default").experiment_id],
                              order_by=["attributes.start_time DESC"])
    run = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)  # this launch's run
    return client, run, done


@pytest.mark.slow
def test_mlflow_run_main_passes_every_parameter_and_logs_the_run(tmp_path, synthetic_data):
    client, run, done = _mlflow_run(tmp_path, {**EVERY_PARAM, "data_dir": str(synthetic_data)})
    assert run.info.status == "FINISHED"
    _no_empty_params(run)
    params = run.data.params
    for name, value in EVERY_PARAM.items():
        if name not in ("experiment", "register"):
            assert params[f"config.{name}"] == value, name
    assert params["config.data_dir"] == str(synthetic_data)
    assert run.data.tags["experiment_file"].endswith("seed-blog.yaml")
    assert run.data.tags["split.test.last"] == "2021-11-29" and run.data.tags["coin"] == "ETH"
    # named as `cryptolstm train` names it, not at random: its result, then how it differs from the 2018 model
    assert run.info.run_name.startswith("crps val ") and run.info.run_name.endswith(
        " · quantile-h2-2features-gru-to2021-11-29-2x3-w5-x2-s5")
    # --register: the first ETH model is registered and champion
    assert client.get_model_version_by_alias("cryptolstm-eth", "champion").tags["source_run"] == run.info.run_id
    assert "registered cryptolstm-eth version 1 (now @champion): first champion;" in done.stdout
    metrics = run.data.metrics
    for key in ("test/mae", "test/rmse", "test/mape", "test/persistence_mae", "test/persistence_rmse",
                "test/mae_ratio", "test/direction_accuracy", "val/mae", "val/persistence_mae", "train/loss",
                "val/loss", "test/coverage_80", "test/crps_ratio_garch", "test/h2/mae_ratio", "test/h2/crps",
                "test/member0/mae_ratio", "test/member1/mae_ratio"):  # an ensemble of two, each member beside it
        assert key in metrics, key
    for key in ("val/loss", "member1/val/loss"):  # each member's every epoch, the second member's apart
        steps = Counter(p.step for p in client.get_metric_history(run.info.run_id, key))
        assert steps == {epoch: 1 for epoch in range(int(metrics["epochs_run"]))}, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/eth_price_volume.png", "plots/forecast_test.png", "plots/learning_curves.png"} <= artifacts
    assert (tmp_path / "mlruns").is_dir()  # artifacts land beside the store, not in the project
    assert "persistence" in done.stdout
    # the model holds both members' networks and the features it reads
    model = Path(client.download_artifacts(run.info.run_id, "keras"))
    assert sorted(p.name for p in model.iterdir()) == ["lstm-1.keras", "lstm.keras"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv", path=str(Path(sys.executable).parent)) is None and shutil.which("uv") is None,
                    reason="uv is not installed")
def test_mlflow_run_with_the_uv_env_manager(tmp_path, synthetic_data):
    params = {"data_dir": str(synthetic_data), "merge_date": "2021-06-01", "neurons": "2", "layers": "1", "epochs": "1"}
    _, run, _ = _mlflow_run(tmp_path, params, env_manager="uv", timeout=1500)
    assert run.info.status == "FINISHED" and run.data.params["config.neurons"] == "2"


SEARCH_SPACE = """base: {base}
space:
  window_len: {{type: int, low: 3, high: 8}}
  neurons: {{type: categorical, choices: [2, 3]}}
  dropout: {{type: float, low: 0.0, high: 0.4}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("engine, algorithm", [("optuna", "tpe"), ("keras-tuner", "hyperband")])
def test_mlflow_run_search_makes_a_parent_with_trial_children(tmp_path, synthetic_data, engine, algorithm):
    (tmp_path / "base.yaml").write_text("layers: 1\nneurons: 3\nepochs: 2\nbatch_size: 64\n")
    (tmp_path / "space.yaml").write_text(SEARCH_SPACE.format(base=tmp_path / "base.yaml"))
    params = {"coin": "ETH", "engine": engine, "algorithm": algorithm, "space": str(tmp_path / "space.yaml"),
              "n_trials": "2", "max_epochs": "2", "study_name": "e2e-study", "storage":
              f"sqlite:///{tmp_path / 'optuna.db'}", "seed": "4", "data_dir": str(synthetic_data),
              "protocol": "honest", "merge_date": "2021-01-01", "end_date": "2021-11-29", "prune": "false",
              "tuner_dir": str(tmp_path / "kt"), "overwrite": "false", "timeout": "600", "register": "true"}
    client, parent, done = _mlflow_run(tmp_path, params, entry="search")
    assert parent.info.status == "FINISHED"
    _no_empty_params(parent)  # n_workers, heartbeat... were left unset: "None" or their own default
    assert f"(id {parent.info.experiment_id})" in done.stdout
    tags = parent.data.tags
    assert (tags["coin"], tags["engine"], tags["study_name"]) == ("ETH", engine, "e2e-study")
    assert tags["space_file"] == str(tmp_path / "space.yaml") and tags["search.seed"] == "4"
    assert tags["split.test.last"] == "2021-11-29" and "trial" not in tags  # the parent is no trial
    m = parent.data.metrics  # the study's parent is named after the study, its result first
    assert parent.info.run_name == f"val {m['val/mae_ratio']:.3f} test {m['test/mae_ratio']:.3f} · e2e-study"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) >= 2 and all(c.data.tags["trial_state"] == "complete" for c in children)
    assert all(c.data.params["config.coin"] == "ETH" and c.data.params["config.seed"] == "4" for c in children)
    assert "test/mae_ratio" in parent.data.metrics
    # The chosen model was registered at the end of the search.
    version = client.get_model_version_by_alias("cryptolstm-eth", "champion")
    assert version.tags["source_run"] == parent.info.run_id
    if engine == "optuna":
        assert (tmp_path / "optuna.db").is_file()
    else:
        assert (tmp_path / "kt" / "e2e-study").is_dir()


@pytest.mark.slow
def test_mlflow_run_with_bad_input_fails_with_one_sentence_recorded_on_the_run(tmp_path, synthetic_data):
    client, run, done = _mlflow_run(tmp_path, {"coin": "DOGE", "data_dir": str(synthetic_data)}, ok=False)
    assert "error: coin must be one of BTC, ETH; got 'DOGE'." in done.stderr
    assert "Traceback" not in done.stderr
    assert run.info.status == "FAILED" and run.data.tags["error"] == "coin must be one of BTC, ETH; got 'DOGE'."
    assert not client.list_artifacts(run.info.run_id) and not run.data.metrics


@pytest.mark.slow
def test_mlflow_run_register_predict_evaluate_and_refit(tracking, tmp_path, synthetic_data):
    from cryptolstm.data import load_market
    from cryptolstm.tracking import tracked_train
    from tests.conftest import tiny_config

    data = str(synthetic_data)
    cfg = tiny_config(synthetic_data, merge_date="2021-01-01", end_date="2021-10-31")  # November is new to it
    run_id, _ = tracked_train(cfg, load_market(synthetic_data, cfg.merge_date, cfg.end_date))
    client, record, done = _mlflow_run(tmp_path, {"coin": "BTC", "experiment_name": "cryptolstm-btc"},
                                       entry="register")
    assert "registered cryptolstm-btc version 1 (now @champion): first champion;" in done.stdout
    assert client.get_model_version_by_alias("cryptolstm-btc", "champion").tags["source_run"] == run_id
    # The run `mlflow run` made is a record of the registration, not an empty run with a random name.
    assert record.info.run_name == "register-btc" and record.info.status == "FINISHED"
    assert (record.data.tags["registered.version"], record.data.tags["registered.source_run"]) == ("1", run_id)
    assert record.data.tags["mlflow.note.content"] in done.stdout
    _no_empty_params(record)
    _, record, done = _mlflow_run(tmp_path, {"coin": "BTC", "data_dir": data}, entry="predict")
    assert "BTC close on 2021-12-01:" in done.stdout and "(version 1)" in done.stdout
    assert record.info.run_name == "predict-btc" and record.data.metrics["forecast_close"] > 0
    assert "forecast.csv" in {a.path for a in client.list_artifacts(record.info.run_id)}
    _no_empty_params(record)
    assert not client.search_runs(["0"])  # nothing in the Default experiment (all of these named one)
    _, _, done = _mlflow_run(tmp_path, {"coin": "BTC", "data_dir": data, "model_uri": f"runs:/{run_id}/model"},
                             entry="predict")
    assert f"model runs:/{run_id}/model" in done.stdout
    # as the README writes it, without --experiment-name: `mlflow run` makes its run in Default, the
    # record goes to the coin's experiment, and `mlflow run` still ends its own run (exit 0)
    _, launched, done = _mlflow_run(tmp_path, {"coin": "BTC", "data_dir": data}, entry="predict", experiment=None)
    assert "BTC close on 2021-12-01:" in done.stdout and "Traceback" not in done.stderr
    record = client.get_run(launched.data.tags["cryptolstm.record_run"])
    assert client.get_experiment(record.info.experiment_id).name == "cryptolstm-btc"
    assert record.info.run_name == "predict-btc" and record.info.status == "FINISHED"
    assert launched.info.run_name == "predict-btc-launch" and launched.info.status == "FINISHED"
    # evaluate: the champion on the days after its data (the entry point's defaults)
    _, record, done = _mlflow_run(tmp_path, {"data_dir": data}, entry="evaluate")
    assert "cryptolstm-btc version 1 on 30 new day(s), 2021-11-01..2021-11-30" in done.stdout
    m = record.data.metrics
    assert record.info.run_name == f"live {m['live/mae_ratio']:.3f} · evaluate-btc-v1" and record.info.status == "FINISHED"
    assert record.data.tags["evaluated.source_run"] == run_id and record.data.metrics["live/days"] == 30
    assert record.data.params["evaluate.since"] == "2021-11-01" and record.data.params["model"].endswith("@champion")
    assert "live/forecasts.csv" in {a.path for a in client.list_artifacts(record.info.run_id, "live")}
    assert client.get_model_version("cryptolstm-btc", "1").tags["live.run"] == record.info.run_id  # new days
    _no_empty_params(record)
    # refit: the run `mlflow run` made is the refit's training run, registered as version 2; warm, it
    # goes on from version 1's own network for at most warm_epochs epochs
    _, record, done = _mlflow_run(tmp_path, {"data_dir": data, "force": "true", "retrain": "warm", "warm_epochs": "1"},
                                  entry="refit")
    assert "refit of cryptolstm-btc version 1:" in done.stdout
    assert "registered cryptolstm-btc version 2 (now @champion): made champion by --force over version 1;" in done.stdout
    assert record.info.run_name.endswith(" · refit-1x4-w7-s7") and record.info.status == "FINISHED"
    assert (record.data.tags["refit.of_version"], record.data.tags["data.last_date"]) == ("1", "2021-11-30")
    assert (record.data.tags["init.from"], record.data.params["config.epochs"]) == ("cryptolstm-btc version 1", "1")
    assert record.data.params["config.end_date"] == "2021-11-30" and record.data.params["config.train_frac"] == "0.85"
    version = client.get_model_version_by_alias("cryptolstm-btc", "champion")
    assert (str(version.version), version.tags["source_run"]) == ("2", record.info.run_id)
    assert (record.data.params["force"], record.data.params["model"]) == ("true", "models:/cryptolstm-btc@champion")


@pytest.mark.slow
def test_mlflow_run_backtest_and_report(tmp_path, synthetic_data):
    (tmp_path / "tiny.yaml").write_text("merge_date: '2021-01-01'\nlayers: 1\nneurons: 3\nepochs: 1\nbatch_size: 64\n")
    params = {"coin": "ETH", "config": str(tmp_path / "tiny.yaml"), "start": "2021-11-01", "end": "2021-11-30",
              "fold_months": "1", "seeds": "2", "max_epochs": "1", "workers": "1", "arima": "false",
              "ma_window": "3", "retrain": "warm", "retrain_every": "1", "warm_epochs": "1",
              "data_dir": str(synthetic_data)}
    client, parent, done = _mlflow_run(tmp_path, params, entry="backtest")
    assert parent.info.status == "FINISHED" and parent.data.tags["cryptolstm.entry"] == "backtest"
    assert parent.data.params["backtest.ma_window"] == "3" and parent.data.params["config.coin"] == "ETH"
    assert (parent.data.params["backtest.retrain"], parent.data.params["backtest.warm_epochs"]) == ("warm", "1")
    assert "arima/usd/mae" not in parent.data.metrics and "moving_average/usd/mae" in parent.data.metrics
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 1 and children[0].data.params["fold.n_test"] == "30"
    report = {"experiment": "e2e", "output": str(tmp_path / "r.md")}
    _, record, done = _mlflow_run(tmp_path, report, entry="report")
    assert parent.info.run_id[:8] in (tmp_path / "r.md").read_text()
    assert record.info.run_name == "report-e2e" and "report.md" in {a.path for a in client.list_artifacts(
        record.info.run_id)}


@pytest.mark.slow
def test_mlflow_run_fetch_bad_coin_is_one_sentence(tmp_path):
    _, run, done = _mlflow_run(tmp_path, {"coins": "BTC,DOGE", "data_dir": str(tmp_path / "d")}, entry="fetch", ok=False)
    assert "error: coin must be one of BTC, ETH; got 'DOGE'." in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d" / "manifest.json").exists()
