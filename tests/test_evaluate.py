import numpy as np
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.evaluate import score, split_metrics
from cryptolstm.models.baselines import Persistence
from cryptolstm.splits import honest_split, seed_split
from tests.conftest import synthetic_frame


def test_persistence_mae_in_usd_is_the_mean_absolute_daily_change():
    frame = synthetic_frame(80, seed=2)
    test = honest_split(frame, RunConfig(window_len=5)).test
    close = frame["BTC_close"]
    days = close.index.get_indexer(test.dates)
    expected = np.mean(np.abs(close.to_numpy()[days] - close.to_numpy()[days - 1]))
    m = score(test, np.zeros(len(test)), "usd")
    assert m["persistence_mae"] == pytest.approx(expected)
    # Predicting a zero return *is* persistence here.
    assert m["mae"] == pytest.approx(expected) and m["mae_ratio"] == pytest.approx(1.0)


def test_seed_persistence_in_normalised_units():
    frame = synthetic_frame(80, seed=2)
    val = seed_split(frame, RunConfig(protocol="seed", train_frac=0.8)).val
    close = frame["BTC_close"].to_numpy()[64:]
    w = 7
    expected = np.mean(np.abs(close[w - 1 : -1] / close[:-w] - close[w:] / close[:-w]))
    m = score(val, Persistence().predict(val), "return")
    assert m["mae"] == pytest.approx(expected, rel=1e-6) and m["mae_ratio"] == pytest.approx(1.0, rel=1e-6)


def test_metrics_by_hand_on_three_days():
    frame = synthetic_frame(12, seed=9)
    s = honest_split(frame, RunConfig(window_len=3, train_frac=0.5, val_frac=0.2)).test.take(slice(0, 3))
    pred = np.array([0.01, -0.02, 0.0])
    m = score(s, pred, "usd")
    forecast = s.ref_close * (1 + pred)
    err = forecast - s.target_close
    assert m["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert m["mape"] == pytest.approx(100 * np.mean(np.abs(err) / s.target_close))
    up = s.target_close > s.ref_close
    expected_dir = np.mean(np.sign(pred) == np.where(up, 1, -1))
    assert m["direction_accuracy"] == pytest.approx(expected_dir)


def test_split_metric_names_follow_the_protocol_units():
    frame = synthetic_frame(80)
    honest = honest_split(frame, RunConfig()).val
    names = split_metrics("val", honest, np.zeros(len(honest)), "honest")
    assert {"val/mae", "val/rmse", "val/mape", "val/persistence_mae", "val/persistence_rmse", "val/mae_ratio",
            "val/direction_accuracy", "val/mae_return"} <= names.keys()
    seed = seed_split(frame, RunConfig(protocol="seed", train_frac=0.8)).val
    names = split_metrics("val", seed, np.zeros(len(seed)), "seed")
    assert {"val/mae", "val/persistence_mae", "val/mae_usd"} <= names.keys()
    assert names["val/mae"] < 1.0 < names["val/mae_usd"]  # returns vs dollars
