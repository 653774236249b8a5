import keras_tuner as kt
import optuna
import pytest

from cryptolstm.errors import ConfigError
from cryptolstm.search.space import load_space
from tests.conftest import ROOT

DEFAULT = ROOT / "experiments" / "search-default.yaml"


def _space(tmp_path, body: str):
    path = tmp_path / "space.yaml"
    path.write_text(f"base: {ROOT / 'experiments' / 'default.yaml'}\n{body}")
    return path


@pytest.mark.parametrize(
    "body, words",
    [
        ("space:\n  neurons: {type: categorical, choices: []}\n", "space.neurons needs a non-empty list of choices"),
        ("space:\n  dropout: {type: float, low: 0.4, high: 0.1}\n", "space.dropout: low (0.4) is greater than high (0.1)"),
        ("space:\n  dropout: {type: float, low: 0.1, high: 0.5, steps: 2}\n", "space.dropout has unknown key(s) steps"),
        ("space:\n  nuerons: {type: int, low: 1, high: 3}\n", "space.nuerons is not a config field"),
        ("space:\n  coin: {type: categorical, choices: [BTC, ETH]}\n", "space.coin cannot be searched"),
        ("space:\n  neurons: {type: integer, low: 1, high: 3}\n", "space.neurons needs type: int, float or categorical"),
        ("space:\n  learning_rate: {type: float, low: 0, high: 0.1, log: true}\n", "a log scale needs low > 0"),
        ("space:\n  dropout: {type: float, low: 0.0, high: 1.0}\n", "space.dropout: value 1.0 is invalid (dropout must be in [0, 1)"),
        ("space:\n  activation: {type: categorical, choices: [tanh, banana]}\n", "value 'banana' is invalid"),
        ("space: {}\n", "declares no dimensions"),
        ("spaces:\n  neurons: {type: int, low: 1, high: 3}\n", "unknown key(s) spaces"),
        ("objective: test/mae\nspace:\n  layers: {type: int, low: 1, high: 2}\n", "objective must be a validation metric"),
    ],
)
def test_invalid_spaces_fail_before_any_trial_with_one_sentence(tmp_path, body, words):
    with pytest.raises(ConfigError) as info:
        load_space(_space(tmp_path, body))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_default_space_covers_the_issue_and_contains_the_2018_model():
    space = load_space(DEFAULT, coin="ETH")
    assert {"window_len", "neurons", "dropout", "batch_size", "activation"} <= {d.name for d in space.dimensions}
    assert space.base.coin == "ETH" and space.objective == "val/mae_ratio"
    base = space.base_values()
    assert base["neurons"] == 512 and base["window_len"] == 7 and base["batch_size"] == 128
    assert all(d.contains(base[d.name]) for d in space.dimensions)


def test_the_distribution_spaces_base_is_inside_it_by_its_feature_sets_name():
    """The hybrid base lists the features of the set ``garch``; the space offers the set by name, so the
    base is a point of the space (and is queued as trial 0) and configures back to the same features."""
    space = load_space(ROOT / "experiments" / "search-distribution.yaml")
    base = space.base_values()
    assert base["features"] == "garch" and base["head"] == "garch_scaled"
    assert all(d.contains(base[d.name]) for d in space.dimensions)
    assert space.config(base).features == space.base.features


def test_both_engines_draw_values_inside_the_same_space():
    space = load_space(DEFAULT)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    hp = kt.HyperParameters()
    for _ in range(20):
        trial = study.ask()
        values = {d.name: d.optuna(trial) for d in space.dimensions}
        study.tell(trial, 0.0)
        assert all(d.contains(values[d.name]) for d in space.dimensions)
        space.config(values)  # a valid RunConfig
    kt_values = {d.name: d.keras_tuner(hp) for d in space.dimensions}
    assert all(d.contains(kt_values[d.name]) for d in space.dimensions)
    assert set(hp.values) == {d.name for d in space.dimensions}


def test_digest_changes_with_the_space_not_with_the_coin(tmp_path):
    a = load_space(DEFAULT, coin="BTC")
    b = load_space(DEFAULT, coin="ETH")
    c = load_space(_space(tmp_path, "space:\n  layers: {type: int, low: 1, high: 2}\n"))
    assert a.digest() == b.digest() != c.digest()
