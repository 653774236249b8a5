"""Point metrics beside persistence, in USD and in returns, worked by hand; the direction and
Diebold-Mariano tests; and the one scoring step naming them as a run logs them."""

import math

import numpy as np
import pytest
from scipy import stats

from cryptolstm.config import RunConfig
from cryptolstm.forecast import Forecast
from cryptolstm.forecasting import fresh, historical_forecasts
from cryptolstm.metrics import direction, dm_test, in_sample_scale, is_minimised, score_forecast
from cryptolstm.models.baselines import Drift, Persistence
from cryptolstm.scoring import scales_before, score
from cryptolstm.windowing import protocol_samples
from tests.conftest import synthetic_frame


def scored(samples, pred_return, units):
    """The metrics of ``pred_return`` on ``samples`` in ``units``, without the units prefix."""
    scores = score_forecast(Forecast.of_samples(samples, pred_return), samples.actual())
    return {k.removeprefix(f"{units}/"): v for k, v in scores.items() if "/" not in k or k.startswith(units)}


def test_persistence_mae_in_usd_is_the_mean_absolute_daily_change():
    frame = synthetic_frame(80, seed=2)
    test = protocol_samples(frame, RunConfig(window_len=5))[1]["test"]
    close = frame["BTC_close"]
    days = close.index.get_indexer(test.dates)
    expected = np.mean(np.abs(close.to_numpy()[days] - close.to_numpy()[days - 1]))
    m = scored(test, np.zeros(len(test)), "usd")
    assert len(test) == 80 - 68 and m["persistence_mae"] == pytest.approx(expected, rel=1e-12)
    # Predicting a zero return *is* persistence here.
    assert m["mae"] == pytest.approx(expected, rel=1e-12) and m["mae_ratio"] == pytest.approx(1.0)


def test_seed_persistence_in_normalised_units():
    frame = synthetic_frame(80, seed=2)
    val = protocol_samples(frame, RunConfig(protocol="seed", train_frac=0.8))[1]["val"]
    close = frame["BTC_close"].to_numpy()[64:]
    w = 7
    expected = np.mean(np.abs(close[w - 1 : -1] / close[:-w] - close[w:] / close[:-w]))
    m = scored(val, Persistence().predict(val).point(), "return")
    assert m["mae"] == pytest.approx(expected, rel=1e-6) and m["mae_ratio"] == pytest.approx(1.0, rel=1e-6)


def test_metrics_by_hand_on_three_days():
    frame = synthetic_frame(12, seed=9)
    s = protocol_samples(frame, RunConfig(window_len=3, train_frac=0.5, val_frac=0.2))[1]["test"].take(slice(0, 3))
    pred = np.array([0.01, -0.02, 0.0])
    m = scored(s, pred, "usd")
    forecast = s.ref_close * (1 + pred)
    err = forecast - s.actual()
    assert m["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert m["mape"] == pytest.approx(100 * np.mean(np.abs(err) / s.actual()))
    up = s.actual() > s.ref_close
    moved = s.actual() != s.ref_close
    expected_dir = np.sum((np.sign(pred) == np.where(up, 1, -1)) & moved) / moved.sum()
    assert m["direction_accuracy"] == pytest.approx(expected_dir)
    # In returns on the last close: the same errors divided by it.
    r = scored(s, pred, "return")
    assert r["mae"] == pytest.approx(np.mean(np.abs(err / s.ref_close))) and r["persistence_mae"] == pytest.approx(
        np.mean(np.abs(s.actual() / s.ref_close - 1)))


def test_direction_leaves_out_flat_days_and_counts_a_forecast_of_no_move_as_wrong():
    actual = np.array([1.0, -2.0, 0.0, 3.0, -1.0])
    forecast = np.array([0.5, -1.0, 2.0, 0.0, 1.0])  # right, right, (flat day), no move = wrong, wrong
    d = direction(actual, forecast)
    assert d["direction_accuracy"] == pytest.approx(2 / 4)
    assert d["direction_p"] == pytest.approx(1.0)  # 2 of 4 is a coin flip's most likely outcome
    # Wilson's 95 % interval for 2 of 4, by its formula.
    z, n, p = stats.norm.ppf(0.975), 4, 0.5
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (d["direction_low"], d["direction_high"]) == pytest.approx((centre - half, centre + half), rel=1e-9)
    assert np.isnan(direction(actual, np.zeros(5))["direction_accuracy"])  # persistence has no direction


def test_dm_test_by_hand():
    a, b = np.array([1.0, -2.0, 3.0, 4.0]), np.array([2.0, 2.0, -2.0, 2.0])
    # d = |a| - |b| = [-1, 0, 1, 2]: mean 0.5, gamma0 = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25; n = 4, h = 1:
    # 0.5 / sqrt(1.25 / 4) * sqrt((4 + 1 - 2) / 4) = sqrt(3 / 5)
    statistic, p, _ = dm_test(a, b)
    assert statistic == pytest.approx(math.sqrt(0.6), rel=1e-12)
    assert p == pytest.approx(2 * stats.t.sf(math.sqrt(0.6), df=3), rel=1e-12)
    assert dm_test(b, a)[0] == pytest.approx(-math.sqrt(0.6), rel=1e-12)  # the sign says which is better
    # Squared errors: d = [-3, 0, 5, 12], mean 3.5, gamma0 = (42.25 + 12.25 + 2.25 + 72.25) / 4 = 32.25
    assert dm_test(a, b, power=2)[0] == pytest.approx(3.5 / math.sqrt(32.25 / 4) * math.sqrt(0.75), rel=1e-12)
    assert all(math.isnan(v) for v in dm_test(a, a) + dm_test(a[:1], b[:1]))  # no difference; one day


def test_mase_divides_by_persistences_mae_on_the_training_closes():
    closes = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
    assert in_sample_scale(closes, "usd") == pytest.approx((10 + 11 + 0 + 9.9) / 4)
    assert in_sample_scale(closes, "return") == pytest.approx((0.1 + 0.1 + 0 + 0.1) / 4)


def test_a_runs_metrics_are_named_by_split_in_its_protocols_units():
    frame = synthetic_frame(120)
    cfg = RunConfig(window_len=5)
    periods, made = protocol_samples(frame, cfg)
    forecasts = historical_forecasts({"persistence": fresh(Persistence), "drift": fresh(Drift)}, frame, cfg,
                                     [periods["val"], periods["test"]])
    scales = {"val": scales_before(frame["BTC_close"], periods["val"].first)}
    scores = score(forecasts, "usd", scales=scales)
    named = scores.named("drift")
    assert {"val/mae", "val/rmse", "val/mape", "val/persistence_mae", "val/persistence_rmse", "val/mae_ratio",
            "val/direction_accuracy", "val/direction_low", "val/direction_p", "val/dm_p", "val/mae_return",
            "test/mae", "test/mae_ratio"} <= named.keys()
    assert not any("/h1/" in k for k in named)  # one horizon: no per-horizon names
    # The same numbers as scoring the forecast by hand: drift fitted on the closes before the val days.
    val = made["val"]
    mu = np.mean(np.diff(np.log(frame["BTC_close"].loc[: periods["val"].before].to_numpy())))
    by_hand = score_forecast(Forecast.of_closes(val, val.last_close() * math.exp(mu)), val.actual())
    for key in ("mae", "rmse", "persistence_mae", "mae_ratio", "dm_p"):
        assert named[f"val/{key}"] == pytest.approx(by_hand[f"usd/{key}"], rel=1e-12), key
    assert named["val/mae_return"] == pytest.approx(by_hand["return/mae"], rel=1e-12)
    train_closes = frame["BTC_close"].to_numpy()[:84]  # the days before the first val day (int(0.7 * 120))
    scale = np.mean(np.abs(np.diff(train_closes)))
    assert scores.row("val", "drift")["usd/mase"] == pytest.approx(named["val/mae"] / scale, rel=1e-12)
    assert "usd/mase" not in scores.row("test", "drift")  # no scale given for the test days
    assert scores.named("persistence")["val/mae_ratio"] == pytest.approx(1.0)
    assert scores.days == {"val": len(val), "test": len(made["test"])}
    table = scores.table()
    assert list(table.index) == [("val", "persistence"), ("val", "drift"), ("test", "persistence"), ("test", "drift")]
    pooled = score(forecasts, "usd", groups={"all": ["val", "test"]})
    assert pooled.days == {"all": len(val) + len(made["test"])}


def test_seed_metrics_are_in_returns_with_dollars_beside():
    frame = synthetic_frame(120)
    cfg = RunConfig(protocol="seed", train_frac=0.8)
    periods, made = protocol_samples(frame, cfg)
    forecasts = historical_forecasts({"drift": fresh(Drift)}, frame, cfg, [periods["val"]])
    named = score(forecasts, cfg.rules.units).named("drift")
    assert {"val/mae", "val/persistence_mae", "val/mae_usd", "val/persistence_mae_usd"} <= named.keys()
    assert "val/mape" not in named  # a percentage of a return near 0 means nothing
    assert named["val/mae"] < 1.0 < named["val/mae_usd"]  # returns vs dollars
    assert forecasts.table["reference"].to_numpy() == pytest.approx(made["val"].ref_close)  # the window's first close


def test_errors_and_their_ratios_are_minimised_the_rest_are_not():
    assert all(is_minimised(n) for n in ("val/mae_ratio", "test/h3/rmse", "val/crps_ratio_garch", "val/pinball",
                                         "val/interval_score_95", "val/mase"))
    assert not any(is_minimised(n) for n in ("val/coverage_95", "val/width_80", "val/direction_accuracy", "val/dm_p"))
