import numpy as np
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.forecast import Forecast
from cryptolstm.metrics import direction, score_forecast, split_metrics
from cryptolstm.models.baselines import Persistence
from cryptolstm.splits import honest_split, seed_split
from tests.conftest import synthetic_frame


def score(samples, pred_return, units):
    """The metrics of ``pred_return`` on ``samples`` in ``units``, without the units prefix."""
    scores = score_forecast(Forecast.of_samples(samples, pred_return), samples.actual())
    return {k.removeprefix(f"{units}/"): v for k, v in scores.items() if "/" not in k or k.startswith(units)}


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
    m = score(val, Persistence().predict(val).point(), "return")
    assert m["mae"] == pytest.approx(expected, rel=1e-6) and m["mae_ratio"] == pytest.approx(1.0, rel=1e-6)


def test_metrics_by_hand_on_three_days():
    frame = synthetic_frame(12, seed=9)
    s = honest_split(frame, RunConfig(window_len=3, train_frac=0.5, val_frac=0.2)).test.take(slice(0, 3))
    pred = np.array([0.01, -0.02, 0.0])
    m = score(s, pred, "usd")
    forecast = s.ref_close * (1 + pred)
    err = forecast - s.actual()
    assert m["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert m["mape"] == pytest.approx(100 * np.mean(np.abs(err) / s.actual()))
    up = s.actual() > s.ref_close
    moved = s.actual() != s.ref_close
    expected_dir = np.sum((np.sign(pred) == np.where(up, 1, -1)) & moved) / moved.sum()
    assert m["direction_accuracy"] == pytest.approx(expected_dir)


def test_direction_leaves_out_flat_days_and_counts_a_forecast_of_no_move_as_wrong():
    actual = np.array([1.0, -2.0, 0.0, 3.0, -1.0])
    forecast = np.array([0.5, -1.0, 2.0, 0.0, 1.0])  # right, right, (flat day), no move = wrong, wrong
    d = direction(actual, forecast)
    assert d["direction_accuracy"] == pytest.approx(2 / 4)
    assert d["direction_low"] < 0.5 < d["direction_high"] and 0 < d["direction_p"] <= 1
    assert np.isnan(direction(actual, np.zeros(5))["direction_accuracy"])  # persistence has no direction


def test_split_metric_names_follow_the_protocol_units():
    frame = synthetic_frame(80)
    honest = honest_split(frame, RunConfig()).val
    names = split_metrics("val", Forecast.of_samples(honest, np.zeros(len(honest))), honest.target_close, "usd")
    assert {"val/mae", "val/rmse", "val/mape", "val/persistence_mae", "val/persistence_rmse", "val/mae_ratio",
            "val/direction_accuracy", "val/direction_low", "val/direction_p", "val/dm_p", "val/mae_return"} <= names.keys()
    seed = seed_split(frame, RunConfig(protocol="seed", train_frac=0.8)).val
    names = split_metrics("val", Forecast.of_samples(seed, np.zeros(len(seed))), seed.target_close, "return")
    assert {"val/mae", "val/persistence_mae", "val/mae_usd"} <= names.keys()
    assert names["val/mae"] < 1.0 < names["val/mae_usd"]  # returns vs dollars
