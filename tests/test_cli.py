import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.config import FIELD_NAMES
from tests.conftest import ROOT, all_runs, sigterm_after_first_epoch

runner = CliRunner()


def _runs():
    return all_runs(MlflowClient())


@pytest.mark.parametrize(
    "args, words",
    [
        (["--coin", "DOGE"], "coin must be one of BTC, ETH; got 'DOGE'."),
        (["--dropout", "1.5"], "dropout must be in [0, 1), got 1.5."),
        (["--neurons", "many"], "neurons must be an integer, got 'many'."),
        (["--data-dir", "/nonexistent/prices"], "data directory /nonexistent/prices does not exist"),
        (["--experiment", "experiments/nope.yaml"], "experiment file experiments/nope.yaml does not exist."),
        (["--end-date", "2010-01-01"], "end_date (2010-01-01) must be after merge_date (2016-01-01)."),
        (["--end-date", "2016-01-05"], "the merged data has 5 day(s); at least 8 are needed"),
        (["--end-date", "2016-01-09"], "9 days are too few for a 0.7/0.15/0.15 split with window_len 7"),
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_no_run(tracking, shared_data, args, words):
    result = runner.invoke(app, ["train", "--data-dir", str(shared_data), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert words in result.stderr and "Traceback" not in result.output
    assert _runs() == []


def test_malformed_csv_from_the_cli(tracking, tmp_path, shared_data):
    data = tmp_path / "prices"
    data.mkdir()
    (data / "btc-usd-daily.csv").write_text("date,open,high,low,close,volume\n2020-01-01,1,1,1,oops,1\n")
    (data / "eth-usd-daily.csv").write_text((shared_data / "eth-usd-daily.csv").read_text())
    result = runner.invoke(app, ["train", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert "btc-usd-daily.csv line 2, column close: value 'oops' does not parse" in result.stderr
    assert _runs() == []


def test_data_dir_comes_from_the_environment(tracking, monkeypatch):
    monkeypatch.setenv("CRYPTOLSTM_DATA_DIR", "/from/env")
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2 and "/from/env does not exist" in result.stderr


def test_every_command_has_help_and_every_config_field_an_option():
    for args in (["--help"], ["train", "--help"], ["search", "--help"]):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for name in FIELD_NAMES:
        assert "--" + name.replace("_", "-") in text


@pytest.mark.slow
def test_unset_options_take_the_experiment_files_values(tracking, shared_data):
    args = ["train", "-q", "--experiment", str(ROOT / "experiments" / "seed-blog.yaml"), "--data-dir",
            str(shared_data), "--merge-date", "2023-06-01", "--neurons", "3", "--layers", "1", "--epochs", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run,) = _runs()
    params = run.data.params
    assert (params["config.batch_size"], params["config.protocol"], params["config.neurons"]) == ("12", "seed", "3")
    assert "persistence" in result.output and run.info.run_id in result.output
    assert mlflow.get_experiment(run.info.experiment_id).name == "cryptolstm-btc"


@pytest.mark.slow
def test_sigterm_mid_training_ends_the_run_killed(tracking, shared_data, tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    env["MLFLOW_TRACKING_URI"] = tracking
    args = [sys.executable, "-m", "cryptolstm", "train", "-q", "--data-dir", str(shared_data), "--merge-date",
            "2023-01-01", "--neurons", "8", "--layers", "1", "--epochs", "100000", "--patience", "100000"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = sigterm_after_first_epoch(proc, MlflowClient(tracking))
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: the run was ended KILLED." in err
    (run,) = _runs()
    assert run.info.status == "KILLED"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--engine", "hyperopt"], "engine must be one of optuna, keras-tuner; got 'hyperopt'."),
        (["--n-trials", "lots"], "n_trials must be an integer, got 'lots'."),
        (["--n-trials", "0"], "n_trials must be an integer >= 1, got 0."),
        (["--algorithm", "hyperband"], "algorithm for optuna must be one of tpe, random, qmc"),
        (["--coin", "XRP"], "coin must be one of BTC, ETH; got 'XRP'."),
        (["--space", "experiments/nope.yaml"], "space file experiments/nope.yaml does not exist."),
        (["--prune", "sometimes"], "prune must be true or false, got 'sometimes'."),
        (["--data-dir", "/nonexistent/prices"], "data directory /nonexistent/prices does not exist"),
        (["--end-date", "2016-01-20"], "the merged data has 20 day(s); at least 22 are needed"),
    ],
)
def test_search_bad_input_is_one_sentence_and_no_run(tracking, shared_data, args, words):
    result = runner.invoke(app, ["search", "--data-dir", str(shared_data), *args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr
    assert _runs() == []


@pytest.mark.parametrize(
    "args, words",
    [
        (["register", "--coin", "DOGE"], "coin must be one of BTC, ETH; got 'DOGE'."),
        (["register", "--run-id", "0123456789abcdef"], "cannot register a BTC model:"),
        (["register", "--experiment-name", "nope"], "MLflow experiment 'nope' does not exist."),
        (["predict", "--coin", "ETH", "--data-dir", "/nonexistent"], "data directory /nonexistent does not exist"),
    ],
)
def test_registry_commands_bad_input_is_one_sentence(tracking, args, words):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr


def test_predict_without_a_champion_says_so(tracking, shared_data):
    result = runner.invoke(app, ["predict", "--coin", "ETH", "--data-dir", str(shared_data)])
    assert result.exit_code == 2 and "cannot load models:/cryptolstm-eth@champion" in result.stderr


def test_none_is_an_unset_mlproject_parameter(tracking):
    # MLflow logs every MLproject parameter on its run; an unset one is "None" there, never blank.
    result = runner.invoke(app, ["train", "--data-dir", "/nonexistent/prices", "--neurons", "None", "--coin", ""])
    assert result.exit_code == 2 and "data directory /nonexistent/prices does not exist" in result.stderr


@pytest.mark.slow
def test_tensorflows_and_mlflows_notices_are_hidden_unless_verbose(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    # A real command that imports TensorFlow and MLflow and fails with its one sentence.
    done = subprocess.run([sys.executable, "-m", "cryptolstm", "data", "verify", "--run", "0123456789abcdef"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: cannot read run 0123456789abcdef: Run with id=0123456789abcdef "
                                        "not found"], done.stderr[-2000:]
    for noise in ("oneDNN", "absl", "use_unbounded_threadpool", "I0000"):
        assert noise not in done.stderr
    # --verbose leaves TensorFlow's and MLflow's settings alone.
    for key in ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "TF_CPP_MIN_LOG_LEVEL"):
        monkeypatch.delenv(key, raising=False)
    assert runner.invoke(app, ["--verbose", "data", "list", "--data-dir", str(tmp_path)]).exit_code == 0
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)]).exit_code == 0
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
