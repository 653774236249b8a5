import os

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.config import FIELD_NAMES
from tests.conftest import ROOT, all_runs, run_cli, sigterm_after_first_epoch, start_cli

runner = CliRunner()


def _runs():
    return all_runs(MlflowClient())


@pytest.fixture
def refusals(tracking) -> str:
    """An empty store (`tracking`) that each refusal below must leave without a run."""
    assert _runs() == []
    return tracking


@pytest.mark.parametrize(
    "args, words",
    [
        (["--coin", "DOGE"], "coin must be one of BTC, ETH; got 'DOGE'."),
        (["--dropout", "1.5"], "dropout must be in [0, 1), got 1.5."),
        (["--neurons", "many"], "neurons must be an integer, got 'many'."),
        (["--features", "close,nope"], "unknown feature 'nope'; features are close, volume, log_return"),
        (["--features", "close,close"], "features name 'close' twice."),
        (["--cell", "rnn"], "cell must be one of lstm, gru; got 'rnn'."),
        (["--ensemble", "0"], "ensemble must be an integer >= 1, got 0."),
        (["--ensemble", "1000"], "ensemble must be at most 20, got 1000: each member is a network trained, exported "
                                 "and registered in full"),
        (["--horizon", "400"], "horizon must be at most 30, got 400: past a month ahead"),
        (["--window-len", "5000"], "window_len must be at most 365, got 5000"),
        (["--head", "nope"], "head must be one of point, gaussian, quantile"),
        (["--head", "garch_scaled"], "head garch_scaled scales its forecast by the garch_vol feature, which the "
                                     "features (close,volume) lack; add it: --features close,volume,garch_vol."),
        (["--features", "ranges,parkinson"], "'ranges' is a set of features (log_return,abs_return,parkinson,"
                                             "garman_klass,realized_vol_5,realized_vol_22), which stands alone"),
        (["--data-dir", "/nonexistent/prices"], "data directory /nonexistent/prices does not exist"),
        (["--experiment", "experiments/nope.yaml"], "experiment file experiments/nope.yaml does not exist."),
        (["--experiment", str(ROOT / "experiments")], f"experiment file {ROOT / 'experiments'} is a directory, not a file."),
        (["--end-date", "2023-02-30"], "end_date 2023-02-30 is not a day of the calendar (February 2023 has 28 days)."),
        (["--end-date", "2010-01-01"], "end_date (2010-01-01) must be after merge_date (2016-01-01)."),
        (["--end-date", "2020-01-09"], "9 days are too few for a 0.7/0.15/0.15 split (honest protocol) with "
                                       "window_len 7 and horizon 1; widen merge_date..end_date."),
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_no_run(refusals, synthetic_data, args, words):
    result = runner.invoke(app, ["train", "--data-dir", str(synthetic_data), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert words in result.stderr and "Traceback" not in result.output
    assert _runs() == []


def test_malformed_csv_from_the_cli(refusals, tmp_path, synthetic_data):
    data = tmp_path / "prices"
    data.mkdir()
    (data / "btc-usd-daily.csv").write_text("date,open,high,low,close,volume\n2020-01-01,1,1,1,oops,1\n")
    (data / "eth-usd-daily.csv").write_text((synthetic_data / "eth-usd-daily.csv").read_text())
    result = runner.invoke(app, ["train", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert "btc-usd-daily.csv line 2, column close: value 'oops' does not parse" in result.stderr
    assert _runs() == []


def test_a_data_dir_that_is_a_file_is_named_as_such(refusals, synthetic_data):
    path = synthetic_data / "btc-usd-daily.csv"
    result = runner.invoke(app, ["train", "--data-dir", str(path)])
    assert result.exit_code == 2, result.output
    assert f"data directory {path} is a file, not a directory" in result.stderr and "Traceback" not in result.output
    assert _runs() == []


def test_an_implausible_volume_is_named_where_it_enters_not_blamed_on_the_learning_rate(refusals, tmp_path,
                                                                                         synthetic_data):
    """A 1e300 volume in a price file is refused when the file is loaded for training, with the file,
    line, column and value; it never reaches the network as inf (once reported as a NaN loss)."""
    import pandas as pd

    data = tmp_path / "prices"
    data.mkdir()
    btc = pd.read_csv(synthetic_data / "btc-usd-daily.csv")
    row = int(btc.index[btc["date"] == "2021-06-01"][0])
    btc.loc[row, "volume"] = 1e300
    btc.to_csv(data / "btc-usd-daily.csv", index=False)
    (data / "eth-usd-daily.csv").write_bytes((synthetic_data / "eth-usd-daily.csv").read_bytes())
    result = runner.invoke(app, ["train", "--data-dir", str(data), "--merge-date", "2021-01-01", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"error: {data / 'btc-usd-daily.csv'} line {row + 2}, column volume: 1e+300 on "
                                     f"2021-06-01 is outside the plausible range (a daily volume is 0 or 1 to 1e+14 "
                                     f"USD); check the file for a mistyped or mis-scaled value.")
    assert "learning_rate" not in result.output and "Traceback" not in result.output
    assert _runs() == []


def test_data_dir_comes_from_the_environment(refusals, monkeypatch):
    monkeypatch.setenv("CRYPTOLSTM_DATA_DIR", "/from/env")
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2 and "/from/env does not exist" in result.stderr


def test_every_command_has_help_and_every_config_field_an_option():
    for args in (["--help"], *([c, "--help"] for c in ("train", "search", "register", "predict", "evaluate", "refit",
                                                       "backtest", "report", "fetch", "data"))):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for name in FIELD_NAMES:
        assert "--" + name.replace("_", "-") in text


@pytest.mark.slow
def test_unset_options_take_the_experiment_files_values(tracking, synthetic_data):
    args = ["train", "-q", "--experiment", str(ROOT / "experiments" / "seed-blog.yaml"), "--data-dir",
            str(synthetic_data), "--merge-date", "2021-06-01", "--neurons", "3", "--layers", "1", "--epochs", "1",
            "--cell", "gru"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run,) = _runs()
    params = run.data.params
    assert (params["config.batch_size"], params["config.protocol"], params["config.neurons"]) == ("12", "seed", "3")
    assert (params["config.cell"], params["config.features"], params["config.ensemble"]) == ("gru", "close,volume", "1")
    assert "persistence" in result.output and run.info.run_id in result.output
    assert mlflow.get_experiment(run.info.experiment_id).name == "cryptolstm-btc"


@pytest.mark.slow
def test_sigterm_mid_training_ends_the_run_killed(tracking, synthetic_data, tmp_path):
    proc = start_cli(["train", "-q", "--data-dir", str(synthetic_data), "--merge-date", "2021-01-01", "--neurons", "8",
                      "--layers", "1", "--epochs", "100000", "--patience", "100000"], tmp_path, tracking)
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
        (["--n-trials", "100000"], "n_trials must be at most 1000, got 100000: each trial trains a network and logs a run."),
        (["--n-workers", "4096"], "n_workers must be at most"),
        (["--algorithm", "hyperband"], "algorithm for optuna must be one of tpe, random, qmc"),
        (["--coin", "XRP"], "coin must be one of BTC, ETH; got 'XRP'."),
        (["--space", "experiments/nope.yaml"], "space file experiments/nope.yaml does not exist."),
        (["--prune", "sometimes"], "prune must be true or false, got 'sometimes'."),
        (["--data-dir", "/nonexistent/prices"], "data directory /nonexistent/prices does not exist"),
        # every configuration of the space must fit the data: the default space's longest window is 21 days
        (["--end-date", "2020-01-20"], "20 days are too few for a 0.7/0.15/0.15 split (honest protocol) with "
                                       "window_len 21 and horizon 1"),
    ],
)
def test_search_bad_input_is_one_sentence_and_no_run(refusals, synthetic_data, args, words):
    result = runner.invoke(app, ["search", "--data-dir", str(synthetic_data), *args])
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
        (["evaluate", "--model", "cryptolstm-btc"], "model must be a model URI, models:/NAME@ALIAS, "
                                                    "models:/NAME/VERSION or runs:/RUN_ID/model; got 'cryptolstm-btc'."),
        (["evaluate", "--since", "2021-13-01"], "since 2021-13-01 is not a day of the calendar (there is no month 13; "
                                                "months run 01 to 12)."),
        (["evaluate", "--until", "yesterday"], "until must be a date written YYYY-MM-DD, got 'yesterday'."),
        (["evaluate", "--since", "2021-11-01", "--until", "2021-10-01"], "--since (2021-11-01) is after --until "
                                                                         "(2021-10-01): no day to score."),
        (["evaluate", "--model", "models:/cryptolstm-btc@champion", "--data-dir", "DATA"],
         "there is no model models:/cryptolstm-btc@champion in "),
        (["evaluate", "--coin", "ETH", "--data-dir", "DATA"], "there is no model models:/cryptolstm-eth@champion in "),
        (["refit", "--coin", "DOGE", "--data-dir", "DATA"], "coin must be one of BTC, ETH; got 'DOGE'."),
        (["refit", "--model", "runs:/"], "model must be a model URI"),
        (["refit", "--force", "maybe"], "force must be true or false, got 'maybe'."),
        (["refit", "--retrain", "hot"], "retrain must be one of scratch, warm; got 'hot'."),
        (["refit", "--warm-epochs", "0"], "warm_epochs must be an integer >= 1, got 0."),
        (["refit", "-q", "--model", "models:/cryptolstm-eth/3", "--data-dir", "DATA"],
         "there is no model models:/cryptolstm-eth/3 in "),
    ],
)
def test_registry_commands_bad_input_is_one_sentence_and_no_run(refusals, synthetic_data, args, words):
    result = runner.invoke(app, [str(synthetic_data) if a == "DATA" else a for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"] and words in result.stderr
    assert _runs() == []


def test_predict_without_a_champion_says_so(refusals, synthetic_data):
    result = runner.invoke(app, ["predict", "--coin", "ETH", "--data-dir", str(synthetic_data)])
    assert result.exit_code == 2 and "cannot load models:/cryptolstm-eth@champion" in result.stderr
    assert result.stderr.rstrip().endswith("; make one with `cryptolstm train --coin ETH --register`.")


def test_none_is_an_unset_mlproject_parameter(refusals):
    # MLflow logs every MLproject parameter on its run; an unset one is "None" there, never blank.
    result = runner.invoke(app, ["train", "--data-dir", "/nonexistent/prices", "--neurons", "None", "--coin", ""])
    assert result.exit_code == 2 and "data directory /nonexistent/prices does not exist" in result.stderr


@pytest.mark.slow
def test_tensorflows_and_mlflows_notices_are_hidden_unless_verbose(tmp_path, monkeypatch, new_store):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    # A real command that imports TensorFlow and MLflow and fails with its one sentence.
    done = run_cli(["data", "verify", "--run", "0123456789abcdef"], tmp_path, new_store(tmp_path), timeout=300)
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


def test_the_noise_filter_drops_exactly_tensorflows_notices():
    """The lines TensorFlow 2.21 printed here (a CPU machine, the CUDA build), and lines that must pass."""
    import re

    from cryptolstm.noise import DROPPED

    dropped = re.compile(DROPPED)
    notices = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
               b"I0000 00:00:1795801431.054516   21738 cpu_feature_guard.cc:210] This TensorFlow binary is optimized",
               b"E0000 00:00:1795801431.054516   21738 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
               b"E0000 00:00:1795801431.1   21738 meta_optimizer.cc:967] NodeDef mentions attribute use_unbounded_threadpool",
               b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow"]
    kept = [b"error: cannot read run 0123: not found", b"E0000 00:00:1.0 1 some_other.cc:1] a real TensorFlow error",
            b"Traceback (most recent call last):", b"WARNING cryptolstm: the snapshot has a price jump"]
    assert all(dropped.match(line) for line in notices)
    assert not any(dropped.match(line) for line in kept)


def test_predict_prints_one_line_for_a_day_and_a_table_with_intervals_for_several():
    import pandas as pd

    from cryptolstm.render import forecast_text

    one = pd.DataFrame({"date": ["2024-01-01"], "horizon": [1], "coin": ["BTC"], "forecast_close": [41850.344],
                        "last_close": [42265.19], "forecast_return": [41850.344 / 42265.19 - 1]})
    assert forecast_text(one, "m") == ("BTC close on 2024-01-01: 41,850.34 USD (last close 42,265.19, -0.98%); "
                                       "model m")
    three = pd.DataFrame({"date": ["2024-01-01", "2024-01-02", "2024-01-03"], "horizon": [1, 2, 3], "coin": "BTC",
                          "forecast_close": [42397.83, 42234.30, 42338.35], "last_close": 42265.19,
                          "forecast_return": [0.0031, -0.0007, 0.0017], "lower_80": [41081.82, 40204.76, 39794.92],
                          "upper_80": [43713.26, 44265.68, 44919.38], "lower_95": [39250.37, 37815.29, 37462.47],
                          "upper_95": [45536.73, 46653.48, 47254.58]})
    lines = forecast_text(three, "m").splitlines()
    assert lines[0] == "BTC from the last close 42,265.19 USD, 3 days ahead; model m:" and len(lines) == 5
    assert lines[2].split() == ["2024-01-01", "1", "42,397.83", "+0.31%", "41,081.82", "to", "43,713.26",
                                "39,250.37", "to", "45,536.73"]


def test_a_pinned_heads_summary_says_its_median_is_the_last_close_and_each_crps_verdict_in_words():
    """No ratio table of 1.000s for a head whose median is persistence's; ties, beats or loses to
    each baseline from its DM test."""
    from types import SimpleNamespace

    from cryptolstm.config import RunConfig
    from cryptolstm.render import run_summary

    metrics = {f"{split}/{k}": v for split in ("val", "test") for k, v in {
        "coverage_80": 0.81, "coverage_95": 0.95, "raw_coverage_80": 0.7, "raw_coverage_95": 0.9,
        "crps_ratio_garch": 1.013, "crps_dm_p_garch": 0.051, "crps_dm_mde_garch": 0.012,
        "crps_ratio_har": 0.97, "crps_dm_p_har": 0.01, "crps_dm_mde_har": 0.011,
        "crps_ratio_empirical": 1.04, "crps_dm_p_empirical": 0.001, "crps_dm_mde_empirical": 0.01}.items()}
    result = SimpleNamespace(config=RunConfig(head="student_t_pinned"), metrics=metrics)
    text = run_summary("abc", "sqlite:///mlflow.db", result)
    assert "pins the median at the last close by construction" in text and "1.000" not in text
    assert "on the test days, on CRPS, the model ties GARCH, beats HAR, loses to empirical (DM test at 5 %)" in text
    assert "1.013 (p 0.051, MDE 1.2 %)" in text


def test_the_run_summary_keeps_its_columns_apart_whatever_the_p_value():
    """A p value in scientific notation (``9.5e-07``) once ran into the ratio (``1.1169.5e-07``)."""
    from types import SimpleNamespace

    from cryptolstm.config import RunConfig
    from cryptolstm.render import run_summary

    metrics = {"test/mae": 464.484, "test/persistence_mae": 416.205, "test/mae_ratio": 1.116, "test/dm_p": 9.5e-07,
               "test/dm_mde": 0.066, "test/direction_accuracy": 0.492}
    result = SimpleNamespace(config=RunConfig(), metrics=metrics, epochs_run=9, stopped_early=True, best_epoch=0)
    lines = run_summary("abc", "sqlite:///mlflow.db", result).splitlines()
    header, row = lines[1], next(line for line in lines if line.strip().startswith("test"))
    assert row.split() == ["test", "464.484", "416.205", "1.116", "9.5e-07", "6.6", "%", "49.2%"]
    assert header.index("DM p") + len("DM p") == row.index("9.5e-07") + len("9.5e-07")  # right-aligned under it


def test_a_registration_that_could_not_be_compared_gives_its_advice_once_as_the_command_to_type():
    from cryptolstm.registry import Registration
    from cryptolstm.render import registered_line

    reason = ("not compared with champion version 1: validated on other days; to make it champion anyway, "
              "register it with --force")
    line = registered_line(Registration("cryptolstm-btc", "3", False, reason, False, 1.0123, run_id="abc"))
    assert line == ("registered cryptolstm-btc version 3 (not champion): not compared with champion version 1: "
                    "validated on other days; its test MAE ratio to persistence is 1.0123 (worse than persistence "
                    "on those days); to make it champion anyway: cryptolstm register --coin BTC --run-id abc --force.")
    assert line.count("--force") == 1 and line.count(".") == line.count("1.0123") + 1  # one sentence
