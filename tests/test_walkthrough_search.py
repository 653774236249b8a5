"""The walk-through's searches, as a new user types them, and what the terminal shows (#23): a
search with each engine, a registration of the best run and a backtest, real `cryptolstm`
processes in one store on the synthetic prices (the train, evaluate and refit half is
tests/test_walkthrough.py; the helpers are its)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import all_runs
from tests.test_walkthrough import NOISE, terminal, walk_steps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def walk(tmp_path_factory, synthetic_data, _empty_store):
    data = ["--data-dir", str(synthetic_data)]
    return walk_steps(tmp_path_factory, _empty_store, "walkthrough-search", {
        "optuna": ["search", "--coin", "BTC", "--space", "space.yaml", "--n-trials", "2", "--max-epochs", "2",
                   "--study-name", "walk", *data],
        "keras_tuner": ["search", "--coin", "BTC", "--engine", "keras-tuner", "--algorithm", "bayesian", "--space",
                        "space.yaml", "--n-trials", "2", "--max-epochs", "2", *data],
        "register": ["register", "--coin", "BTC"],
        "backtest": ["backtest", "--config", "base.yaml", "--coin", "BTC", "--start", "2021-10-01", "--end",
                     "2021-11-30", "--fold-months", "1", "--seeds", "1", "--arima", "false", *data],
    })


def test_a_search_registers_nothing_unless_asked(walk):
    cwd, done, client, sources = walk
    parents = [r for r in all_runs(client) if r.data.tags.get("study_name")
               and "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and sources["optuna"] == sources["keras_tuner"] == set()
    assert "registered" not in done["optuna"].stdout + done["keras_tuner"].stdout
    assert "registered cryptolstm-btc version 1 (now @champion)" in done["register"].stdout


@pytest.mark.parametrize("step", ["optuna", "keras_tuner", "register", "backtest"])
def test_no_line_from_the_noise_list_reaches_the_terminal(walk, step):
    _, done, _, _ = walk
    noisy = [line for line in terminal(done[step]).splitlines() if NOISE.search(line)]
    assert noisy == []


@pytest.mark.parametrize("step, bars", [
    ("optuna", [r"walk trials.*2/2", r"chosen config epochs"]),
    ("keras_tuner", [r"keras-tuner bayesian fits", r"chosen config epochs"]),
    ("backtest", [r"BTC backtest.*2/2"]),
])
def test_every_long_phase_has_a_bar_with_its_total(walk, step, bars):
    _, done, _, _ = walk
    for bar in bars:
        assert re.search(bar, done[step].stderr), f"{step}: no bar {bar!r} in {done[step].stderr[-1500:]!r}"


def test_no_parameter_reads_none_or_blank_and_the_backtest_puts_its_result_first(walk):
    client = walk[2]
    for run in all_runs(client):
        blank = {k: v for k, v in run.data.params.items() if v in ("", "None")}
        assert blank == {}, f"run {run.info.run_name}: {blank}"
        assert not re.fullmatch(r"[a-z]+-[a-z]+-\d+", run.info.run_name)  # never MLflow's random name
    assert any(re.fullmatch(r"backtest \d\.\d{3} · .*", r.info.run_name) for r in all_runs(client))


def test_printed_numbers_are_rounded(walk):
    _, done, _, _ = walk
    for step in ("optuna", "keras_tuner", "register"):
        assert not re.search(r"\d\.\d{9,}", done[step].stdout), done[step].stdout
