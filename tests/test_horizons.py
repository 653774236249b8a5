"""Several days ahead (issue 15): windows with H targets, the boundary rule, persistence and
the metrics per horizon, the Diebold-Mariano test with h - 1 lags, the pyfunc's H rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.metrics import dm_test, split_metrics
from cryptolstm.models.baselines import Persistence
from cryptolstm.splits import honest_split
from cryptolstm.windowing import next_day_windows, seed_windows
from tests.conftest import synthetic_frame, tiny_config


def test_windows_of_three_days_ahead_on_a_made_up_series():
    frame = synthetic_frame(12, seed=3)
    close = frame["BTC_close"].to_numpy()
    s = next_day_windows(frame, "BTC", COINS, 4, horizon=3)
    assert s.X.shape == (12 - 4 - 3 + 1, 4, 4) and s.y.shape == (6, 3) and s.target_close.shape == (6, 3)
    # Window 2 covers days 2..5; its origin is day 5, its targets days 6, 7, 8.
    assert s.dates[2] == frame.index[6]
    np.testing.assert_array_equal(s.target_close[2], close[6:9])
    np.testing.assert_allclose(s.y[2], close[6:9] / close[5] - 1, rtol=1e-6)
    assert s.persistence[2] == 0.0 and s.last_close()[2] == close[5]
    np.testing.assert_array_equal(s.actual(3), s.target_close[:, 2])
    seed = seed_windows(frame, "BTC", COINS, 4, horizon=3)  # relative to the window's first close
    np.testing.assert_allclose(seed.y[2], close[6:9] / close[2] - 1, rtol=1e-6)
    # The last window's last target is the frame's last day; one day fewer, one window fewer.
    assert s.target_close[-1, -1] == close[-1]
    assert len(next_day_windows(frame.iloc[:-1], "BTC", COINS, 4, horizon=3)) == 5


def test_a_window_belongs_to_a_split_only_if_all_its_target_days_do():
    frame = synthetic_frame(207)
    cfg = RunConfig(window_len=7, train_frac=0.7, val_frac=0.15, horizon=3)
    one, three = honest_split(frame, cfg.replace(horizon=1)), honest_split(frame, cfg)
    first_val, first_test = frame.index[144], frame.index[175]
    last_target = {name: pd.DatetimeIndex(s.dates) + pd.Timedelta(days=2) for name, s in three.items()}
    assert last_target["train"][-1] < first_val and three.val.dates[0] == first_val
    assert last_target["val"][-1] < first_test and three.test.dates[0] == first_test
    # The H - 1 = 2 windows before each boundary belong to no split; the test split loses its last 2 origins.
    assert (len(one.train) - len(three.train), len(one.val) - len(three.val), len(one.test) - len(three.test)) == (2, 2, 2)


def test_persistence_forecasts_the_origins_close_for_every_horizon():
    frame = synthetic_frame(40, seed=5)
    samples = next_day_windows(frame, "ETH", COINS, 5, horizon=4)
    forecast = Persistence().predict(samples)
    assert forecast.horizon == 4
    for h in range(1, 5):
        np.testing.assert_array_equal(forecast.close(h), samples.last_close())


def test_metrics_per_horizon_and_the_plain_names_mean_horizon_one():
    frame = synthetic_frame(60, seed=6)
    samples = next_day_windows(frame, "BTC", COINS, 5, horizon=3)
    rng = np.random.default_rng(0)
    from cryptolstm.forecast import Forecast

    forecast = Forecast.of_samples(samples, samples.y + rng.normal(0, 0.01, samples.y.shape))
    m = split_metrics("test", forecast, samples.target_close, "usd")
    for h in (1, 2, 3):
        for key in ("mae", "persistence_mae", "mae_ratio", "dm_stat", "dm_p", "direction_accuracy"):
            assert np.isfinite(m[f"test/h{h}/{key}"]), (h, key)
        errors = forecast.close(h) - samples.actual(h)
        assert m[f"test/h{h}/mae"] == pytest.approx(np.mean(np.abs(errors)))
        assert m[f"test/h{h}/persistence_mae"] == pytest.approx(np.mean(np.abs(samples.last_close() - samples.actual(h))))
    assert m["test/mae_ratio"] == m["test/h1/mae_ratio"] and m["test/dm_p"] == m["test/h1/dm_p"]


def test_dm_test_with_lags_against_a_value_worked_by_hand():
    a = np.array([1.0, -2.0, 3.0, -1.0, 2.0, 1.0])
    b = np.array([0.5, 1.0, -1.0, 2.0, -1.5, 0.5])
    # d = |a| - |b| = [0.5, 1, 2, -1, 0.5, 0.5]; mean 0.58333, gamma0 0.78472, gamma1 -0.25810; n = 6, h = 2
    # statistic = 0.58333 / sqrt((0.78472 + 2 * -0.25810) / 6) * sqrt((6 + 1 - 2 * 2 + 2 * 1 / 6) / 6)
    statistic = 2.0552708
    from scipy import stats

    got, p = dm_test(a, b, h=2)
    assert got == pytest.approx(statistic, rel=1e-6) and p == pytest.approx(2 * stats.t.sf(statistic, df=5), rel=1e-5)
    assert dm_test(a, b, h=1)[0] != got  # the lag changes the variance


@pytest.mark.parametrize("value, words", [(0, "horizon must be an integer >= 1, got 0."),
                                          ("week", "horizon must be an integer, got 'week'.")])
def test_a_bad_horizon_is_one_sentence(value, words):
    with pytest.raises(ConfigError, match="^" + words.replace(".", r"\.") + "$"):
        RunConfig(horizon=value)


def test_a_horizon_too_long_for_the_data_is_one_sentence():
    frame = synthetic_frame(40)
    with pytest.raises(DataError, match="too few for a 0.7/0.15/0.15 split with window_len 7 and horizon 10"):
        honest_split(frame, RunConfig(horizon=10))


@pytest.mark.slow
def test_a_model_of_three_days_trains_scores_each_day_and_its_pyfunc_returns_three_rows(tracking, shared_data):
    import mlflow

    from cryptolstm.data import load_market
    from cryptolstm.forecaster import example_rows
    from cryptolstm.tracking import tracked_train

    cfg = tiny_config(shared_data, horizon=3, head="gaussian")
    market = load_market(shared_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market)
    assert result.forecasts["test"].returns.shape == (len(result.splits.test), 3)
    for key in ("test/h3/mae_ratio", "test/h2/dm_p", "val/h3/direction_accuracy", "test/h3/crps", "test/h2/coverage_80"):
        assert np.isfinite(result.metrics[key]), key
    run = mlflow.get_run(run_id)
    assert run.data.params["config.horizon"] == "3" and "-h3-" in run.info.run_name
    out = mlflow.pyfunc.load_model(run.data.tags["model_uri"]).predict(example_rows(market.frame, 7))
    assert out["horizon"].tolist() == [1, 2, 3]
    assert out["date"].tolist() == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert (out["lower_95"] < out["forecast_close"]).all() and (out["forecast_close"] < out["upper_95"]).all()
    assert out["last_close"].nunique() == 1
    from cryptolstm.tracking.report import experiment_report

    report = experiment_report(run.data.tags.get("mlflow.experimentName") or mlflow.get_experiment(
        run.info.experiment_id).name)
    assert "## Prediction intervals" in report and "## Several days ahead" in report
    assert f"{result.metrics['test/h3/mae_ratio']:.3f} |" in report
