import pytest

from cryptolstm.config import FIELD_NAMES, RunConfig, load_config, read_experiment
from cryptolstm.errors import ConfigError
from tests.conftest import ROOT

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"coin": "DOGE"}, "coin must be one of BTC, ETH; got 'DOGE'"),
        ({"protocol": "magic"}, "protocol must be one of honest, seed"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
        ({"dropout": -0.1}, "dropout must be in [0, 1)"),
        ({"neurons": 0}, "neurons must be an integer >= 1, got 0"),
        ({"layers": -2}, "layers must be an integer >= 1"),
        ({"window_len": 1}, "window_len must be an integer >= 2"),
        ({"batch_size": "ten"}, "batch_size must be an integer, got 'ten'"),
        ({"neurons": 3.5}, "neurons must be an integer"),
        ({"activation": "banana"}, "activation must be one of tanh"),
        ({"merge_date": "2016-13-01"}, "merge_date 2016-13-01 is not a day of the calendar (there is no month 13"),
        ({"merge_date": "2016-1-01"}, "merge_date must be a date written YYYY-MM-DD"),
        ({"end_date": "2015-01-01"}, "end_date (2015-01-01) must be after merge_date"),
        ({"train_frac": 0.9, "val_frac": 0.2}, "train_frac + val_frac <= 1"),
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"fill_gaps": "maybe"}, "fill_gaps must be true or false"),
    ],
)
def test_invalid_values_fail_with_one_sentence_naming_the_parameter(changes, words):
    with pytest.raises(ConfigError) as info:
        RunConfig(**changes)
    message = str(info.value)
    assert words in message
    assert "\n" not in message and message.endswith(".")


def test_cli_strings_are_coerced_and_coin_is_case_insensitive():
    cfg = RunConfig(coin="eth", neurons="16", dropout="0.5", shuffle="true", end_date="2020-01-01")
    assert (cfg.coin, cfg.neurons, cfg.dropout, cfg.shuffle) == ("ETH", 16, 0.5, True)


def test_seed_protocol_needs_no_test_split():
    cfg = RunConfig(protocol="seed", train_frac=0.8, val_frac=0.2)
    assert cfg.protocol == "seed"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_file_builds_a_valid_config_or_space(path):
    if path.name.startswith("search-"):
        from cryptolstm.search.space import load_space

        cfg = load_space(path).base
    else:
        cfg = load_config(path)
    assert cfg.to_dict().keys() == set(FIELD_NAMES)


def test_seed_2018_holds_the_notebook_values():
    cfg = load_config(ROOT / "experiments" / "seed-2018.yaml")
    expected = dict(
        protocol="seed", merge_date="2016-01-01", window_len=7, train_frac=0.8, layers=3, neurons=512,
        dropout=0.25, activation="tanh", output_activation="tanh", loss="mse", optimizer="adam",
        batch_size=128, epochs=53, shuffle=False, seed=202, recurrent_activation="hard_sigmoid_keras2",
    )
    assert {k: getattr(cfg, k) for k in expected} == expected
    blog = load_config(ROOT / "experiments" / "seed-blog.yaml")
    assert blog.batch_size == 12 and blog.replace(batch_size=128) == cfg


def test_overrides_beat_the_experiment_file_and_none_means_unset():
    path = ROOT / "experiments" / "seed-blog.yaml"
    cfg = load_config(path, batch_size=None, neurons="64", coin="ETH")
    assert (cfg.batch_size, cfg.neurons, cfg.coin) == (12, 64, "ETH")


def test_unknown_keys_in_an_experiment_file_are_named(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("neurons: 8\nnuerons: 9\n")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) nuerons"):
        read_experiment(path)


def test_missing_and_malformed_experiment_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("neurons: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listy)
