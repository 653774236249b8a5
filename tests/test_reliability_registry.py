"""Nothing half-registered, nothing absurd served (#24): a `register` or a `refit` SIGKILLed at the
exact moment between writing its version and moving the alias, then the same command again; and
`mlflow models serve` answering an implausible or oversized request with HTTP 400 and one sentence.

The kill is real: the command runs in its own process, where MLflow's alias write is replaced by a
SIGKILL of that process (no handler runs, nothing is cleaned up), so the store holds exactly what a
crash at that point leaves. The next command runs in this process (its subject is what it finds
and says, not how it starts).
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.data import load_market
from cryptolstm.pyfunc import example_rows
from cryptolstm.rows import MAX_ROWS
from cryptolstm.tracking import tracked_train
from tests.conftest import CUT, all_runs, cli_env, post_rows, served

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

KILLED_AT_THE_ALIAS = """
import os, signal, sys
from mlflow import MlflowClient
MlflowClient.set_registered_model_alias = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
from cryptolstm.__main__ import main
sys.argv = ["cryptolstm", *sys.argv[1:]]
main()
"""


def killed_at_the_alias(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``cryptolstm *args`` in a process SIGKILLed when it moves the champion alias."""
    return subprocess.run([sys.executable, "-c", KILLED_AT_THE_ALIAS, *args], cwd=cwd, capture_output=True, text=True,
                          env=cli_env(f"sqlite:///{cwd / 'mlflow.db'}"), timeout=600)


@pytest.fixture
def champion(champion_store):
    """(working directory, client): version 1 of cryptolstm-btc, trained on the synthetic days to
    `CUT`, champion (a copy of the session's registered store)."""
    return champion_store.root, MlflowClient(champion_store.uri)


def _versions(client) -> list:
    return sorted(client.search_model_versions("name = 'cryptolstm-btc'"), key=lambda v: int(v.version))


def test_a_refit_killed_between_its_version_and_the_alias_is_completed_and_found_not_trained_again(
        champion, synthetic_data):
    cwd, client = champion
    refit = ["refit", "--model", "models:/cryptolstm-btc/1", "--force", "--data-dir", str(synthetic_data)]
    killed = killed_at_the_alias(refit, cwd)
    assert killed.returncode == -signal.SIGKILL
    cut = _versions(client)
    assert [str(v.version) for v in cut] == ["1", "2"]  # version 2 written with its decision ...
    assert cut[1].tags["promotion.decision"] == "promote" and cut[1].tags["promotion.over"] == "1"
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == "1"  # ... the alias not moved

    runs = {r.info.run_id for r in all_runs(client)}
    again = CliRunner().invoke(app, refit[:-3] + ["--data-dir", str(synthetic_data)])
    assert again.exit_code == 0, again.output[-2000:]
    assert "this refit was made already, from the same model and data, as version 2" in again.stdout
    assert "its validation MAE ratio to persistence is" in again.stdout and "test MAE ratio" not in again.stdout
    assert "refit epochs" not in again.stderr and {r.info.run_id for r in all_runs(client)} == runs  # nothing trained
    after = _versions(client)
    assert [str(v.version) for v in after] == ["1", "2"]  # nothing was added
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == "2"
    assert "by the next command" in after[1].tags["promotion.completed"]
    refit_run = client.get_run(after[1].run_id)
    assert refit_run.info.status == "FINISHED"  # its training had ended before the registration was cut


def test_a_register_killed_between_its_version_and_the_alias_is_completed_by_the_next_register(
        champion, champion_store):
    cwd, client = champion
    cfg = dataclasses.replace(champion_store.cfg, seed=8)
    other, _ = tracked_train(cfg, load_market(champion_store.data, cfg.merge_date, cfg.end_date))
    killed = killed_at_the_alias(["register", "--coin", "BTC", "--run-id", other, "--force"], cwd)
    assert killed.returncode == -signal.SIGKILL
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == "1"

    again = CliRunner().invoke(app, ["register", "--coin", "BTC", "--run-id", other])
    assert again.exit_code == 0, again.output[-2000:]
    assert f"run {other} was already registered as version 2; nothing was added" in again.stdout
    assert [str(v.version) for v in _versions(client)] == ["1", "2"]
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == "2"


def _refused(port: int, rows: pd.DataFrame) -> str:
    """The sentence of the HTTP 400 answer to ``rows`` (the whole message: no echo of the input)."""
    with pytest.raises(urllib.error.HTTPError) as info:
        post_rows(port, rows)
    assert info.value.code == 400
    answer = json.loads(info.value.read().decode())
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE" and "\n" not in answer["message"], answer
    return answer["message"]


def test_a_served_model_answers_absurd_or_false_requests_with_400_and_one_sentence(champion, champion_store):
    """Served as the README serves it (`cryptolstm serve`). The request's days follow the model's
    training data (to CUT); the days it trained on are those of `trained`."""
    cwd, _ = champion
    frame = load_market(champion_store.data, champion_store.cfg.merge_date).frame
    rows, trained = example_rows(frame), example_rows(frame.loc[:CUT])
    with served("models:/cryptolstm-btc@champion", cwd, rows, f"sqlite:///{cwd / 'mlflow.db'}") as (port, answer):
        absurd = rows.copy()
        absurd.loc[absurd.index[-1], "BTC_volume"] = 1e300
        assert _refused(port, absurd).startswith("the input's BTC_volume on ")
        many = pd.DataFrame({c: np.resize(rows[c].to_numpy(), MAX_ROWS + 1) for c in rows.columns})
        many["date"] = pd.date_range("1960-01-01", periods=MAX_ROWS + 1).strftime("%Y-%m-%d")
        assert _refused(port, many) == f"the input has {MAX_ROWS + 1} rows; a request may send at most {MAX_ROWS:,} daily rows."
        assert _refused(port, rows.drop(columns=["ETH_close"])) == (
            "the input lacks column(s) ETH_close; it needs date, BTC_close, BTC_volume, ETH_close, ETH_volume.")
        # ETH's prices in BTC's columns: the two closes' ratio is 1, far from any day it trained on
        swapped = rows.assign(BTC_close=rows["ETH_close"], BTC_volume=rows["ETH_volume"])
        said = _refused(port, swapped)
        assert re.match(r"the input's BTC_close / ETH_close on 2021-\d\d-\d\d is 1, while it was [\d.]+ to [\d.]+ on the "
                        r"days this model trained on", said), said
        assert said.endswith("these rows are not BTC's and ETH's prices in their columns.")
        # the days it trained on must hold the prices it trained on
        edited = trained.copy()
        edited.loc[edited.index[-2], "BTC_close"] *= 1.01
        assert _refused(port, edited).startswith(f"the input's prices are not those this model was trained on: "
                                                 f"BTC_close on {edited['date'].iloc[-2]} is ")
        assert post_rows(port, trained)["predictions"][0]["date"] == "2021-10-01"  # the true ones it forecasts
        assert post_rows(port, rows)["predictions"] == answer["predictions"]  # and it still serves


def test_serve_refuses_a_damaged_model_in_one_sentence_before_any_server_starts(champion):
    cwd, client = champion
    version = client.get_model_version_by_alias("cryptolstm-btc", "champion")
    (onnx,) = Path(client.get_model_version_download_uri("cryptolstm-btc", version.version).removeprefix("file://")
                   ).rglob("*.onnx")
    onnx.write_bytes(onnx.read_bytes()[:200])
    done = CliRunner().invoke(app, ["serve", "--coin", "BTC", "--port", "1"])
    assert done.exit_code == 2
    assert done.output.startswith("error: cannot load models:/cryptolstm-btc/1: its artifact ") and "not a valid ONNX model" in done.output
    assert len(done.output.strip().splitlines()) == 1 and "Traceback" not in done.output
