"""Samples and their input windows: the seed protocol equals the 2018 notebook's create_inputs /
create_outputs, the honest targets are relative to the last close, forecasts of the days after the
data, the rows a model reads, and one sentence for each way the data can fall short."""

import numpy as np
import pandas as pd
import pytest

from cryptolstm import features
from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import DataError
from cryptolstm.splits import Period
from cryptolstm.windowing import (Samples, forecast_samples, input_rows, inputs, market_rows, min_rows,
                                  protocol_samples, samples)
from tests.conftest import synthetic_frame


def every_day(frame: pd.DataFrame, inputs_from=None) -> Period:
    """A period of every day of ``frame``."""
    return Period("all", frame.index[0], frame.index[-1], inputs_from)


def notebook_inputs_outputs(data: pd.DataFrame, coin: str, window_len: int):
    """The 2018 notebook's create_inputs / create_outputs, restated with pandas as an oracle."""
    cols = ["BTC_close", "BTC_volume", "ETH_close", "ETH_volume"]
    data = data[cols]
    inputs = []
    for i in range(len(data) - window_len):
        window = data[i : i + window_len].copy()
        for col in cols:
            window.loc[:, col] = window.loc[:, col] / window.loc[:, col].iloc[0] - 1
        inputs.append(np.array(window))
    outputs = data[f"{coin}_close"][window_len:].values / data[f"{coin}_close"][:-window_len].values - 1
    return np.array(inputs), outputs


@pytest.mark.parametrize("coin", COINS)
def test_seed_windows_equal_the_notebooks(coin):
    frame = synthetic_frame(50, seed=3)
    cfg = RunConfig(protocol="seed", window_len=7, coin=coin)
    X_ref, y_ref = notebook_inputs_outputs(frame, coin, 7)
    s = samples(frame, cfg, every_day(frame, frame.index[0]))
    X = inputs(frame, cfg, None, s)
    assert X.shape == (43, 7, 4) == X_ref.shape and X.dtype == np.float32 and s.y.shape == (43, 1)
    np.testing.assert_array_equal(X, X_ref.astype(np.float32))
    np.testing.assert_array_equal(s.y[:, 0], y_ref.astype(np.float32))


def test_seed_split_equals_the_notebooks_split_then_window():
    frame = synthetic_frame(101, seed=4)
    cfg = RunConfig(protocol="seed", train_frac=0.8, window_len=7, coin="ETH")
    periods, made = protocol_samples(frame, cfg)
    cut = int(0.8 * 101)
    assert set(made) == {"train", "val"}  # the notebook's validation block is also its test set: no other
    for block, s in ((frame[:cut], made["train"]), (frame[cut:], made["val"])):
        X_ref, y_ref = notebook_inputs_outputs(block, "ETH", 7)
        np.testing.assert_array_equal(inputs(frame, cfg, None, s), X_ref.astype(np.float32))
        np.testing.assert_array_equal(s.y[:, 0], y_ref.astype(np.float32))
    assert len(made["train"]) == cut - 7 and len(made["val"]) == 101 - cut - 7


def test_seed_target_and_persistence_values():
    frame = synthetic_frame(20, seed=5)
    close = frame["BTC_close"].to_numpy()
    cfg = RunConfig(protocol="seed", window_len=5)
    s = samples(frame, cfg, every_day(frame))
    i = 3  # window days 3..7, target day 8
    assert s.y[i, 0] == pytest.approx(close[i + 5] / close[i] - 1, rel=1e-6)
    assert s.ref_close[i] == close[i] and s.persistence[i] == pytest.approx(close[i + 4] / close[i] - 1)
    assert s.target_close[i, 0] == close[i + 5] and s.last_close()[i] == pytest.approx(close[i + 4])
    assert s.dates[i] == frame.index[i + 5] and s.origins[i] == frame.index[i + 4]
    # The persistence return is also the last input row's normalised close.
    np.testing.assert_allclose(inputs(frame, cfg, None, s)[:, -1, 0], s.persistence, rtol=1e-5)


def test_next_day_target_is_relative_to_the_last_close():
    frame = synthetic_frame(30, seed=6)
    close = frame["ETH_close"].to_numpy()
    cfg = RunConfig(window_len=7, coin="ETH")
    s = samples(frame, cfg, every_day(frame))
    X = inputs(frame, cfg, None, s)
    assert X.shape == (23, 7, 4) and len(s) == 23 and s.horizon == 1
    k = 10  # window covers days 10..16 and targets day 17
    assert s.y[k, 0] == pytest.approx(close[17] / close[16] - 1, rel=1e-6)
    assert s.ref_close[k] == close[16] and s.target_close[k, 0] == close[17] and s.actual()[k] == close[17]
    assert np.all(s.persistence == 0) and s.dates[k] == frame.index[17]
    raw = frame[features.columns(features.DEFAULT, COINS)].to_numpy()[10:17]
    np.testing.assert_array_equal(X[k], (raw / raw[0] - 1).astype(np.float32))


def test_samples_of_several_days_and_take():
    frame = synthetic_frame(12, seed=3)
    close = frame["BTC_close"].to_numpy()
    s = samples(frame, RunConfig(window_len=4, horizon=3), every_day(frame))
    assert s.y.shape == (12 - 4 - 3 + 1, 3) == s.target_close.shape and s.horizon == 3
    # Sample 2: window days 2..5, origin day 5, targets days 6, 7, 8.
    np.testing.assert_array_equal(s.target_close[2], close[6:9])
    np.testing.assert_allclose(s.y[2], close[6:9] / close[5] - 1, rtol=1e-6)
    np.testing.assert_array_equal(s.actual(3), close[6:12])  # origins 3..8
    part = s.take(np.array([4, 1]))
    assert isinstance(part, Samples) and list(part.dates) == [s.dates[4], s.dates[1]]
    np.testing.assert_array_equal(part.y, s.y[[4, 1]])


def test_windows_start_at_zero_and_are_finite():
    frame = synthetic_frame(40)
    cfg = RunConfig(window_len=5)
    X = inputs(frame, cfg, None, samples(frame, cfg, every_day(frame)))
    assert X.shape == (35, 5, 4) and np.all(X[:, 0, :] == 0) and np.all(np.isfinite(X))
    assert np.all(X[:, 1:, :] != 0)


def test_windows_start_after_the_features_warm_up():
    frame = synthetic_frame(40)
    cfg = RunConfig(window_len=5, features="close,realized_vol_5")
    s = samples(frame, cfg, every_day(frame))
    # realized_vol_5's first value is on day 5: the first window covers days 5..9.
    assert s.origins[0] == frame.index[9] and len(s) == 40 - 5 - 5 and min_rows(cfg) == 10
    X = inputs(frame, cfg, None, s)
    assert X.shape == (30, 5, 4) and np.all(np.isfinite(X))
    # The same samples with a plain config do not wait for the warm-up, and their first window has no
    # realized volatility yet.
    plain = samples(frame, cfg.replace(features="close"), every_day(frame))
    assert len(plain) == 35
    with pytest.raises(DataError, match=r"^an input window reaches a day before its features' first value; "
                                        r"start the data earlier\.$"):
        inputs(frame, cfg, None, plain)


def test_a_window_outside_the_given_rows_is_one_sentence():
    frame = synthetic_frame(40)
    cfg = RunConfig(window_len=7)
    s = samples(frame, cfg, every_day(frame))
    with pytest.raises(DataError, match=r"^a sample's input window is not in the data it was given\.$"):
        inputs(frame.iloc[3:], cfg, None, s)
    assert inputs(frame.iloc[3:], cfg, None, s.take(slice(3, None))).shape == (30, 7, 4)
    assert inputs(frame, cfg, None, s.take(slice(0, 0))).shape == (0, 7, 4)


def test_forecasts_of_the_days_after_the_data():
    frame = synthetic_frame(20, seed=2)
    close = frame["BTC_close"].to_numpy()
    cfg = RunConfig(window_len=5, horizon=2)
    last = forecast_samples(frame, cfg)
    assert len(last) == 1 and last.origins[0] == frame.index[-1] and last.ref_close[0] == close[-1]
    assert np.all(np.isnan(last.target_close)) and np.all(np.isnan(last.y))
    assert last.dates[0] == frame.index[-1] + pd.Timedelta(days=1)
    every = forecast_samples(frame, cfg, every_day=True)
    assert len(every) == 16 and every.origins[0] == frame.index[4]
    np.testing.assert_array_equal(every.target_close[0], close[5:7])
    np.testing.assert_array_equal(every.target_close[-2], [close[19], np.nan])
    assert inputs(frame, cfg, None, every).shape == (16, 5, 4)
    assert len(forecast_samples(frame.iloc[:5], cfg)) == 1  # a window's rows are enough
    with pytest.raises(DataError, match=r"^the input has 4 row\(s\); this model needs at least 5 consecutive "
                                        r"daily rows\.$"):
        forecast_samples(frame.iloc[:4], cfg)


def test_too_few_days_give_no_samples():
    frame = synthetic_frame(7)
    s = samples(frame, RunConfig(window_len=7), every_day(frame))  # a window but no target day after it
    assert len(s) == 0 and s.y.shape == (0, 1) and s.dates.shape == (0,)
    assert len(samples(synthetic_frame(8), RunConfig(window_len=7), every_day(synthetic_frame(8)))) == 1


def test_zero_base_raises_instead_of_dividing_by_zero():
    windows = np.ones((2, 3, 4))
    windows[1, 0, 1] = 0.0
    with pytest.raises(DataError, match=r"^a window starts on a day with a zero price or volume; "
                                        r"it cannot be normalised\.$"):
        features.normalise(windows, features.DEFAULT, COINS)


def test_the_rows_a_model_reads():
    frame = synthetic_frame(3)
    rows = input_rows(frame)
    assert list(rows.columns) == ["date", "BTC_close", "BTC_volume", "ETH_close", "ETH_volume"]
    assert list(rows["date"]) == ["2020-01-01", "2020-01-02", "2020-01-03"]
    np.testing.assert_array_equal(rows["ETH_volume"], frame["ETH_volume"])
    ranged = input_rows(frame, RunConfig(coin="ETH", features="parkinson"))
    assert list(ranged.columns) == ["date", "BTC_high", "BTC_low", "ETH_high", "ETH_low", "ETH_close"]
    every = market_rows(frame)
    assert list(every.columns) == ["date"] + [f"{c}_{f}" for c in COINS for f in features.FIELDS]
    assert list(market_rows(frame.drop(columns=["ETH_open"])).columns).count("ETH_open") == 0
