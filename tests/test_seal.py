"""A sealed period (#30): no workflow is handed a day from ``sealed_from`` on, because the data
layer drops those rows as it reads each file. Proved with a sentinel: the sealed days' prices are
made absurd (x1000) and every figure a sealed run logs equals that of a run on data that simply
ends before the seal. Registration refuses a run across a declared seal and records the seal;
``evaluate --open-seal`` scores the sealed days and records each opening, saying so the second time."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.options import SearchOptions
from cryptolstm.refit import refit
from cryptolstm.search.space import load_space
from cryptolstm.tracking import registry
from cryptolstm.tracking.registry import MlflowModels
from tests.conftest import MERGE, all_runs, building_store, cut_data, work_on_copy

pytestmark = pytest.mark.slow

SEAL = "2021-10-01"  # the synthetic days run to 2021-11-30: 61 sealed days
LAST = "2021-09-30"  # the last day a sealed run may read
TINY = dict(merge_date=MERGE, window_len=5, layers=1, neurons=4, epochs=2, batch_size=64, seed=7)
runner = CliRunner()


def sentinel_data(source: Path, folder: Path) -> Path:
    """``source``'s price files with every value of every day from `SEAL` on multiplied by 1000: a
    figure that read one of them could not equal one that did not."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("btc-usd-daily.csv", "eth-usd-daily.csv"):
        frame = pd.read_csv(source / name)
        sealed = frame["date"] >= SEAL
        for column in ("open", "high", "low", "close", "volume"):
            frame.loc[sealed, column] *= 1000.0
        frame.to_csv(folder / name, index=False)
    return folder


def _cli(*args: str) -> str:
    result = runner.invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    return result.output


def _run_id(output: str) -> str:
    return re.search(r"model: runs:/([0-9a-f]{32})/model", output).group(1)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory, synthetic_data, _empty_store):
    """A store made once: run ``a`` trained with --sealed-from on the sentinel data and registered
    (version 1, champion), run ``b`` trained without a seal on the data cut the day before the seal
    (not registered). Read-only: a test works on a copy (`store`)."""
    root = tmp_path_factory.mktemp("sealed")
    sentinel = sentinel_data(synthetic_data, root / "sentinel")
    cut = cut_data(synthetic_data, root / "cut", LAST)
    experiment = root / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(TINY))
    with building_store(root / "store", _empty_store) as uri:
        a = _run_id(_cli("train", "--experiment", str(experiment), "--data-dir", str(sentinel), "--sealed-from", SEAL,
                         "--register"))
        b = _run_id(_cli("train", "--experiment", str(experiment), "--data-dir", str(cut)))
    return SimpleNamespace(root=root / "store", uri=uri, a=a, b=b, sentinel=sentinel, cut=cut, experiment=experiment,
                           data=synthetic_data)


@pytest.fixture
def store(sealed, tmp_path, monkeypatch):
    """A copy of `sealed`'s store in this test's working directory, the tracking URI set to it."""
    work_on_copy(sealed.root, tmp_path, monkeypatch)
    return sealed


def test_a_sealed_run_reads_no_sealed_day_and_records_its_seal(store):
    client = MlflowClient()
    a, b = client.get_run(store.a), client.get_run(store.b)
    assert a.data.metrics and a.data.metrics == b.data.metrics  # every figure, to the last bit
    differ = {k for k in a.data.params if a.data.params[k] != b.data.params.get(k)}
    assert differ == {"config.sealed_from", "config.data_dir"}, differ
    assert a.data.params["config.sealed_from"] == SEAL and "config.sealed_from" not in b.data.params  # no seal
    assert a.data.tags["sealed_from"] == SEAL and "sealed_from" not in b.data.tags
    assert a.data.tags["data.last_date"] == b.data.tags["data.last_date"] == LAST
    version = client.get_model_version("cryptolstm-btc", "1")
    assert version.tags["sealed_from"] == SEAL and version.tags["source_run"] == store.a


def test_a_sealed_backtest_reads_no_sealed_day(store):
    """The backtest loads every day of the data (not to an end date): the seal still holds, and its
    last fold ends the day before the seal."""
    common = ["backtest", "--config", str(store.experiment), "--coin", "BTC", "--start", "2021-08-01",
              "--fold-months", "1", "--seeds", "1", "--max-epochs", "1", "--arima", "false"]
    _cli(*common, "--data-dir", str(store.sentinel), "--sealed-from", SEAL)
    _cli(*common, "--data-dir", str(store.cut), "--end", LAST)
    sealed, cut = sorted((r for r in all_runs(MlflowClient()) if r.data.tags.get("cryptolstm.entry") == "backtest"),
                         key=lambda r: r.info.start_time)
    figures = [{k: v for k, v in r.data.metrics.items() if not k.endswith("seconds")} for r in (sealed, cut)]
    assert figures[0] and figures[0] == figures[1]  # every figure but the wall time
    assert sealed.data.tags["sealed_from"] == SEAL and sealed.data.params["backtest.end"] == LAST


def test_a_search_base_and_a_refit_keep_the_seal(store):
    options = SearchOptions(sealed_from=SEAL, data_dir=str(store.sentinel))
    space = Path(__file__).resolve().parents[1] / "experiments" / "search-default.yaml"
    assert load_space(space, **options.base_overrides()).base.sealed_from == SEAL
    # The refit inherits version 1's seal: the sentinel data hold no day past the model's once sealed.
    with pytest.raises(DataError, match=f"ends on {LAST}, and cryptolstm-btc version 1 was trained on data up to {LAST}"):
        refit(MlflowModels(), "models:/cryptolstm-btc/1", str(store.sentinel))


def test_register_refuses_a_run_across_a_declared_seal_and_records_one_it_keeps(store):
    runs = len(all_runs(MlflowClient()))
    with pytest.raises(ConfigError) as refused:
        registry.register_run(store.b, "BTC", sealed_from="2021-09-01", chosen=True)
    assert str(refused.value) == (f"run {store.b} read data up to {LAST}, across the seal from 2021-09-01: it has seen "
                                  f"sealed days, so it cannot be registered under that seal (train again with "
                                  f"--sealed-from 2021-09-01 and register that run).")
    assert len(MlflowClient().search_model_versions("name = 'cryptolstm-btc'")) == 1
    done = registry.register_run(store.b, "BTC", sealed_from=SEAL)
    assert MlflowClient().get_model_version("cryptolstm-btc", done.version).tags["sealed_from"] == SEAL
    assert len(all_runs(MlflowClient())) == runs


def test_opening_a_seal_scores_its_days_and_is_recorded_each_time(store):
    args = ["evaluate", "--model", "models:/cryptolstm-btc/1", "--data-dir", str(store.data), "--open-seal"]
    first = _cli(*args)
    assert f"the seal from {SEAL} is opened for the first time" in first
    second = _cli(*args)
    client = MlflowClient()
    version = client.get_model_version("cryptolstm-btc", "1")
    openings = version.tags["seal.openings"].split("; ")
    assert version.tags["seal.opened"] == "2" and len(openings) == 2
    assert (f"this seal (from {SEAL}) was opened 1 time before, on {openings[0]}; these figures are no longer an "
            f"untouched test.") in second
    assert client.get_run(store.a).data.tags["seal.opened"] == "2"
    evaluations = sorted((r for r in all_runs(client) if r.data.tags.get("cryptolstm.entry") == "evaluate"),
                         key=lambda r: r.info.start_time)
    assert [r.data.tags["seal.opened"] for r in evaluations] == ["1", "2"]
    assert all(r.data.tags["live.first_date"] == SEAL and r.data.tags["sealed_from"] == SEAL for r in evaluations)
    assert "seal.again" in evaluations[1].data.tags and "seal.again" not in evaluations[0].data.tags
    assert evaluations[0].data.metrics == evaluations[1].data.metrics  # the same days, the same figures
    # Without --open-seal the sealed days stay sealed: nothing after the model's data is left to score.
    plain = runner.invoke(app, ["evaluate", "--model", "models:/cryptolstm-btc/1", "--data-dir", str(store.data)])
    assert plain.exit_code == 2 and plain.stderr.strip() == (
        f"error: the days from {SEAL} on are sealed for cryptolstm-btc version 1: score them once, beside every "
        f"baseline, with --open-seal.")


def _refused(args: list[str]) -> str:
    """The one line a refused command prints (exit 2, no traceback), after checking it left no run."""
    before = len(all_runs(MlflowClient()))
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
    assert len(all_runs(MlflowClient())) == before
    return result.stderr.strip()


def test_each_bad_seal_is_one_sentence(store):
    train = ["train", "--experiment", str(store.experiment), "--data-dir", str(store.data)]
    few = _refused([*train, "--sealed-from", "2021-01-09"])
    assert few == ("error: 8 days are too few for a 0.7/0.15/0.15 split (honest protocol) with window_len 5 and "
                   "horizon 1; widen merge_date..end_date, or seal a later day than 2021-01-09 (the seal ends the "
                   "data on 2021-01-08).")
    late = _refused([*train, "--sealed-from", "2022-06-01"])
    assert late == (f"error: the seal from 2022-06-01 is after the last day of {store.data / 'btc-usd-daily.csv'} "
                    f"(2021-11-30): it would hide nothing; seal a day the data holds.")
    before = _refused([*train, "--sealed-from", "2020-06-01"])
    assert before == f"error: sealed_from (2020-06-01) must be after merge_date ({MERGE}): a seal from there " \
                     f"leaves no day to train on."
    unsealed = _refused(["evaluate", "--model", f"runs:/{store.b}/model", "--data-dir", str(store.data), "--open-seal"])
    assert unsealed == (f"error: runs:/{store.b}/model has no seal (it was trained and registered without "
                        f"--sealed-from): there is nothing to open; score it without --open-seal.")
    # A version whose recorded seal its data reached (a tag set by hand): its sealed days are not untouched.
    across = registry.register_run(store.b, "BTC", force=True)
    MlflowClient().set_model_version_tag("cryptolstm-btc", across.version, "sealed_from", "2021-09-01")
    crossed = _refused(["evaluate", "--model", f"models:/cryptolstm-btc/{across.version}", "--data-dir",
                        str(store.data), "--open-seal"])
    assert crossed == (f"error: cryptolstm-btc version {across.version} was trained on data up to {LAST}, across its "
                       f"seal from 2021-09-01: its sealed days are not untouched, so there is no seal to open.")
