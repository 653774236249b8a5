"""The docs' walk-through as a new user types it, and what the terminal shows while they do (#23).

One store, one working directory, real `cryptolstm` processes on synthetic prices (2020-01-01 to
2021-11-30): docs/live.md's walk-through (train to an end date and make it champion, evaluate it on
the days after, refit it); a search with each engine, a registration and a backtest are
tests/test_walkthrough_search.py (their own store, so that two test workers share the walk). Every
command's terminal (stdout and stderr, as a pipe: the noise filter and the progress bars run as on a
terminal) is kept, and the tests below read them. (The README's full-data run is this `train`
without --end-date and --register, its run's name checked in tests/test_tracking.py; `predict` loads
and runs the champion as `evaluate` does here.)
"""

from __future__ import annotations

import re

import pytest
from mlflow import MlflowClient

from tests.conftest import all_runs, copy_store, run_cli

pytestmark = pytest.mark.slow

TINY = ["--merge-date", "2020-06-01", "--layers", "1", "--neurons", "4", "--epochs", "3", "--batch-size", "64",
        "--seed", "7"]
END = "2021-09-30"  # the walk-through's model ends here: 61 new days follow it in the data
BASE = "protocol: honest\nmerge_date: '2020-06-01'\nwindow_len: 7\nlayers: 1\nneurons: 3\nepochs: 2\nbatch_size: 64\nseed: 3\n"
SPACE = "base: base.yaml\nspace:\n  dropout: {type: float, low: 0.0, high: 0.4}\n  neurons: {type: categorical, choices: [2, 3]}\n"

# Lines a user must not see without --verbose (#23's list): tf2onnx, Optuna's study notices,
# MLflow's registration notices, matplotlib's font cache, TensorFlow's start-up, MLflow warnings.
NOISE = re.compile(r"constant folding|tf2onnx|A new study created|Trial \d+ finished|Successfully registered model|"
                   r"Created version|Registered model .* already exists|fontManager|font cache|absl::InitializeLog|"
                   r"oneDNN|cuInit|Found extra inputs|CloudPickle|Traceback|FutureWarning|DeprecationWarning|"
                   r"UserWarning|\b0epoch")


def walk_steps(tmp_path_factory, _empty_store, name: str, steps: dict[str, list[str]]):
    """(working directory, {step: CompletedProcess}, client, {step: the runs the registered versions
    came from after it}) after every command of ``steps`` ran, in order, in one new store."""
    cwd = tmp_path_factory.mktemp(name)
    uri = copy_store(_empty_store, cwd)
    client = MlflowClient(uri)
    (cwd / "base.yaml").write_text(BASE)
    (cwd / "space.yaml").write_text(SPACE)
    done, sources = {}, {}
    for step, args in steps.items():
        done[step] = run_cli(args, cwd, uri)
        assert done[step].returncode == 0, f"{step}: {done[step].stderr[-3000:]}"
        sources[step] = {v.run_id for v in client.search_model_versions("name = 'cryptolstm-btc'")}
    return cwd, done, client, sources


@pytest.fixture(scope="module")
def walk(tmp_path_factory, synthetic_data, _empty_store):
    """docs/live.md's walk-through: train to an end date and make it champion, evaluate, refit
    (the searches, a registration and a backtest: tests/test_walkthrough_search.py, on another
    worker)."""
    data = ["--data-dir", str(synthetic_data)]
    return walk_steps(tmp_path_factory, _empty_store, "walkthrough", {
        "train": ["train", "--coin", "BTC", "--end-date", END, "--register", *TINY, *data],
        "evaluate": ["evaluate", "--model", "models:/cryptolstm-btc@champion", *data],
        "refit": ["refit", "--model", "models:/cryptolstm-btc@champion", *data],
    })


def terminal(proc) -> str:
    return proc.stdout + proc.stderr


def test_the_walk_through_makes_the_end_date_run_champion_evaluates_it_and_refits_it(walk):
    cwd, done, client, _ = walk
    versions = sorted(client.search_model_versions("name = 'cryptolstm-btc'"), key=lambda v: int(v.version))
    first = versions[0]
    ended = client.get_run(first.run_id)
    assert ended.data.params["config.end_date"] == END
    assert "registered cryptolstm-btc version 1 (now @champion)" in done["train"].stdout
    # evaluate scored the 61 days after the model's data and tagged version 1 with them
    assert "61 new day(s), 2021-10-01..2021-11-30" in done["evaluate"].stdout
    tags = client.get_model_version("cryptolstm-btc", "1").tags
    assert tags["live.first_date"] == "2021-10-01" and tags["live.days"] == "61"
    # refit trained on every day and registered version 2 with the decision in words
    assert re.search(r"registered cryptolstm-btc version 2 \((now @champion|not champion)\)", done["refit"].stdout)
    refit_run = client.get_run(client.get_model_version("cryptolstm-btc", "2").run_id)
    assert refit_run.data.params["config.end_date"] == "2021-11-30"
    assert refit_run.data.tags["refit.of_version"] == "1"


@pytest.mark.parametrize("step", ["train", "evaluate", "refit"])
def test_no_line_from_the_noise_list_reaches_the_terminal(walk, step):
    _, done, _, _ = walk
    noisy = [line for line in terminal(done[step]).splitlines() if NOISE.search(line)]
    assert noisy == []


@pytest.mark.parametrize("step, bars", [
    ("train", [r"BTC epochs.*\d+/\d+"]),
    ("refit", [r"refit epochs.*\d+/\d+"]),
])
def test_every_long_phase_has_a_bar_with_its_total(walk, step, bars):
    _, done, _, _ = walk
    for bar in bars:
        assert re.search(bar, done[step].stderr), f"{step}: no bar {bar!r} in {done[step].stderr[-1500:]!r}"


def test_an_epoch_bar_ends_full_and_one_that_early_stopping_ended_says_so(walk):
    """A bar never stays at 16/53: each epoch bar's last drawing is 100 %, with the epoch it stopped
    at when early stopping ended the fit before its total."""
    _, done, _, _ = walk
    for step in ("train", "refit"):
        drawings = [d for d in re.split(r"[\r\n]", done[step].stderr) if re.match(r"(BTC|refit) epochs", d)]
        bars = [[]]
        for drawing in drawings:  # a bar starts at 0 %
            if re.search(r": +0%", drawing) and bars[-1]:
                bars.append([])
            bars[-1].append(drawing)
        assert bars[0], done[step].stderr[-1500:]
        for bar in bars:
            assert re.search(r"epochs( \(early stopping: (\d+) of (\d+)\))?: +100%", bar[-1]), (step, bar[-3:])
            stopped = re.search(r"early stopping: (\d+) of (\d+)", bar[-1])
            assert stopped is None or int(stopped[1]) < int(stopped[2])


def test_no_parameter_reads_none_or_blank_and_no_version_tag_is_empty(walk):
    client = walk[2]
    for run in all_runs(client):
        blank = {k: v for k, v in run.data.params.items() if v in ("", "None")}
        assert blank == {}, f"run {run.info.run_name}: {blank}"
        assert not re.fullmatch(r"[a-z]+-[a-z]+-\d+", run.info.run_name)  # never MLflow's random name
    for version in client.search_model_versions("name = 'cryptolstm-btc'"):
        assert {k: v for k, v in version.tags.items() if v == ""} == {}


def test_run_names_put_the_result_first(walk):
    client = walk[2]
    names = [r.info.run_name for r in all_runs(client)]
    assert any(re.fullmatch(rf"val \d\.\d{{3}} test \d\.\d{{3}} · to{END}-1x4-w7-s7", n) for n in names)
    assert any(re.fullmatch(r"live \d\.\d{3} · evaluate-btc-v1", n) for n in names)
