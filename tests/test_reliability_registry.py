"""Nothing half-registered, nothing absurd served (#24): a `register` or a `refit` SIGKILLed at the
exact moment between writing its version and moving the alias, then the same command again; and
`mlflow models serve` answering an implausible or oversized request with HTTP 400 and one sentence.

The kill is real: the command runs in its own process, where MLflow's alias write is replaced by a
SIGKILL of that process (no handler runs, nothing is cleaned up), so the store holds exactly what a
crash at that point leaves.
"""

from __future__ import annotations

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

from cryptolstm.data import load_market
from cryptolstm.forecaster import MAX_ROWS, example_rows
from tests.conftest import cli_env, post_rows, run_cli, served

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

TINY = ["--merge-date", "2020-06-01", "--layers", "1", "--neurons", "4", "--epochs", "2", "--seed", "7"]
END = "2021-09-30"
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
def champion(tmp_path, synthetic_data):
    """(working directory, client): version 1 of cryptolstm-btc, trained on the days to END, champion."""
    done = run_cli(["train", "--coin", "BTC", "--end-date", END, "--register", *TINY, "--data-dir", str(synthetic_data)],
                   tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp_path, MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


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

    again = run_cli(refit[:-3] + ["--data-dir", str(synthetic_data)], cwd, f"sqlite:///{cwd / 'mlflow.db'}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "this refit was made already, from the same model and data, as version 2" in again.stdout
    assert "refit epochs" not in again.stderr  # nothing was trained
    after = _versions(client)
    assert [str(v.version) for v in after] == ["1", "2"]  # nothing was added
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == "2"
    assert "by the next command" in after[1].tags["promotion.completed"]
    refit_run = client.get_run(after[1].run_id)
    assert refit_run.info.status == "FINISHED"  # its training had ended before the registration was cut


def test_a_register_killed_between_its_version_and_the_alias_is_completed_by_the_next_register(
        champion, synthetic_data):
    cwd, client = champion
    done = run_cli(["train", "--coin", "BTC", "--end-date", END, *TINY[:-1], "8", "--data-dir", str(synthetic_data)],
                   cwd, f"sqlite:///{cwd / 'mlflow.db'}")
    assert done.returncode == 0, done.stderr[-2000:]
    other = next(r for r in client.search_runs([client.get_experiment_by_name("cryptolstm-btc").experiment_id])
                 if r.data.params.get("config.seed") == "8")
    killed = killed_at_the_alias(["register", "--coin", "BTC", "--run-id", other.info.run_id, "--force"], cwd)
    assert killed.returncode == -signal.SIGKILL
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == "1"

    again = run_cli(["register", "--coin", "BTC", "--run-id", other.info.run_id], cwd, f"sqlite:///{cwd / 'mlflow.db'}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"run {other.info.run_id} was already registered as version 2; nothing was added" in again.stdout
    assert [str(v.version) for v in _versions(client)] == ["1", "2"]
    assert str(client.get_model_version_by_alias("cryptolstm-btc", "champion").version) == "2"


def _refused(port: int, rows: pd.DataFrame) -> str:
    with pytest.raises(urllib.error.HTTPError) as info:
        post_rows(port, rows)
    assert info.value.code == 400
    return info.value.read().decode()


def test_a_served_model_answers_absurd_or_oversized_requests_with_400_and_one_sentence(champion, synthetic_data):
    cwd, _ = champion
    rows = example_rows(load_market(synthetic_data, "2020-06-01").frame)
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
