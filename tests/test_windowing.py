import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.errors import DataError
from cryptolstm.splits import seed_split
from cryptolstm.windowing import feature_columns, next_day_windows, normalise, seed_windows
from tests.conftest import synthetic_frame

COINS = ("BTC", "ETH")


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
    X_ref, y_ref = notebook_inputs_outputs(frame, coin, 7)
    samples = seed_windows(frame, coin, COINS, 7)
    assert samples.X.shape == (43, 7, 4) == X_ref.shape
    np.testing.assert_array_equal(samples.X, X_ref.astype(np.float32))
    np.testing.assert_array_equal(samples.y[:, 0], y_ref.astype(np.float32))


def test_seed_split_equals_the_notebooks_split_then_window():
    frame = synthetic_frame(101, seed=4)
    cfg = RunConfig(protocol="seed", train_frac=0.8, window_len=7, coin="ETH")
    splits = seed_split(frame, cfg)
    cut = int(0.8 * 101)
    for block, samples in ((frame[:cut], splits.train), (frame[cut:], splits.val)):
        X_ref, y_ref = notebook_inputs_outputs(block, "ETH", 7)
        np.testing.assert_array_equal(samples.X, X_ref.astype(np.float32))
        np.testing.assert_array_equal(samples.y[:, 0], y_ref.astype(np.float32))
    assert splits.test is None
    assert len(splits.train) == cut - 7 and len(splits.val) == 101 - cut - 7


def test_seed_target_and_persistence_values():
    frame = synthetic_frame(20, seed=5)
    close = frame["BTC_close"].to_numpy()
    s = seed_windows(frame, "BTC", COINS, 5)
    i = 3
    assert s.y[i] == pytest.approx(close[i + 5] / close[i] - 1, rel=1e-6)
    assert s.persistence[i] == pytest.approx(close[i + 4] / close[i] - 1)
    assert s.target_close[i] == close[i + 5] and s.last_close()[i] == pytest.approx(close[i + 4])
    assert s.dates[i] == frame.index[i + 5]
    # The persistence return is also the last input row's normalised close.
    np.testing.assert_allclose(s.X[:, -1, 0], s.persistence, rtol=1e-5)


def test_next_day_target_is_relative_to_the_last_close():
    frame = synthetic_frame(30, seed=6)
    close = frame["ETH_close"].to_numpy()
    s = next_day_windows(frame, "ETH", COINS, 7)
    assert s.X.shape == (23, 7, 4)
    k = 10  # window covers days 10..16 and targets day 17
    assert s.y[k] == pytest.approx(close[17] / close[16] - 1, rel=1e-6)
    assert s.ref_close[k] == close[16] and s.target_close[k] == close[17]
    assert np.all(s.persistence == 0) and s.dates[k] == frame.index[17]
    raw = frame[feature_columns(COINS)].to_numpy()[10:17]
    np.testing.assert_allclose(s.X[k], (raw / raw[0] - 1).astype(np.float32))


def test_windows_start_at_zero_and_are_finite():
    s = next_day_windows(synthetic_frame(40), "BTC", COINS, 5)
    assert np.all(s.X[:, 0, :] == 0) and np.all(np.isfinite(s.X))


def test_zero_base_raises_instead_of_dividing_by_zero():
    windows = np.ones((2, 3, 4))
    windows[1, 0, 1] = 0.0
    with pytest.raises(DataError, match="cannot be normalised"):
        normalise(windows)


def test_too_few_days():
    with pytest.raises(DataError, match="at least 8 are needed"):
        next_day_windows(synthetic_frame(7), "BTC", COINS, 7)
