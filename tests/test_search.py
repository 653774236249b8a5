"""Searches at tiny size: real Optuna, real keras-tuner, real TensorFlow, MLflow on temporary SQLite,
on the synthetic prices of 2021. One Optuna study is searched once (`study`); the tests that read it
or go on from it work on a copy (`searched`)."""

import shutil
from types import SimpleNamespace

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.options import SearchOptions
from cryptolstm.render import number
from cryptolstm.search import optuna_study
from cryptolstm.search.space import load_space
from cryptolstm.search.study import run_search
from cryptolstm.search.trials import TrialRunner
from cryptolstm.tracking.search import MlflowSearchTracker
from tests.conftest import MERGE, all_runs, building_store, clear_mlflow_env, sigterm_after_first_epoch, start_cli, work_on_copy

pytestmark = pytest.mark.slow

BASE = "protocol: honest\nwindow_len: 7\nlayers: 1\nneurons: 3\ndropout: 0.25\nepochs: 3\nbatch_size: 64\nseed: 3\n"
SPACE = """base: base.yaml
space:
  window_len: {type: int, low: 3, high: 9}
  neurons: {type: categorical, choices: [2, 3, 5]}
  dropout: {type: float, low: 0.0, high: 0.5}
"""


def _space(tmp_path, data, space=SPACE, base=BASE):
    (tmp_path / "base.yaml").write_text(base)
    (tmp_path / "space.yaml").write_text(space)
    return load_space(tmp_path / "space.yaml", data_dir=str(data), merge_date=MERGE)


def _children(client, parent_id):
    runs = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return sorted(runs, key=lambda r: int(r.data.tags["trial"].split("-")[1]))


def _search(space, market, options):
    """A search tracked in MLflow, in the coin's experiment, as the command runs it."""
    tracker = MlflowSearchTracker(market, space.base, f"cryptolstm-{space.base.coin.lower()}")
    return run_search(space, market, options, tracker)


def _options(tmp_path, **changes):
    base = dict(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}", n_trials=3, max_epochs=2,
                prune=False)
    return SearchOptions(**{**base, **changes})


STUDY = dict(n_trials=3, max_epochs=2, seed=11)  # the options of `study`


@pytest.fixture(scope="module")
def study(tmp_path_factory, synthetic_data, market, _empty_store):
    """Study ``s`` searched once for this file: 3 trials of `SPACE`, at most 2 epochs each, seed 11,
    in a store of its own (its folder: root, holding optuna.db). Read-only: see `searched`."""
    root = tmp_path_factory.mktemp("study")
    with building_store(root, _empty_store):
        space = _space(root, synthetic_data)
        first = _search(space, market, _options(root, **STUDY))
    return SimpleNamespace(root=root, space=space, first=first)


@pytest.fixture
def searched(study, tmp_path, monkeypatch, _ends_runs):
    """A copy of `study`'s store and Optuna storage in this test's temp working directory, the
    tracking URI set to it: the study's space and its first result (``first``)."""
    work_on_copy(study.root, tmp_path, monkeypatch)
    shutil.copy2(study.root / "optuna.db", tmp_path / "optuna.db")
    return study


def test_optuna_study_is_a_parent_with_trial_children_tests_once_and_resumes(searched, tmp_path, market):
    space, first = searched.space, searched.first
    client = MlflowClient()
    parent = client.get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert (tags["coin"], tags["engine"], tags["study_name"]) == ("BTC", "optuna", "s")
    assert tags["space_file"].endswith("space.yaml")
    children = _children(client, first.parent_run_id)
    assert len(children) == 3 and all(c.data.tags["trial_state"] == "complete" for c in children)
    # Trial 0 is the base (2018-style) config; every trial has its params and per-epoch val/loss.
    params0 = children[0].data.params
    assert (params0["config.window_len"], params0["config.neurons"], params0["config.dropout"]) == ("7", "3", "0.25")
    for child in children:
        assert child.data.params["config.epochs"] == "2"
        assert len(client.get_metric_history(child.info.run_id, "val/loss")) == int(child.data.metrics["epochs_run"])
        assert "val/mae_ratio" in child.data.metrics
        assert not any(k.startswith("test/") for k in child.data.metrics)  # test days unseen by trials
    # The parent holds the chosen model's test metrics beside persistence; the replay is the trial.
    best_child = min(children, key=lambda c: c.data.metrics["val/mae_ratio"])
    metrics = parent.data.metrics
    assert metrics["val/mae_ratio"] == pytest.approx(best_child.data.metrics["val/mae_ratio"], rel=1e-6)
    assert {"test/mae", "test/persistence_mae", "test/mae_ratio", "search/epochs_saved"} <= metrics.keys()
    # The best values as metrics too (the runs table sorts and charts them), beside their tags.
    best = {k.removeprefix("best."): v for k, v in tags.items() if k.startswith("best.")}
    assert best == {k: number(v) for k, v in first.best_values.items()}
    assert set(best) == {d.name for d in space.dimensions}
    assert all(metrics[f"best/{k}"] == pytest.approx(v) for k, v in first.best_values.items())
    # What the UI shows as descriptions: the study's result, and each trial's values.
    note = tags["mlflow.note.content"]
    assert note.startswith("Study s: ") and f"test {metrics['test/mae_ratio']:.4f}" in note
    for child in children:
        values = child.data.tags["trial.values"]
        assert child.data.tags["mlflow.note.content"].startswith(f"{child.data.tags['trial']}: {values}.")
        assert f"window_len={child.data.params['config.window_len']}" in values
    artifacts = {a.path for a in client.list_artifacts(first.parent_run_id)} | {
        a.path for a in client.list_artifacts(first.parent_run_id, "plots")}
    assert {"trials.csv", "plots/optuna_optimization_history.png", "plots/optuna_param_importances.png",
            "plots/optuna_parallel_coordinate.png"} <= artifacts

    # Hansen's SPA test over every finished trial, on the validation days it selected on, against
    # persistence (a point objective): each trial recorded its per-day losses, the parent the result.
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    for trial in study.trials:
        recorded = trial.user_attrs[optuna_study.LOSSES_ATTR]
        assert len(recorded["days"]) == len(recorded["model"]) == len(recorded["benchmark"]) == 50  # the val days
        assert sum(recorded["model"]) / sum(recorded["benchmark"]) == pytest.approx(
            _children(client, first.parent_run_id)[trial.number].data.metrics["val/mae_ratio"], rel=1e-6)
    assert metrics["search/spa_trials"] == 3 and metrics["search/spa_days"] == 50 and metrics["search/spa_block_days"] >= 1
    assert 0 <= metrics["search/spa_p"] <= 1 and first.spa.pvalue == metrics["search/spa_p"]
    assert "spa.md" in {a.path for a in client.list_artifacts(first.parent_run_id)}

    # The same command with a larger budget continues the study: same parent, no repeats.
    again = _search(space, market, _options(tmp_path, **{**STUDY, "n_trials": 4}))
    assert again.parent_run_id == first.parent_run_id
    children = _children(client, first.parent_run_id)
    assert [c.data.tags["trial"] for c in children] == [f"trial-{i}" for i in range(4)]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len({str(t.params) for t in study.trials}) == 4
    # Nothing left to do: a third call runs no trial and changes no run (state, name, tags).
    before = client.get_run(first.parent_run_id)
    third = _search(space, market, _options(tmp_path, **{**STUDY, "n_trials": 4}))
    assert third.done_before and third.best is None and third.parent_run_id == first.parent_run_id
    after = client.get_run(first.parent_run_id)
    assert (after.info.status, after.info.end_time, after.data.tags) == (
        "FINISHED", before.info.end_time, before.data.tags)
    assert len(_children(client, first.parent_run_id)) == 4


def test_a_finished_study_run_again_says_so_and_completes_a_cut_short_registration(searched, tmp_path):
    """`search --register` killed between the version and its alias, then run again as typed."""
    from cryptolstm.tracking.registry import register_pick

    client, parent = MlflowClient(), searched.first.parent_run_id
    version = register_pick(parent, "BTC").version
    client.delete_registered_model_alias("cryptolstm-btc", "champion")  # the alias never moved
    before = client.get_run(parent)
    args = ["search", "--space", str(searched.space.path), "--data-dir", searched.space.base.data_dir,
            "--merge-date", MERGE, "--study-name", "s", "--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
            "--n-trials", "3", "--max-epochs", "2", "--seed", "11", "--prune", "false", "--register", "--quiet"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    first = done.output.splitlines()[0]
    assert first.startswith("study s is finished (3 trials; best val/mae_ratio ") and parent in first
    assert "nothing was run or changed" in first and "still running" not in done.output
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == version
    after = client.get_run(parent)
    assert (after.info.status, after.info.end_time, after.data.tags) == (
        "FINISHED", before.info.end_time, before.data.tags)
    # the report shows the study's SPA test beside the runs
    report = CliRunner().invoke(app, ["report", "--experiment", "cryptolstm-btc"])
    row = next(line for line in report.stdout.splitlines() if line.startswith(f"| [`{parent[:8]}`]") and "spa" not in line
               and "| 3 |" in line)
    assert "| val/mae_ratio | 3 | 50 |" in row and f"| {after.data.metrics['search/spa_p']:.3g} |" in row


def test_same_seed_same_trial_parameters(searched, tmp_path, market):
    """A second study with `study`'s options, seed 11 among them, tries the same parameters."""
    _search(searched.space, market, _options(tmp_path, **{**STUDY, "study_name": "b"}))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    params = [[t.params for t in optuna.load_study(study_name=name, storage=storage).trials] for name in ("s", "b")]
    assert params[0] == params[1] and len({str(p) for p in params[0]}) == 3


def test_a_failing_trial_is_recorded_failed_and_the_study_goes_on(tracking, tmp_path, synthetic_data, market):
    base = BASE + "learning_rate: 0.001\noutput_activation: linear\n"
    rates = "base: base.yaml\nspace:\n  learning_rate: {type: categorical, choices: [0.001, 1.0e+30]}\n"
    space = _space(tmp_path, synthetic_data, rates, base)
    # seed 0: the base trial completes, trial 1 draws the rate 1e30 and fails, trial 2 draws the base's
    # 0.001 again (a repeat: no child run of its own) and completes the 2
    result = _search(space, market, _options(tmp_path, n_trials=2, max_epochs=1, algorithm="random", seed=0))
    client = MlflowClient()
    states = [c.data.tags["trial_state"] for c in _children(client, result.parent_run_id)]
    assert states == ["complete", "failed"]
    failed = next(c for c in _children(client, result.parent_run_id) if c.data.tags["trial_state"] == "failed")
    assert failed.info.status == "FAILED" and "NaN or infinite" in failed.data.tags["reason"]
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]


def test_pruned_trial_stops_early_and_is_recorded(tracking, tmp_path, synthetic_data, market):

    space = _space(tmp_path, synthetic_data)
    mlflow.set_experiment("prune")
    with mlflow.start_run() as parent:
        tracker = MlflowSearchTracker(market, space.base, "prune")
        runner = TrialRunner(space, market, 3, "optuna", tracker, parent.info.run_id)
        study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=-1.0))  # prunes at once
        study.optimize(optuna_study.objective_fn(runner), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.user_attrs["epochs_run"] == 1
    (child,) = _children(MlflowClient(), parent.info.run_id)
    assert child.data.tags["trial_state"] == "pruned" and child.info.status == "FINISHED"


@pytest.mark.parametrize("algorithm", ["hyperband", "bayesian"])
def test_keras_tuner_searches_the_same_space(tracking, tmp_path, synthetic_data, market, algorithm):
    space = _space(tmp_path, synthetic_data)
    options = _options(tmp_path, engine="keras-tuner", algorithm=algorithm, n_trials=2, max_epochs=1,
                       tuner_dir=str(tmp_path / "kt"), study_name=f"kt-{algorithm}")
    result = _search(space, market, options)
    client = MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["engine"] == "keras-tuner"
    children = _children(client, result.parent_run_id)
    assert children and all(c.data.tags["trial_state"] == "complete" for c in children)
    assert set(result.best_values) == {d.name for d in space.dimensions}
    assert "test/mae_ratio" in parent.data.metrics
    # Another coin under the same name is an unrelated search: refused unless overwrite.
    other = load_space(tmp_path / "space.yaml", data_dir=str(synthetic_data), merge_date=MERGE, coin="ETH")
    from cryptolstm.errors import ConfigError

    with pytest.raises(ConfigError, match="holds a keras-tuner search for"):
        _search(other, market, options)


def test_a_study_for_another_coin_is_refused_before_any_run(searched, tmp_path, synthetic_data, market):
    from cryptolstm.errors import ConfigError

    client = MlflowClient()
    before = all_runs(client)
    eth = load_space(searched.root / "space.yaml", data_dir=str(synthetic_data), merge_date=MERGE, coin="ETH")
    with pytest.raises(ConfigError, match="was made for"):
        _search(eth, market, _options(tmp_path, **STUDY))
    assert len(all_runs(client)) == len(before) == 4  # the study and its 3 trials


def test_interrupted_study_ends_killed_and_resumes_without_repeats(tmp_path, synthetic_data, new_store, monkeypatch):
    """SIGTERM to a real `cryptolstm search` in its first trial; the same command again (here, in
    this process) resumes the study."""
    (tmp_path / "base.yaml").write_text(BASE.replace("epochs: 3", "epochs: 100000") + "patience: 100000\n")
    (tmp_path / "space.yaml").write_text(SPACE)
    uri = new_store(tmp_path)
    args = ["search", "-q", "--space", str(tmp_path / "space.yaml"), "--data-dir", str(synthetic_data), "--merge-date",
            MERGE, "--study-name", "s", "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--n-trials", "2",
            "--prune", "false", "--register", "true"]
    proc = start_cli(args, tmp_path, uri)
    client = MlflowClient(uri)
    err = sigterm_after_first_epoch(proc, client, trials_only=True)
    assert proc.returncode == 130, err[-2000:]
    runs = all_runs(client)
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"]  # the study and its trial
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]

    monkeypatch.chdir(tmp_path)
    clear_mlflow_env(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    done = CliRunner().invoke(app, args + ["--max-epochs", "1"])
    assert done.exit_code == 0, done.output[-2000:]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and len({str(t.params) for t in complete}) == 2
    assert complete[0].params == {"window_len": 7, "neurons": 3, "dropout": 0.25}  # the base, re-queued
    runs = all_runs(client)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # the command registered the chosen model (the study's parent run) as the first champion
    assert "registered cryptolstm-btc version 1 (now @champion): first champion;" in done.stdout
    assert client.get_model_version_by_alias("cryptolstm-btc", "champion").tags["source_run"] == parents[0].info.run_id


def test_the_chosen_model_registered_from_the_study_is_resolved_and_evaluated_like_a_trained_one(
        searched, synthetic_data):
    """The study's parent holds the chosen model but no config.* params (a resumed study may choose
    another): its configuration comes from the model's config.json, its days from training.json."""
    from cryptolstm.evaluate import evaluate
    from cryptolstm.tracking import registry

    result = searched.first
    registration = registry.register_run(result.parent_run_id, "BTC")
    assert (registration.version, registration.promoted) == ("1", True)
    parent = MlflowClient().get_run(result.parent_run_id)
    info = registry.resolve("models:/cryptolstm-btc@champion")
    assert info.run_id == result.parent_run_id and info.config == result.best.config
    assert {k: getattr(info.config, k) for k in result.best_values} == result.best_values
    assert (info.trained_until, info.data_last) == (parent.data.tags["split.val.last"], "2021-11-30")
    done = evaluate(registry.MlflowModels(), "models:/cryptolstm-btc@champion", str(synthetic_data),
                    since=parent.data.tags["split.test.first"])
    assert done.n_days == int(parent.data.tags["split.test.n"])
    for key in ("mae", "persistence_mae", "rmse"):
        assert done.metrics[f"live/{key}"] == pytest.approx(parent.data.metrics[f"test/{key}"], rel=1e-5), key
