"""The registry in MLflow (`cryptolstm.tracking.registry`): registering runs under their coin, the
champion alias, resolving and loading models back, serving, concurrent registrations. The
promotion rule itself is tested without MLflow in test_lifecycle.py. Three tiny runs are trained
once for the file (`trained`); each test registers them in a copy of their store (`store`)."""

import re
import shutil
import subprocess
import sys
import urllib.error
from types import SimpleNamespace

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.data import load_market
from cryptolstm.errors import ConfigError
from cryptolstm.pyfunc import example_rows
from cryptolstm.registry import ALIAS, model_name
from cryptolstm.tracking import registry, tracked_train
from tests.conftest import MERGE, building_store, cli_env, post_rows, served, start_cli, tiny_config, work_on_copy

pytestmark = pytest.mark.slow

NEXT_DAY = "2021-12-01"  # the day after the synthetic data


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_data, market, _empty_store):
    """A store made once for this file: tiny BTC runs of seeds 1, 2 and 3, none registered (the run
    id of each seed). Read-only: each test works on a copy (`store`)."""
    root = tmp_path_factory.mktemp("runs")
    with building_store(root, _empty_store):
        ids = {seed: tracked_train(tiny_config(synthetic_data, seed=seed, merge_date=MERGE), market)[0]
               for seed in (1, 2, 3)}
    return SimpleNamespace(root=root, ids=ids)


@pytest.fixture
def store(trained, tmp_path, monkeypatch, _ends_runs):
    """A copy of `trained`'s store in this test's temp working directory, the tracking URI set to it
    (for this process and the commands it starts): its uri, its runs worst first by val/mae_ratio
    (``btc``), and ``btc1``, the run of seed 1."""
    uri = work_on_copy(trained.root, tmp_path, monkeypatch)
    client = MlflowClient()
    runs = sorted(map(client.get_run, trained.ids.values()), key=lambda r: -r.data.metrics["val/mae_ratio"])
    ratios = [r.data.metrics["val/mae_ratio"] for r in runs]
    assert ratios == sorted(set(ratios), reverse=True), ratios
    return SimpleNamespace(uri=uri, btc=runs, btc1=client.get_run(trained.ids[1]))


def _cli(*args: str):
    """``cryptolstm *args`` in this process (its stdout and stderr apart)."""
    return CliRunner().invoke(app, list(args))


def _champion(coin="BTC"):
    return MlflowClient().get_model_version_by_alias(model_name(coin), ALIAS)


def _versions() -> list[tuple[str, str]]:
    """(model name, version) of every registered version in the store."""
    return sorted((v.name, str(v.version)) for v in MlflowClient().search_model_versions())


def test_promotion_only_when_better_on_the_same_evaluation(store, synthetic_data):
    worst, middle, best = store.btc
    first = registry.register(middle, "BTC")
    assert (first.version, first.promoted, first.reason, first.added) == ("1", True, "first champion", True)
    second = registry.register(best, "BTC")
    assert second.promoted and str(_champion().version) == "2" and "beats champion version 1" in second.reason
    third = registry.register(worst, "BTC")
    assert third.version == "3" and not third.promoted and str(_champion().version) == "2"
    version = MlflowClient().get_model_version("cryptolstm-btc", third.version)
    assert "does not beat champion version 2" in third.reason and third.reason in version.description
    # The registry page: a one-line reason and figures to 4 significant digits; the whole sentence in the description.
    assert version.tags["promotion"] == third.reason.split("; ")[0] and len(version.tags["promotion"]) < 80
    assert version.tags["val/mae_ratio"] == f"{worst.data.metrics['val/mae_ratio']:.4g}"
    assert version.tags["source_run"] == worst.info.run_id and version.tags["protocol"] == "honest"
    assert (version.tags["selection.metric"], version.tags["promotion.decision"], version.tags["promotion.over"]) == \
        ("val/mae_ratio", "keep", "2")
    for key in ("data.first_date", "data.last_date", "split.val.first", "split.val.last", "split.val.n"):
        assert version.tags[key] == worst.data.tags[key], key  # the evaluation it is compared on
    ratio = worst.data.metrics["test/mae_ratio"]
    assert version.tags["beats_persistence"] == str(ratio < 1).lower()
    assert float(version.tags["persistence_ratio"]) == pytest.approx(ratio, rel=1e-3)
    assert (third.ratio, third.beats_persistence) == (pytest.approx(ratio), ratio < 1)
    # A run the user names (register --run-id) is made champion whenever it is comparable, better or not.
    named = registry.register_run(worst.info.run_id, "BTC", chosen=True)
    assert (named.version, named.added, named.promoted) == ("3", False, True) and str(_champion().version) == "3"
    assert named.reason.endswith("does not beat champion version 2's " f"{best.data.metrics['val/mae_ratio']:.4f}; "
                                 "made champion as you named it")
    registry.register(best, "BTC", force=True)  # back to version 2
    # Another data range is another evaluation: not compared, not promoted, unless forced.
    other = MlflowClient().get_run(tracked_train(tiny_config(synthetic_data, merge_date="2020-06-01", neurons=2),
                                                 load_market(synthetic_data, "2020-06-01"))[0])
    moved = registry.register(other, "BTC")
    assert not moved.promoted and str(_champion().version) == "2"
    assert moved.reason.startswith("not compared with champion version 2: they were validated on different days")
    assert f"data from 2020-06-01 where champion version 2 has {MERGE}" in moved.reason and "{" not in moved.reason
    assert moved.reason.endswith("to make it champion anyway, register it with --force")
    # A search's advice to register a better run states what the command it gives would do, once.
    from cryptolstm.tracking.registry.versions import _advice

    advice = _advice(other, "BTC")  # what `moved` did: registered, not champion
    assert advice.startswith(f"`cryptolstm register --coin BTC --run-id {other.info.run_id}` would register that "
                             "one but not as champion (not compared with champion version 2: they were validated")
    assert advice.endswith("); add --force to make it champion") and advice.count("--force") == 1
    assert _advice(middle, "BTC") == (f"`cryptolstm register --coin BTC --run-id {middle.info.run_id}` would register "
                                      "that one as champion")  # comparable, and named: it would be (line 89)
    forced = registry.register(other, "BTC", force=True)  # as the reason says; its version, none added
    assert (forced.version, forced.added, forced.promoted) == (moved.version, False, True)
    assert "already registered" in forced.reason and forced.reason.endswith("made champion by --force over version 2")
    assert str(_champion().version) == forced.version and len(_versions()) == 4


def test_a_model_uri_resolves_to_its_version_run_config_and_days(store, synthetic_data):
    run = store.btc1
    registry.register(run, "BTC")
    # the configuration it trained with, its open end_date as the last day it read (its config.* params)
    tags, cfg = run.data.tags, tiny_config(synthetic_data, seed=1, merge_date=MERGE, end_date="2021-11-30")
    for uri in ("models:/cryptolstm-btc@champion", "models:/cryptolstm-btc/1", f"runs:/{run.info.run_id}/model"):
        info = registry.MlflowModels().resolve(uri)
        assert (info.uri, info.run_id, info.config) == (uri, run.info.run_id, cfg)
        # the days it trained on, from its own training.json: the same as its run's tags say
        assert (info.trained_until, info.val_first, info.data_last) == \
            (tags["split.val.last"], tags["split.val.first"], tags["data.last_date"])
        assert info.extra["model_id"] == tags["model_uri"].removeprefix("models:/")
    assert registry.resolve("models:/cryptolstm-btc@champion").label == "cryptolstm-btc version 1"
    assert registry.resolve(f"runs:/{run.info.run_id}/model").version is None
    for uri in ("models:/cryptolstm-btc/2", "models:/cryptolstm-eth@champion", "runs:/0123456789abcdef/model"):
        with pytest.raises(ConfigError, match=f"^{re.escape(f'there is no model {uri} in {store.uri}: ')}"):
            registry.resolve(uri)
    with pytest.raises(ConfigError, match=r"^cryptolstm-btc is not a model URI \(models:/NAME@ALIAS"):
        registry.resolve("cryptolstm-btc")


def test_a_run_is_registered_once_and_only_under_its_own_coin(store):
    btc = store.btc1
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
        registry.register_run(backtest_like.info.run_id, "BTC")
    with pytest.raises(ConfigError, match=r"^cannot register a BTC model: "):
        registry.register_run("0123456789abcdef", "BTC")
    assert _versions() == []

    # A registration cut short after the version was made with its decision, before the alias moved:
    # the next registration completes it, without a second version.
    client = MlflowClient()
    first = registry.register(btc, "BTC")
    assert client.get_model_version("cryptolstm-btc", "1").tags["promotion.decision"] == "promote"
    client.delete_registered_model_alias("cryptolstm-btc", ALIAS)
    resumed = registry.register(btc, "BTC")
    assert (resumed.version, resumed.added, resumed.promoted) == ("1", False, True) and str(_champion().version) == "1"
    assert client.get_model_version("cryptolstm-btc", "1").tags["promotion.completed"] == \
        "by the next command (its own was cut short)"
    # One cut short as an earlier cryptolstm registered (the version first, its decision after): decided again.
    client.delete_registered_model_alias("cryptolstm-btc", ALIAS)
    for tag in ("promotion", "promotion.decision", "promotion.over", "promotion.completed"):
        client.delete_model_version_tag("cryptolstm-btc", "1", tag)
    resumed = registry.register(btc, "BTC")
    assert (resumed.version, resumed.added, resumed.promoted) == ("1", False, True)
    assert resumed.reason.endswith("nothing was added; first champion") and str(_champion().version) == "1"
    again = registry.register_run(btc.info.run_id, "BTC")
    assert (again.version, again.added, again.promoted) == ("1", False, True)
    assert again.reason == f"run {btc.info.run_id} was already registered as version 1; nothing was added"
    assert (again.beats_persistence, again.ratio) == (first.beats_persistence, first.ratio)
    assert _versions() == [("cryptolstm-btc", "1")]

    # The command: the same run again exits 0 and says so; another coin's run is one sentence, exit 2.
    done = _cli("register", "-q", "--coin", "BTC", "--run-id", btc.info.run_id)
    assert done.exit_code == 0, done.output[-2000:]
    assert done.stdout.strip() == (f"cryptolstm-btc version 1 (now @champion): run {btc.info.run_id} was already "
                                   f"registered as version 1; nothing was added; its test MAE ratio to persistence is "
                                   f"{first.ratio:.4f} ({'better' if first.beats_persistence else 'worse'} than "
                                   "persistence on those days).")
    wrong = _cli("register", "-q", "--coin", "ETH", "--run-id", btc.info.run_id)
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output, wrong.output[-2000:]
    assert wrong.stderr.strip() == (f"error: run {btc.info.run_id} is a BTC run; it cannot be registered as "
                                    "cryptolstm-eth.")
    assert _versions() == [("cryptolstm-btc", "1")]


def test_predict_refuses_a_model_of_another_coin(store, synthetic_data, market):
    btc = store.btc1
    registry.register(btc, "BTC")
    rows = example_rows(market.frame)
    with pytest.raises(ConfigError) as refused:
        registry.forecast_with("ETH", "models:/cryptolstm-btc@champion", rows)
    assert str(refused.value) == ("models:/cryptolstm-btc@champion is a BTC model; it cannot forecast ETH "
                                  "(pass --coin BTC, or --model-uri of an ETH model).")
    # A BTC model made ETH champion behind the registry's back (as the unchecked register once did).
    version = mlflow.register_model(btc.data.tags["model_uri"], "cryptolstm-eth").version
    MlflowClient().set_registered_model_alias("cryptolstm-eth", ALIAS, version)
    with pytest.raises(ConfigError, match=r"^models:/cryptolstm-eth@champion \(version 1\) is a BTC model; "):
        registry.load_champion("ETH")
    with pytest.raises(ConfigError, match=r"^cryptolstm-eth version 1 is a BTC model; it cannot forecast ETH"):
        registry.MlflowModels().load(registry.resolve("models:/cryptolstm-eth/1"), "ETH")
    out, label = registry.forecast_with("BTC", None, rows)
    assert out["coin"].tolist() == ["BTC"] and out["date"].tolist() == [NEXT_DAY]
    assert label == "models:/cryptolstm-btc@champion (version 1)"
    done = _cli("predict", "-q", "--coin", "ETH", "--data-dir", str(synthetic_data))
    assert done.exit_code == 2 and "Traceback" not in done.output, done.output[-2000:]
    assert done.stderr.strip() == ("error: models:/cryptolstm-eth@champion (version 1) is a BTC model; it cannot "
                                   "forecast ETH (pass --coin BTC, or --model-uri of an ETH model).")


def test_a_missing_or_truncated_artifact_is_one_sentence_naming_its_path(store, synthetic_data, tmp_path):
    btc = store.btc1
    registry.register(btc, "BTC")
    model_id = btc.data.tags["model_uri"].removeprefix("models:/")
    (network_file,) = tmp_path.glob(f"mlruns/**/{model_id}/**/lstm-0.onnx")  # what the pyfunc runs
    folder = network_file.parents[1]  # the logged model's folder: MLmodel, artifacts/lstm-0.onnx
    assert (folder / "MLmodel").is_file()
    whole = network_file.read_bytes()
    uri = "models:/cryptolstm-btc@champion"

    def refusal(model_uri=None) -> str:
        with pytest.raises(ConfigError) as refused:
            registry.load_champion("BTC", model_uri)
        assert "\n" not in str(refused.value)
        return str(refused.value)

    network_file.write_bytes(whole[: len(whole) // 2])
    assert refusal() == (f"cannot load {uri}: its artifact lstm-0.onnx is truncated or damaged "
                         f"(not a valid ONNX model) ({network_file}).")
    done = _cli("predict", "-q", "--coin", "BTC", "--data-dir", str(synthetic_data))
    assert done.exit_code == 2 and "Traceback" not in done.output, done.output[-2000:]
    assert done.stderr.strip() == f"error: {refusal()}"
    network_file.write_bytes(b"")
    assert "lstm-0.onnx is truncated" in refusal()
    network_file.unlink()
    assert refusal() == f"cannot load {uri}: its artifact lstm-0.onnx is missing ({network_file})."
    with pytest.raises(ConfigError, match=r"^cannot load models:/cryptolstm-btc/1: its artifact lstm-0.onnx is missing"):
        registry.load(registry.resolve(uri))  # what evaluate and refit load, pinned to the version
    shutil.rmtree(folder)  # was "No such artifact: ''", naming nothing
    assert refusal() == f"cannot load {uri}: the model's folder is missing ({folder})."
    assert refusal(f"runs:/{btc.info.run_id}/model") == (f"cannot load runs:/{btc.info.run_id}/model: "
                                                         f"the model's folder is missing ({folder}).")
    # A model that was never registered says so, without a path to name.
    assert refusal("models:/cryptolstm-btc/7").startswith("cannot load models:/cryptolstm-btc/7: ")


def test_best_run_of_an_experiment_and_champion_loads_back_to_forecast(store, market):
    better = store.btc[-1]
    assert registry.best_run("BTC", "cryptolstm-btc").info.run_id == better.info.run_id
    assert registry.best_run("BTC").info.run_id == better.info.run_id  # any experiment
    with pytest.raises(ConfigError, match="no finished ETH run with val/mae_ratio and a model in experiment"):
        registry.best_run("ETH", "cryptolstm-btc")
    with pytest.raises(ConfigError, match="MLflow experiment 'nope' does not exist."):
        registry.best_run("BTC", "nope")
    registry.register(better, "BTC")
    model, label = registry.load_champion("BTC")
    assert label == "models:/cryptolstm-btc@champion (version 1)"
    rows = example_rows(market.frame)
    out = model.predict(rows)
    run_model = mlflow.pyfunc.load_model(f"runs:/{better.info.run_id}/model")
    assert out.equals(run_model.predict(rows)) and out["date"].tolist() == [NEXT_DAY]
    with pytest.raises(ConfigError, match="cannot load models:/cryptolstm-eth@champion"):
        registry.load_champion("ETH")


REGISTER = "import sys; from cryptolstm.tracking import registry; print(registry.register_run(sys.argv[1], 'BTC'))"


def test_concurrent_registrations_leave_the_alias_on_the_better_model_and_one_version_per_run(store, tmp_path):
    """Three processes at once: the worse run and the better one registered by the library (the rule
    decides), and `cryptolstm register` of the experiment's best run (the better one again). Whatever
    their order, the better run holds the alias and each run has one version."""
    worse, better = store.btc[0], store.btc[-1]
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER, run.info.run_id], cwd=tmp_path, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for run in (better, worse)]
    procs.append(start_cli(["register", "-q", "--coin", "BTC", "--experiment-name", "cryptolstm-btc"], tmp_path))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert _versions() == [("cryptolstm-btc", "1"), ("cryptolstm-btc", "2")]  # the better run twice: one version
    assert _champion().tags["source_run"] == better.info.run_id
    assert sum("nothing was added" in out for out, _ in outputs) == 1


def test_predict_command_and_mlflow_models_serve_answer_with_the_champions_forecast(store, synthetic_data, market,
                                                                                  tmp_path):
    registry.register(store.btc[-1], "BTC")
    rows = example_rows(market.frame)
    expected = registry.load_champion("BTC")[0].predict(rows)

    done = _cli("predict", "-q", "--coin", "BTC", "--data-dir", str(synthetic_data))
    assert done.exit_code == 0, done.output[-2000:]
    assert f"BTC close on {NEXT_DAY}: {expected['forecast_close'].iloc[0]:,.2f} USD" in done.stdout
    assert "models:/cryptolstm-btc@champion (version 1)" in done.stdout

    with served("models:/cryptolstm-btc@champion", tmp_path, rows) as (port, answer):
        (prediction,) = answer["predictions"]
        assert prediction["date"] == NEXT_DAY
        assert prediction["forecast_close"] == pytest.approx(expected["forecast_close"].iloc[0], rel=1e-9)
        # Too few rows: a 400 with the sentence.
        with pytest.raises(urllib.error.HTTPError) as info:
            post_rows(port, rows.head(3))
        assert info.value.code == 400 and "has 3 row(s); this model needs at least 7 daily rows" in info.value.read().decode()
