"""The declared input features: no feature looks past its own day, garch_vol is fitted on training
days only, each feature's values by hand, each window normalised as its feature says (the 2018
windows for the default close,volume), and one sentence for every bad list, config or frame."""

import math

import numpy as np
import pandas as pd
import pytest

from cryptolstm import features
from cryptolstm.config import COINS, RunConfig, load_config
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.garch import fit_garch
from cryptolstm.splits import Period
from cryptolstm.windowing import inputs, samples
from tests.conftest import synthetic_frame

TRAIN = 150  # rows garch_vol is fitted on in the look-ahead tests (it needs 101 closes)
LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    """260 synthetic days of both coins' open, high, low, close and volume."""
    return synthetic_frame(260, seed=5)


def every_day(frame: pd.DataFrame) -> Period:
    return Period("all", frame.index[0], frame.index[-1])


def _changed_from(frame: pd.DataFrame, day: int) -> pd.DataFrame:
    """A copy with every price and volume of both coins changed from row ``day`` on, each cell by
    its own factor in [0.5, 2)."""
    changed = frame.copy()
    factors = np.random.default_rng(day).uniform(0.5, 2.0, (len(frame) - day, frame.shape[1]))
    changed.iloc[day:] = changed.iloc[day:].to_numpy() * factors
    return changed


def tiny() -> pd.DataFrame:
    """Six hand-made days (2020-01-01, a Wednesday, to 2020-01-06) of both coins."""
    btc = {"open": [100, 100, 110, 121, 110, 99], "high": [105, 112, 125, 130, 115, 135],
           "low": [95, 98, 108, 105, 97, 98], "close": [100, 110, 121, 110, 99, 132],
           "volume": [10, 20, 5, 40, 30, 60]}
    eth = {"open": [50, 50, 40, 60, 45, 55], "high": [52, 51, 62, 61, 56, 57], "low": [48, 39, 39, 44, 44, 50],
           "close": [50, 40, 60, 45, 55, 56], "volume": [1, 2, 4, 8, 16, 32]}
    columns = {f"{coin}_{field}": np.asarray(values, dtype=np.float64)
               for coin, fields in (("BTC", btc), ("ETH", eth)) for field, values in fields.items()}
    return pd.DataFrame(columns, index=pd.date_range("2020-01-01", periods=6, freq="D", name="date"))


# --- no look-ahead -------------------------------------------------------------------------

@pytest.mark.parametrize("day", [120, 200])
@pytest.mark.parametrize("name", features.NAMES)
def test_no_feature_looks_past_its_own_day(prices, name, day):
    state = features.fit((name,), prices.iloc[:TRAIN], COINS)  # garch_vol's fitted state, held fixed
    before = features.values((name,), prices, COINS, state)
    changed = _changed_from(prices, day)
    after = features.values((name,), changed, COINS, state)
    assert before.shape == (260, 2 if features.FEATURES[name].per_coin else 1)
    assert after[:day].tobytes() == before[:day].tobytes()  # bit for bit
    # Not vacuous: the feature has values before the change (from its warm-up on)...
    lead = features.warmup((name,))
    assert np.isnan(before[:lead]).all() and np.isfinite(before[lead:]).all()
    # ...and a feature of prices or volumes moves with them from the day of the change on.
    if features.FEATURES[name].fields:
        assert not np.allclose(after[day:], before[day:])
    else:
        assert after.tobytes() == before.tobytes()


def test_no_input_window_looks_past_its_origin(prices):
    cfg = RunConfig(features=",".join(features.NAMES), window_len=5)
    state = features.fit(cfg.feature_names, prices.iloc[:TRAIN], COINS)
    made = samples(prices, cfg, every_day(prices))
    assert made.origins[0] == prices.index[features.GARCH_WARMUP + 4]  # after garch_vol's warm-up
    changed = _changed_from(prices, 200)
    before, after = inputs(prices, cfg, state, made), inputs(changed, cfg, state, made)
    assert before.shape == (len(made), 5, len(features.columns(cfg.feature_names, COINS)))
    earlier = made.origins < prices.index[200]
    assert after[earlier].tobytes() == before[earlier].tobytes()
    assert not np.allclose(after[~earlier], before[~earlier])


# --- garch_vol: fitted on training days only -----------------------------------------------

def test_garch_vol_is_fitted_on_the_training_days_only(prices):
    train = prices.iloc[:TRAIN]
    state = features.fit(("close", "garch_vol"), train, COINS)
    assert set(state) == {"BTC_garch_vol", "ETH_garch_vol"}  # nothing else has parameters
    params, named = fit_garch(train["BTC_close"])
    assert state["BTC_garch_vol"] == {"params": params.tolist(), **named}
    assert set(named) == {"mu", "omega", "alpha", "beta", "nu"}
    # Prices after the training period change nothing the features fitted...
    changed = _changed_from(prices, TRAIN)
    assert features.fit(("garch_vol",), changed.loc[: train.index[-1]], COINS) == state
    # ...where fitting on more days would (so the comparison above can fail).
    assert features.fit(("garch_vol",), prices, COINS) != state
    # Unfitted, it is one sentence.
    with pytest.raises(DataError, match=r"^garch_vol has not been fitted on training days; fit the features first\.$"):
        features.values(("garch_vol",), prices, COINS)


def test_garch_vol_is_the_garch_recursion_one_day_ahead(prices):
    state = features.fit(("garch_vol",), prices.iloc[:TRAIN], COINS)
    vol = features.values(("garch_vol",), prices, COINS, state)[:, 0]  # BTC
    p = state["BTC_garch_vol"]
    y = 100.0 * np.diff(np.log(prices["BTC_close"].to_numpy()))  # y[j]: day j + 1's percent log return
    eps = y - p["mu"]
    w = 0.94 ** np.arange(75)
    backcast = np.sum(w / w.sum() * eps[:75] ** 2)  # arch's backcast
    variance = np.empty(len(y) + 1)  # variance[d]: of day d + 1's return, known on day d
    variance[0] = p["omega"] + (p["alpha"] + p["beta"]) * backcast
    for d in range(1, len(y) + 1):
        variance[d] = p["omega"] + p["alpha"] * eps[d - 1] ** 2 + p["beta"] * variance[d - 1]
    np.testing.assert_allclose(vol[100:], np.sqrt(variance[100:]) / 100.0, rtol=1e-9)
    assert 0.005 < np.median(vol[100:]) < 0.06  # a daily volatility, as a fraction


# --- values by hand ------------------------------------------------------------------------

def test_every_feature_by_hand_on_six_days():
    frame = tiny()

    def value(name, coin="BTC"):
        index = 0 if coin == "BTC" or not features.FEATURES[name].per_coin else 1
        return features.values((name,), frame, COINS)[:, index]

    c, v = frame["BTC_close"].to_numpy(), frame["BTC_volume"].to_numpy()
    np.testing.assert_array_equal(value("close"), c)
    np.testing.assert_array_equal(value("volume", "ETH"), [1, 2, 4, 8, 16, 32])
    lr = [math.log(110 / 100), math.log(121 / 110), math.log(110 / 121), math.log(99 / 110), math.log(132 / 99)]
    np.testing.assert_allclose(value("log_return")[1:], lr, rtol=1e-12)
    np.testing.assert_allclose(value("abs_return")[1:], np.abs(lr), rtol=1e-12)
    assert np.isnan(value("log_return")[0]) and np.isnan(value("volume_change")[0])
    np.testing.assert_allclose(value("parkinson")[0], abs(math.log(105 / 95)) / (2 * math.sqrt(LN2)), rtol=1e-12)
    np.testing.assert_allclose(value("parkinson", "ETH")[1], math.log(51 / 39) / (2 * math.sqrt(LN2)), rtol=1e-12)
    gk = math.sqrt(0.5 * math.log(112 / 98) ** 2 - (2 * LN2 - 1) * math.log(110 / 100) ** 2)
    np.testing.assert_allclose(value("garman_klass")[1], gk, rtol=1e-12)
    np.testing.assert_allclose(value("realized_vol_5")[5], math.sqrt(np.mean(np.square(lr))), rtol=1e-12)
    assert np.isnan(value("realized_vol_5")[:5]).all() and np.isnan(value("realized_vol_22")).all()
    np.testing.assert_allclose(value("log_volume"), np.log(v), rtol=1e-15)
    np.testing.assert_allclose(value("volume_change", "ETH")[1:], LN2, rtol=1e-12)  # ETH's volume doubles daily
    # Wednesday 1 January 2020 to Monday the 6th: 2/6, ..., Sunday 6/6, Monday 0.
    np.testing.assert_allclose(value("day_of_week"), [2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0, 0.0], rtol=1e-15)


def test_realized_volatility_over_22_days_by_hand(prices):
    lr = np.diff(np.log(prices["ETH_close"].to_numpy()))  # lr[j]: day j + 1's
    vol = features.values(("realized_vol_22",), prices, COINS)[:, 1]
    for day in (22, 100, 259):
        assert vol[day] == pytest.approx(math.sqrt(np.mean(lr[day - 22 : day] ** 2)), rel=1e-12)
    assert np.isnan(vol[21])


def test_the_default_features_give_exactly_the_2018_windows():
    frame = tiny()
    cfg = RunConfig(window_len=3)
    assert cfg.feature_names == ("close", "volume") == features.DEFAULT
    made = samples(frame, cfg, every_day(frame))
    X = inputs(frame, cfg, None, made)
    # Columns BTC_close, BTC_volume, ETH_close, ETH_volume; each window divided by its first row, minus 1.
    expected = [
        [[0, 0, 0, 0], [0.1, 1.0, -0.2, 1.0], [0.21, -0.5, 0.2, 3.0]],                  # days 0..2
        [[0, 0, 0, 0], [0.1, -0.75, 0.5, 1.0], [0.0, 1.0, 0.125, 3.0]],                 # days 1..3
        [[0, 0, 0, 0], [-1 / 11, 7.0, -0.25, 1.0], [-2 / 11, 5.0, -1 / 12, 3.0]],       # days 2..4
    ]
    assert X.shape == (3, 3, 4) and X.dtype == np.float32
    np.testing.assert_allclose(X, expected, rtol=1e-6, atol=1e-7)
    raw = frame[["BTC_close", "BTC_volume", "ETH_close", "ETH_volume"]].to_numpy()
    for k in range(3):
        np.testing.assert_array_equal(X[k], (raw[k : k + 3] / raw[k] - 1).astype(np.float32))
    np.testing.assert_allclose(made.y[:, 0], [110 / 121 - 1, 99 / 110 - 1, 132 / 99 - 1], rtol=1e-6)


def test_log_volume_is_normalised_by_difference_and_returns_are_left_as_they_are():
    frame = tiny()
    cfg = RunConfig(window_len=3, features="close,log_return,log_volume,day_of_week")
    assert features.columns(cfg.feature_names, COINS) == [
        "BTC_close", "BTC_log_return", "BTC_log_volume", "ETH_close", "ETH_log_return", "ETH_log_volume", "day_of_week"]
    made = samples(frame, cfg, every_day(frame))  # log_return's warm-up: the first window is days 1..3
    assert made.origins[0] == frame.index[3]
    first = inputs(frame, cfg, None, made)[0]
    np.testing.assert_allclose(first[:, 0], [0.0, 0.1, 0.0], atol=1e-7)  # ratio
    np.testing.assert_allclose(first[:, 1], [math.log(1.1), math.log(1.1), math.log(110 / 121)], rtol=1e-6)  # none
    np.testing.assert_allclose(first[:, 2], [0.0, math.log(5 / 20), math.log(40 / 20)], rtol=1e-6)  # difference
    np.testing.assert_allclose(first[:, 3], [0.0, 0.5, 0.125], atol=1e-7)
    np.testing.assert_allclose(first[:, 4], [math.log(0.8), math.log(1.5), math.log(0.75)], rtol=1e-6)
    np.testing.assert_allclose(first[:, 5], [0.0, LN2, 2 * LN2], rtol=1e-6)
    np.testing.assert_allclose(first[:, 6], [3 / 6, 4 / 6, 5 / 6], rtol=1e-6)  # Thursday..Saturday
    assert [features.FEATURES[n].normalise for n in ("close", "volume", "log_volume", "log_return")] == [
        "ratio", "ratio", "difference", "none"]


def test_every_feature_reads_only_the_columns_it_declares(prices):
    for name in features.NAMES:
        state = features.fit((name,), prices.iloc[:TRAIN], COINS)
        only = prices[features.required((name,), COINS, "BTC")]
        np.testing.assert_array_equal(features.values((name,), only, COINS, state),
                                      features.values((name,), prices, COINS, state), err_msg=name)


# --- the lists, the columns, the config ------------------------------------------------------

def test_required_lists_the_raw_columns_and_the_targets_close():
    assert features.required(features.DEFAULT, COINS, "BTC") == ["BTC_close", "BTC_volume", "ETH_close", "ETH_volume"]
    assert features.required(("parkinson",), COINS, "ETH") == ["BTC_high", "BTC_low", "ETH_high", "ETH_low",
                                                               "ETH_close"]
    assert features.required(("garman_klass",), COINS, "BTC") == [
        "BTC_open", "BTC_high", "BTC_low", "BTC_close", "ETH_open", "ETH_high", "ETH_low", "ETH_close"]
    assert features.required(("day_of_week",), COINS, "ETH") == ["ETH_close"]
    assert features.required(("log_volume", "log_return"), COINS, "BTC") == [
        "BTC_close", "BTC_volume", "ETH_close", "ETH_volume"]


def test_columns_are_coin_major_then_the_coin_free_ones_and_warmup_is_the_longest():
    assert features.columns(("close", "day_of_week", "volume"), COINS) == [
        "BTC_close", "BTC_volume", "ETH_close", "ETH_volume", "day_of_week"]
    assert features.columns(("parkinson",), ("ETH",)) == ["ETH_parkinson"]
    assert features.warmup(features.DEFAULT) == 0 and features.warmup(("close", "realized_vol_22")) == 22
    assert features.warmup(("log_return", "garch_vol")) == features.GARCH_WARMUP == 100
    assert features.column("ETH", "high") == "ETH_high"


def test_parse_keeps_the_order_and_strips_spaces():
    assert features.parse(" log_return , parkinson ") == ("log_return", "parkinson")
    assert features.parse(["volume", "close"]) == ("volume", "close")
    assert features.parse("close,volume,") == features.DEFAULT


def _one_sentence(text: str) -> None:
    assert "\n" not in text and text.endswith(".") and text.count(". ") == 0, text


@pytest.mark.parametrize("names, start", [
    ("banana", "unknown feature 'banana'; features are close, volume, log_return, abs_return, parkinson"),
    (["close", "banana", "volume"], "unknown feature 'banana'; features are "),
    ("", "features must name at least one of close, volume, "),
    ([], "features must name at least one of "),
    (" , ", "features must name at least one of "),
    ("close,volume,close", "features name 'close' twice."),
])
def test_parse_refuses_an_unknown_an_empty_or_a_repeated_feature_in_one_sentence(names, start):
    for make in (lambda: features.parse(names), lambda: RunConfig(features=names)):
        with pytest.raises(ConfigError) as caught:
            make()
        assert str(caught.value).startswith(start), str(caught.value)
        _one_sentence(str(caught.value))
    if start.startswith("unknown"):
        assert ", ".join(features.NAMES) in str(caught.value)  # every feature there is is named


def test_a_config_lists_its_features_validated(tmp_path):
    cfg = RunConfig(features=["log_return", "parkinson"])
    assert cfg.features == "log_return,parkinson" and cfg.feature_names == ("log_return", "parkinson")
    assert RunConfig(features=" close , volume ").features == "close,volume" == RunConfig().features
    (tmp_path / "e.yaml").write_text("features: [log_return, garch_vol]\nhead: garch_scaled\n")
    assert load_config(tmp_path / "e.yaml").feature_names == ("log_return", "garch_vol")


def test_a_head_that_needs_a_feature_the_config_lacks_is_one_sentence():
    with pytest.raises(ConfigError) as caught:
        RunConfig(head="garch_scaled")
    assert str(caught.value) == ("head garch_scaled scales its forecast by the garch_vol feature, which the features "
                                 "(close,volume) lack; add it: --features close,volume,garch_vol.")
    assert RunConfig(head="garch_scaled", features="close,volume,garch_vol").head == "garch_scaled"


@pytest.mark.parametrize("text, words", [
    ("ensemble: 0\n", "ensemble must be an integer >= 1, got 0."),
    ("ensemble: two\n", "ensemble must be an integer, got 'two'."),
    ("features: [close, banana]\n", "unknown feature 'banana'; features are "),
])
def test_bad_input_in_an_experiment_file_is_one_sentence(tmp_path, text, words):
    (tmp_path / "e.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "e.yaml")
    assert str(caught.value).startswith(words)
    _one_sentence(str(caught.value))


@pytest.mark.parametrize("text", ["features:\n", "ensemble:\n"])
def test_an_empty_value_in_an_experiment_file_is_one_sentence(tmp_path, text):
    (tmp_path / "e.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"gives no value for (features|ensemble); give one or delete the line"):
        load_config(tmp_path / "e.yaml")


# --- a frame without the columns a feature reads ---------------------------------------------

def test_a_served_model_refuses_rows_without_a_features_columns_in_one_sentence(prices):
    from cryptolstm.rows import prepare_rows
    from cryptolstm.windowing import market_rows

    cfg = RunConfig(features="close,parkinson", window_len=5)
    rows = market_rows(prices).drop(columns=["BTC_high"])
    with pytest.raises(DataError) as caught:
        prepare_rows(rows, cfg)
    assert str(caught.value) == ("the input lacks column(s) BTC_high; it needs date, BTC_high, BTC_low, BTC_close, "
                                 "ETH_high, ETH_low, ETH_close.")


def test_a_frame_without_a_features_columns_is_one_sentence(prices):
    cfg = RunConfig(features="close,parkinson", window_len=5)
    frame = prices.drop(columns=["BTC_high"])
    made = samples(frame, cfg, every_day(frame))  # the target needs only the closes
    with pytest.raises(DataError, match=r"parkinson.*BTC_high"):
        inputs(frame, cfg, None, made)
