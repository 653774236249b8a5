"""The MLproject runs through `mlflow run` exactly as a user would start it. Where `mlflow run`
itself is the subject (main with every parameter, a search, the uv environment, a bad input's
sentence on its run, the run it leaves in Default) it is the real command; elsewhere the entry
point's command line, as MLflow builds it from MLproject, runs in this process (`launch_here`)."""

import json
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.config import FIELD_NAMES
from tests.conftest import ROOT, all_runs, cli_env

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
    "sealed_from": "2021-11-30",  # the synthetic data's last day: sealed, and after end_date anyway
    "register": "true",
}


def test_each_entry_point_is_one_call_of_its_cli_command_with_matching_options():
    commands = {"main": "train"}
    assert {"main", "search"} <= set(SPEC["entry_points"])
    for entry, spec in SPEC["entry_points"].items():
        command = spec["command"]
        assert command.startswith(f"python -m cryptolstm {commands.get(entry, entry)} ")
        assert "\n" not in command.strip() and "&&" not in command and ";" not in command
        declared = spec.get("parameters") or {}
        for name in declared:
            assert f"--{name.replace('_', '-')} {{{name}}}" in command
        assert set(re.findall(r"\{(\w+)\}", command)) == set(declared)
        options = re.findall(r"--[\w-]+", command)
        assert len(options) == len(set(options)), f"{entry}: an option is passed twice"
    for entry in SPEC["entry_points"]:  # a YAML mapping keeps the last of two equal keys, silently
        block = re.search(rf"^  {entry}:\n(.*?)(?=^  \w|\Z)", MLPROJECT_TEXT, re.S | re.M).group(1)
        keys = re.findall(r"^      (\w+):", block, re.M)
        assert len(keys) == len(set(keys)), f"{entry}: a parameter is declared twice"


def test_no_parameter_defaults_to_an_empty_value():
    # MLflow logs every declared parameter on the run it launches; an empty one would show blank in the UI.
    for entry, spec in SPEC["entry_points"].items():
        for name, param in (spec.get("parameters") or {}).items():
            assert str(param.get("default", "")).strip(), (entry, name)


def _no_empty_params(run) -> None:
    """A run lists the values used: none empty, and no placeholder for a parameter not given."""
    assert run.data.params and not {"", "default", "None"} & set(run.data.params.values()), run.data.params


def test_search_takes_the_issues_parameters():
    from cryptolstm.options import SearchOptions

    assert {"coin", "engine", "n_trials", "timeout", "study_name", "storage", "seed", "data_dir", "protocol",
            "space", "max_epochs"} <= {f.name for f in fields(SearchOptions)}


def test_main_takes_every_config_field():
    """Declared: the two with a default of their own; every config field is passed when given
    (`-P layers=2` -> `--layers 2`: MLflow logs only what was given; the run's test below gives all)."""
    assert set(SPEC["entry_points"]["main"]["parameters"]) == {"experiment", "register"}
    assert set(EVERY_PARAM) | {"data_dir"} == set(FIELD_NAMES) | {"experiment", "register"}


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


@pytest.fixture
def launch_here(monkeypatch):
    """``launch_here(entry, params)``: ``mlflow run . -e entry -P ...`` on the current store, done in
    this process (from this test's working directory): MLflow's own project code makes the run (the
    entry point's parameters logged) and the command line from MLproject's template; that command
    line, less its ``python -m cryptolstm``, goes to `cryptolstm.cli.app` through typer's CliRunner
    with the run's id in MLFLOW_RUN_ID, and the run is ended by the exit code, as `mlflow run` ends
    it. Returns (client, the launched run, the CliRunner result)."""
    from mlflow.entities import RunStatus
    from mlflow.projects import _resolve_experiment_id
    from mlflow.projects.utils import _create_run, load_project
    from mlflow.tracking import fluent

    def launch(entry, params, experiment="e2e", ok=True):
        experiment_id = _resolve_experiment_id(experiment_name=experiment)
        launched = _create_run(str(ROOT), experiment_id, str(ROOT), None, entry, params).info.run_id
        argv = shlex.split(load_project(str(ROOT)).get_entry_point(entry).compute_command(params, None))
        assert argv[:3] == ["python", "-m", "cryptolstm"], argv
        with monkeypatch.context() as env:
            env.setenv("MLFLOW_RUN_ID", launched)
            env.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
            env.setattr(fluent, "_active_experiment_id", None)  # as in a new process: no experiment set yet
            result = CliRunner().invoke(app, argv[3:])
        assert (result.exit_code == 0) == ok, result.output[-3000:] + "".join(
            traceback.format_exception(*result.exc_info) if result.exc_info else "")
        client = MlflowClient()
        if not RunStatus.is_terminated(client.get_run(launched).info.status):
            client.set_terminated(launched, "FINISHED" if result.exit_code == 0 else "FAILED")
        return client, client.get_run(launched), result

    return launch


UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


@pytest.mark.slow
def test_mlflow_run_main_passes_every_parameter_and_logs_the_run(tmp_path, synthetic_data, new_store):
    """With the uv environment manager where uv is installed (python_env.yaml is enough to run the
    project), else with this Python (local; the other `mlflow run`s here use it)."""
    new_store(tmp_path)
    env_manager = "uv" if UV else "local"
    client, run, done = _mlflow_run(tmp_path, {**EVERY_PARAM, "data_dir": str(synthetic_data)}, env_manager, 1500)
    assert run.info.status == "FINISHED" and run.data.tags.get("mlflow.project.env", "local") == env_manager
    _no_empty_params(run)
    params = run.data.params
    for name, value in EVERY_PARAM.items():  # under the name given, and under config.<name> the value used
        assert params[name] == value, name
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


SEARCH_SPACE = """base: {base}
space:
  window_len: {{type: int, low: 3, high: 8}}
  neurons: {{type: categorical, choices: [2, 3]}}
  dropout: {{type: float, low: 0.0, high: 0.4}}
"""


def _search_params(tmp_path, data, engine, algorithm) -> dict:
    """A non-default value for the search entry point's parameters, a tiny space and base."""
    (tmp_path / "base.yaml").write_text("layers: 1\nneurons: 3\nepochs: 2\nbatch_size: 64\n")
    (tmp_path / "space.yaml").write_text(SEARCH_SPACE.format(base=tmp_path / "base.yaml"))
    return {"coin": "ETH", "engine": engine, "algorithm": algorithm, "space": str(tmp_path / "space.yaml"),
            "n_trials": "2", "max_epochs": "2", "study_name": "e2e-study", "storage":
            f"sqlite:///{tmp_path / 'optuna.db'}", "seed": "4", "data_dir": str(data),
            "protocol": "honest", "merge_date": "2021-01-01", "end_date": "2021-11-29", "prune": "false",
            "tuner_dir": str(tmp_path / "kt"), "overwrite": "false", "timeout": "600", "register": "true"}


def _a_parent_with_trial_children(client, parent, stdout, tmp_path, engine, algorithm) -> None:
    assert parent.info.status == "FINISHED"
    _no_empty_params(parent)  # n_workers, heartbeat... were left unset: "None" or their own default
    assert f"(id {parent.info.experiment_id})" in stdout
    tags = parent.data.tags
    assert (tags["coin"], tags["engine"], tags["study_name"]) == ("ETH", engine, "e2e-study")
    assert tags["space_file"] == str(tmp_path / "space.yaml") and tags["search.seed"] == "4"
    assert tags["search.algorithm"] == algorithm
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


@pytest.mark.slow
def test_mlflow_run_search_makes_a_parent_with_trial_children(tmp_path, synthetic_data, new_store):
    new_store(tmp_path)
    client, parent, done = _mlflow_run(tmp_path, _search_params(tmp_path, synthetic_data, "optuna", "tpe"),
                                       entry="search")
    _a_parent_with_trial_children(client, parent, done.stdout, tmp_path, "optuna", "tpe")
    assert (tmp_path / "optuna.db").is_file() and not (tmp_path / "kt").exists()


@pytest.mark.slow  # MLflow's run reads the commit with git
def test_the_search_entry_point_takes_keras_tuner_to_its_tuner_dir(tracking, tmp_path, synthetic_data, launch_here):
    """engine, algorithm, tuner_dir and study_name reach keras-tuner: the study's directory, claimed by
    another search, is refused before any run or fit (the engine's search itself: tests/test_search.py)."""
    from cryptolstm.search.keras_tuner_engine import IDENTITY_FILE

    claimed = tmp_path / "kt" / "e2e-study"
    claimed.mkdir(parents=True)
    (claimed / IDENTITY_FILE).write_text(json.dumps({"algorithm": "bayesian", "coin": "BTC", "space_digest": "x"}))
    params = _search_params(tmp_path, synthetic_data, "keras-tuner", "hyperband")
    client, run, done = launch_here("search", params, ok=False)
    sentence = done.stderr.removeprefix("error: ").strip()
    assert done.exit_code == 2 and sentence.startswith(f"{claimed} holds a keras-tuner search for {{'algorithm': "
                                                        "'bayesian', 'coin': 'BTC', 'space_digest': 'x'}, not {'coin': "
                                                        "'ETH', 'space_digest': ")
    assert sentence.endswith(", 'algorithm': 'hyperband'}; choose another study_name or pass overwrite=true.")
    assert run.info.status == "FAILED" and run.data.tags["error"] == sentence and not run.data.metrics
    assert run.info.run_name == "failed · search"
    assert [r.info.run_id for r in all_runs(client)] == [run.info.run_id] and not (tmp_path / "optuna.db").exists()


@pytest.mark.slow
def test_mlflow_run_with_bad_input_fails_with_one_sentence_recorded_on_the_run(tmp_path, synthetic_data, new_store):
    new_store(tmp_path)
    client, run, done = _mlflow_run(tmp_path, {"coin": "DOGE", "data_dir": str(synthetic_data)}, ok=False)
    assert "error: coin must be one of BTC, ETH; got 'DOGE'." in done.stderr
    assert "Traceback" not in done.stderr
    assert run.info.status == "FAILED" and run.data.tags["error"] == "coin must be one of BTC, ETH; got 'DOGE'."
    assert not client.list_artifacts(run.info.run_id) and not run.data.metrics
    assert run.info.run_name == "failed · train"  # named after the command the entry point runs


@pytest.mark.slow
def test_mlflow_run_register_predict_evaluate_and_refit(tracking, tmp_path, synthetic_data, launch_here):
    """register through `mlflow run` as the README writes it (no --experiment-name); predict, evaluate
    and refit from the command lines their entry points give, each on a run made as `mlflow run` makes it."""
    from cryptolstm.data import load_market
    from cryptolstm.tracking import tracked_train
    from tests.conftest import tiny_config

    data = str(synthetic_data)
    cfg = tiny_config(synthetic_data, merge_date="2021-01-01", end_date="2021-10-31")  # November is new to it
    run_id, _ = tracked_train(cfg, load_market(synthetic_data, cfg.merge_date, cfg.end_date))
    # `mlflow run` makes its run in Default, the record goes to the coin's experiment, and `mlflow run`
    # still ends its own run (exit 0)
    client, launched, done = _mlflow_run(tmp_path, {"coin": "BTC", "experiment_name": "cryptolstm-btc"},
                                         entry="register", experiment=None)
    assert "registered cryptolstm-btc version 1 (now @champion): first champion;" in done.stdout
    assert "Traceback" not in done.stderr
    assert client.get_model_version_by_alias("cryptolstm-btc", "champion").tags["source_run"] == run_id
    # The run `mlflow run` made is a record of the registration, not an empty run with a random name.
    record = client.get_run(launched.data.tags["cryptolstm.record_run"])
    assert client.get_experiment(record.info.experiment_id).name == "cryptolstm-btc"
    assert record.info.run_name == "register-btc" and record.info.status == "FINISHED"
    assert launched.info.run_name == "register-btc-launch" and launched.info.status == "FINISHED"
    assert (record.data.tags["registered.version"], record.data.tags["registered.source_run"]) == ("1", run_id)
    assert record.data.tags["mlflow.note.content"] in done.stdout
    _no_empty_params(record)
    _, record, done = launch_here("predict", {"coin": "BTC", "data_dir": data})
    assert "BTC close on 2021-12-01:" in done.stdout and "(version 1)" in done.stdout
    assert record.info.run_name == "predict-btc" and record.data.metrics["forecast_close"] > 0
    assert "forecast.csv" in {a.path for a in client.list_artifacts(record.info.run_id)}
    _no_empty_params(record)
    _, _, done = launch_here("predict", {"coin": "BTC", "data_dir": data, "model_uri": f"runs:/{run_id}/model"})
    assert f"model runs:/{run_id}/model" in done.stdout
    # evaluate: the champion on the days after its data (the entry point's defaults)
    _, record, done = launch_here("evaluate", {"data_dir": data})
    assert "cryptolstm-btc version 1 on 30 new day(s), 2021-11-01..2021-11-30" in done.stdout
    m = record.data.metrics
    assert record.info.run_name == f"live {m['live/mae_ratio']:.3f} · evaluate-btc-v1" and record.info.status == "FINISHED"
    assert record.data.tags["evaluated.source_run"] == run_id and record.data.metrics["live/days"] == 30
    assert record.data.params["evaluate.since"] == "2021-11-01" and record.data.params["coin"] == "BTC"
    assert record.data.tags["evaluated.model_uri"] == "models:/cryptolstm-btc@champion"  # --coin's champion
    assert "live/forecasts.csv" in {a.path for a in client.list_artifacts(record.info.run_id, "live")}
    assert client.get_model_version("cryptolstm-btc", "1").tags["live.run"] == record.info.run_id  # new days
    _no_empty_params(record)
    # refit: the run `mlflow run` made is the refit's training run, registered as version 2; warm, it
    # goes on from version 1's own network for at most warm_epochs epochs
    _, record, done = launch_here("refit", {"data_dir": data, "force": "true", "retrain": "warm", "warm_epochs": "1"})
    assert "refit of cryptolstm-btc version 1:" in done.stdout
    assert "registered cryptolstm-btc version 2 (now @champion): made champion by --force over version 1;" in done.stdout
    assert record.info.run_name.endswith(" · refit-1x4-w7-s7") and record.info.status == "FINISHED"
    assert (record.data.tags["refit.of_version"], record.data.tags["data.last_date"]) == ("1", "2021-11-30")
    assert (record.data.tags["init.from"], record.data.params["config.epochs"]) == ("cryptolstm-btc version 1", "1")
    assert record.data.params["config.end_date"] == "2021-11-30" and record.data.params["config.train_frac"] == "0.85"
    version = client.get_model_version_by_alias("cryptolstm-btc", "champion")
    assert (str(version.version), version.tags["source_run"]) == ("2", record.info.run_id)
    assert (record.data.params["force"], record.data.params["coin"]) == ("true", "BTC")
    assert record.data.tags["refit.of_model"] == "models:/cryptolstm-btc@champion"  # --coin's champion
    # in Default only the run register's `mlflow run` made (the others named an experiment)
    assert [r.info.run_id for r in client.search_runs(["0"])] == [launched.info.run_id]


@pytest.mark.slow
def test_mlflow_run_backtest_and_report(tracking, tmp_path, synthetic_data, launch_here):
    (tmp_path / "tiny.yaml").write_text("merge_date: '2021-01-01'\nlayers: 1\nneurons: 3\nepochs: 1\nbatch_size: 64\n")
    params = {"coin": "ETH", "config": str(tmp_path / "tiny.yaml"), "start": "2021-11-01", "end": "2021-11-30",
              "fold_months": "1", "seeds": "2", "max_epochs": "1", "workers": "1", "arima": "false",
              "ma_window": "3", "retrain": "warm", "retrain_every": "1", "warm_epochs": "1",
              "data_dir": str(synthetic_data)}
    client, parent, done = launch_here("backtest", params)
    assert parent.info.status == "FINISHED" and parent.data.tags["cryptolstm.entry"] == "backtest"
    assert parent.data.params["backtest.ma_window"] == "3" and parent.data.params["config.coin"] == "ETH"
    assert (parent.data.params["backtest.retrain"], parent.data.params["backtest.warm_epochs"]) == ("warm", "1")
    assert "arima/usd/mae" not in parent.data.metrics and "moving_average/usd/mae" in parent.data.metrics
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 1 and children[0].data.params["fold.n_test"] == "30"
    report = {"experiment": "e2e", "output": str(tmp_path / "r.md")}
    _, record, done = launch_here("report", report)
    assert parent.info.run_id[:8] in (tmp_path / "r.md").read_text()
    assert record.info.run_name == "report-e2e" and "report.md" in {a.path for a in client.list_artifacts(
        record.info.run_id)}


@pytest.mark.slow  # MLflow's run reads the commit with git
def test_mlflow_run_fetch_bad_coin_is_one_sentence(tracking, tmp_path, launch_here):
    _, run, done = launch_here("fetch", {"coins": "BTC,DOGE", "data_dir": str(tmp_path / "d")}, ok=False)
    assert done.exit_code == 2 and done.stderr == "error: coin must be one of BTC, ETH; got 'DOGE'.\n"
    assert run.info.status == "FAILED" and run.data.tags["error"] == "coin must be one of BTC, ETH; got 'DOGE'."
    assert run.info.run_name == "failed · fetch" and not (tmp_path / "d" / "manifest.json").exists()
