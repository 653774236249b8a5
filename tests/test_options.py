"""Options, text to types, and the forecast value: the small pieces every command stands on."""

import dataclasses
import re

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from typer.main import get_command
from typer.testing import CliRunner

from cryptolstm import commandline, options
from cryptolstm.cli import app
from cryptolstm.errors import ConfigError
from cryptolstm.forecast import Forecast


@pytest.mark.parametrize("kind, text, value", [("int", "3", 3), ("int", "3.0", 3), ("float", "0.5", 0.5),
                                               ("bool", "TRUE", True), ("bool", "no", False),
                                               ("date", "2020-02-29", "2020-02-29"), ("str", "x", "x")])
def test_text_becomes_the_fields_type(kind, text, value):
    assert options.coerce("name", kind, text) == value


@pytest.mark.parametrize("kind, text, words", [("int", "3.5", "name must be an integer, got '3.5'."),
                                               ("float", "abc", "name must be a number"),
                                               ("bool", "maybe", "name must be true or false, got 'maybe'."),
                                               ("date", "04/01/2018", "name must be a date written YYYY-MM-DD"),
                                               ("date", "2023-02-30", "name 2023-02-30 is not a day of the calendar "
                                                                      "(February 2023 has 28 days).")])
def test_text_that_is_not_the_fields_type_is_one_sentence(kind, text, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        options.coerce("name", kind, text)


def test_empty_text_is_not_given_and_the_dataclass_default_holds():
    built = options.from_text(options.BacktestOptions, {"seeds": "", "fold_months": None, "start": "2020-01-01"})
    assert (built.seeds, built.fold_months, built.start) == (3, 3, "2020-01-01")


def test_a_worker_of_a_search_gets_its_options_as_argv_and_reads_them_back():
    search = options.SearchOptions(n_workers=3, n_trials=7, prune=False, coin="ETH")
    worker = search.worker()
    assert (worker.n_workers, worker.register, worker.follower) == (1, False, True)
    assert worker.storage == "journal:optuna.journal"  # the storage the leader chose for several workers
    argv = options.to_argv(worker)
    texts = dict(zip([a.removeprefix("--").replace("-", "_") for a in argv[::2]], argv[1::2]))
    assert options.from_text(options.SearchOptions, texts) == worker


def test_search_option_defaults_follow_the_storage():
    assert options.SearchOptions().heartbeat_seconds is None
    assert options.SearchOptions(storage="postgresql://u:p@h/db").heartbeat_seconds == 30


def test_a_forecast_checks_its_shapes_and_may_be_empty():
    empty = Forecast(np.array([], "datetime64[D]"), np.zeros(0), np.zeros(0), np.zeros(0))
    assert len(empty) == 0 and empty.horizon == 1
    one = Forecast(np.array(["2020-01-02"], "datetime64[D]"), np.array([100.0]), np.array([110.0]), np.array([0.05]))
    assert one.close()[0] == pytest.approx(105.0) and one.point().tolist() == [0.05]
    with pytest.raises(ValueError, match="dates, reference and last_close"):
        Forecast(one.dates, np.array([1.0, 2.0]), one.last_close, one.returns)
    with pytest.raises(ValueError, match=r"quantiles must be \(n, H, Q\)"):
        dataclasses.replace(one, quantiles=np.zeros((1, 1, 3)), levels=(0.1, 0.9))


def test_the_mlflow_run_id_is_read_for_each_command_and_tags_its_own_failure(tracking, monkeypatch):
    """Under `mlflow run`, a bad option's sentence is tagged on the launched run; a later command
    in the same process without MLFLOW_RUN_ID does not write into that run."""
    mlflow.set_experiment("launched")
    launched = MlflowClient().create_run(mlflow.get_experiment_by_name("launched").experiment_id).info.run_id
    runner = CliRunner()
    monkeypatch.setenv("MLFLOW_RUN_ID", launched)
    first = runner.invoke(app, ["backtest", "--fold-months", "0"])
    assert first.exit_code == 2 and "fold_months must be an integer >= 1" in first.stderr
    assert "fold_months" in MlflowClient().get_run(launched).data.tags["error"]
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    second = runner.invoke(app, ["backtest", "--seeds", "0"])
    assert second.exit_code == 2 and "seeds must be an integer >= 1" in second.stderr
    assert "fold_months" in MlflowClient().get_run(launched).data.tags["error"]


REGISTER_SAYS = "error: no finished {coin} run with val/mae_ratio and a model in any experiment; train or search first."


@pytest.mark.parametrize("args, coin", [(["--force"], "BTC"), (["--force", "--coin", "ETH"], "ETH"),
                                        (["--coin", "ETH", "--force", "-q"], "ETH"), (["--force", "true"], "BTC"),
                                        (["--force", "False"], "BTC"), (["--force=false"], "BTC")])
def test_a_boolean_option_works_bare_and_with_the_value_mlflow_run_passes(tracking, args, coin):
    """`register` on an empty store fails right after parsing, with its own sentence: every form of
    --force parsed, and an option after a bare --force is not taken for its value."""
    done = CliRunner().invoke(app, ["register", *args])
    assert done.exit_code == 2 and done.stderr.strip() == REGISTER_SAYS.format(coin=coin), done.output


def test_a_boolean_options_value_still_has_to_be_true_or_false(tracking):
    done = CliRunner().invoke(app, ["register", "--force", "maybe"])
    assert done.exit_code == 2 and done.stderr.strip() == "error: force must be true or false, got 'maybe'."


@pytest.mark.parametrize("command, args, values", [
    ("refit", ["--force"], {"force": True}),
    ("refit", ["--force", "--end-date", "2023-06-30"], {"force": True, "end_date": "2023-06-30"}),
    ("refit", ["--force", "false"], {"force": False}),
    ("refit", [], {"force": False}),
    ("search", ["--register", "False", "--prune", "--overwrite", "true", "--seed", "-5"],
     {"register": False, "prune": True, "overwrite": True, "seed": -5}),
    ("fetch", ["--full"], {"full": True}),
    # as `mlflow run` passes a parameter MLproject leaves undeclared (-P window_len=5 -P fill_gaps=true)
    ("train", ["--window_len", "5", "--fill_gaps", "true", "--data_dir", "--x_y"],
     {"window_len": "5", "fill_gaps": "true", "data_dir": "--x_y"}),
    ("train", ["--shuffle", "--fill-gaps", "--experiment", "x.yaml"],
     {"shuffle": "true", "fill_gaps": "true", "experiment": "x.yaml"}),
])
def test_the_command_line_reads_each_form_of_a_boolean_option_as_its_value(command, args, values):
    """The real parser of each command (typer's, with `commandline.bare_flags`), then the options dataclass."""
    params = get_command(app).commands[command].make_context(command, list(args)).params
    classes = {"refit": options.RefitOptions, "search": options.SearchOptions, "fetch": options.FetchOptions}
    if command in classes:
        built = options.from_text(classes[command], {k: v for k, v in params.items() if k != "quiet"})
        assert {k: getattr(built, k) for k in values} == values
    else:  # train: the run config's fields stay text until RunConfig types them
        assert {k: params[k] for k in values} == values


def test_help_shows_a_boolean_as_an_optional_true_or_false_and_a_flag_without_a_type():
    for args in (["--help"], ["register", "--help"], ["search", "--help"], ["data", "list", "--help"]):
        text = CliRunner().invoke(app, args, env={"COLUMNS": "200"}).output
        assert "<bool>" not in text and "BOOLEAN" not in text
    text = CliRunner().invoke(app, ["register", "--help"], env={"COLUMNS": "200"}).output
    assert next(line for line in text.splitlines() if "--force" in line).split()[1:3] == ["--force", "[true|false]"]


def test_bare_flags_puts_true_only_after_a_boolean_given_without_its_value():
    args = ["--prune", "--timeout", "-5", "--register", "no", "--x", "--overwrite", "--", "--prune"]
    assert commandline.bare_flags(args, {"--prune", "--register", "--overwrite"}, {"--timeout", "--x"}) == [
        "--prune", "true", "--timeout", "-5", "--register", "no", "--x", "--overwrite", "--", "--prune"]
    assert commandline.bare_flags(["--x", "--prune", "--prune"], {"--prune"}, {"--x"}) == ["--x", "--prune", "--prune", "true"]
    # --x_y as `mlflow run` passes an undeclared parameter; a value and what follows -- stay as given
    assert commandline.bare_flags(["--data_dir", "--pru_ne", "--pr_une", "--", "--data_dir"], {"--pr-une"},
                                  {"--data-dir"}) == ["--data-dir", "--pru_ne", "--pr-une", "true", "--", "--data_dir"]
