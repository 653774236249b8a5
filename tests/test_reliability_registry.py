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
from cryptolstm.forecaster import MAX_ROWS, example_rows
from cryptolstm.tracking import tracked_train
from tests.conftest import all_runs, cli_env, post_rows, served

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
    with pytest.raises(urllib.error.HTTPError) as info:
        post_rows(port, rows)
    assert info.value.code == 400
    return info.value.read().decode()


def test_a_served_model_answers_absurd_or_oversized_requests_with_400_and_one_sentence(champion, champion_store):
    cwd, _ = champion
    rows = example_rows(load_market(champion_store.data, champion_store.cfg.merge_date).frame)
    with served("models:/cryptolstm-btc@champion", cwd, rows, f"sqlite:///{cwd / 'mlflow.db'}") as (port, answer):
        absurd = rows.copy()
        absurd.loc[absurd.index[-1], "BTC_volume"] = 1e300
        said = _refused(port, absurd)
        assert "BTC_volume" in said and "1e+14" in said and "Traceback" not in said
        many = pd.DataFrame({c: np.resize(rows[c].to_numpy(), MAX_ROWS + 1) for c in rows.columns})
        many["date"] = pd.date_range("1960-01-01", periods=MAX_ROWS + 1).strftime("%Y-%m-%d")
        said = _refused(port, many)
        assert f"a request may send at most {MAX_ROWS:,} daily rows" in said
        assert post_rows(port, rows)["predictions"] == answer["predictions"]  # and it still serves
