"""Several days ahead (issue 15): samples with H targets, the boundary rule, persistence and
the metrics per horizon, the Diebold-Mariano test with h - 1 lags, a model of H days scored one
day ahead, the pyfunc's H rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.forecast import Forecast
from cryptolstm.forecasting import Chunk, Forecasts
from cryptolstm.metrics import dm_test
from cryptolstm.models.baselines import Persistence
from cryptolstm.scoring import score
from cryptolstm.splits import Period
from cryptolstm.windowing import inputs, protocol_samples, samples
from tests.conftest import synthetic_frame, tiny_config


def every_day(frame: pd.DataFrame, name: str = "all") -> Period:
    return Period(name, frame.index[0], frame.index[-1])


def test_samples_of_three_days_ahead_on_a_made_up_series():
    frame = synthetic_frame(12, seed=3)
    close = frame["BTC_close"].to_numpy()
    cfg = RunConfig(window_len=4, horizon=3)
    s = samples(frame, cfg, every_day(frame))
    assert s.y.shape == (12 - 4 - 3 + 1, 3) and s.target_close.shape == (6, 3) and s.horizon == 3
    assert inputs(frame, cfg, None, s).shape == (6, 4, 4)
    # Sample 2's window covers days 2..5; its origin is day 5, its targets days 6, 7, 8.
    assert s.dates[2] == frame.index[6] and s.origins[2] == frame.index[5]
    np.testing.assert_array_equal(s.target_close[2], close[6:9])
    np.testing.assert_allclose(s.y[2], close[6:9] / close[5] - 1, rtol=1e-6)
    assert s.persistence[2] == 0.0 and s.last_close()[2] == close[5]
    np.testing.assert_array_equal(s.actual(3), s.target_close[:, 2])
    seed = samples(frame, cfg.replace(protocol="seed"), every_day(frame))  # relative to the window's first close
    np.testing.assert_allclose(seed.y[2], close[6:9] / close[2] - 1, rtol=1e-6)
    np.testing.assert_allclose(seed.persistence[2], close[5] / close[2] - 1)
    # The last sample's last target is the frame's last day; one day fewer, one sample fewer.
    assert s.target_close[-1, -1] == close[-1]
    assert len(samples(frame.iloc[:-1], cfg, every_day(frame))) == 5


def test_a_sample_belongs_to_a_period_only_if_all_its_target_days_do():
    frame = synthetic_frame(207)
    cfg = RunConfig(window_len=7, train_frac=0.7, val_frac=0.15, horizon=3)
    (periods, one), (_, three) = protocol_samples(frame, cfg.replace(horizon=1)), protocol_samples(frame, cfg)
    first_val, first_test = frame.index[144], frame.index[175]
    assert (periods["val"].first, periods["test"].first) == (first_val, first_test)
    last_target = {name: pd.DatetimeIndex(s.dates) + pd.Timedelta(days=2) for name, s in three.items()}
    assert last_target["train"][-1] < first_val and three["val"].dates[0] == first_val
    assert last_target["val"][-1] < first_test and three["test"].dates[0] == first_test
    # The H - 1 = 2 windows before each boundary belong to no period; the test period loses its last 2 origins.
    assert [len(one[p]) - len(three[p]) for p in ("train", "val", "test")] == [2, 2, 2]


def test_persistence_forecasts_the_origins_close_for_every_horizon():
    frame = synthetic_frame(40, seed=5)
    made = samples(frame, RunConfig(coin="ETH", window_len=5, horizon=4), every_day(frame))
    forecast = Persistence().predict(made)
    assert forecast.horizon == 4
    np.testing.assert_array_equal(made.last_close(), frame["ETH_close"].to_numpy()[4:-4])
    for h in range(1, 5):
        np.testing.assert_array_equal(forecast.close(h), made.last_close())


def test_metrics_per_horizon_and_the_plain_names_mean_horizon_one():
    frame = synthetic_frame(60, seed=6)
    period = every_day(frame, "test")
    made = samples(frame, RunConfig(window_len=5, horizon=3), period)
    rng = np.random.default_rng(0)
    forecast = Forecast.of_samples(made, made.y + rng.normal(0, 0.01, made.y.shape))
    m = score(Forecasts.of([Chunk("lstm", period, made, forecast)]), "usd").named("lstm")
    for h in (1, 2, 3):
        for key in ("mae", "persistence_mae", "mae_ratio", "dm_stat", "dm_p", "direction_accuracy"):
            assert np.isfinite(m[f"test/h{h}/{key}"]), (h, key)
        errors = forecast.close(h) - made.actual(h)
        assert m[f"test/h{h}/mae"] == pytest.approx(np.mean(np.abs(errors)))
        assert m[f"test/h{h}/persistence_mae"] == pytest.approx(np.mean(np.abs(made.last_close() - made.actual(h))))
        assert m[f"test/h{h}/dm_stat"] == pytest.approx(dm_test(errors, made.last_close() - made.actual(h), h=h)[0])
    assert m["test/mae_ratio"] == m["test/h1/mae_ratio"] and m["test/dm_p"] == m["test/h1/dm_p"]
    assert m["test/h3/mae"] != m["test/h1/mae"]


def test_dm_test_with_lags_against_a_value_worked_by_hand():
    a = np.array([1.0, -2.0, 3.0, -1.0, 2.0, 1.0])
    b = np.array([0.5, 1.0, -1.0, 2.0, -1.5, 0.5])
    # d = |a| - |b| = [0.5, 1, 2, -1, 0.5, 0.5]; mean 0.58333, gamma0 0.78472, gamma1 -0.25810; n = 6, h = 2
    # statistic = 0.58333 / sqrt((0.78472 + 2 * -0.25810) / 6) * sqrt((6 + 1 - 2 * 2 + 2 * 1 / 6) / 6)
    statistic = 2.0552708
    from scipy import stats

    got, p, _ = dm_test(a, b, h=2)
    assert got == pytest.approx(statistic, rel=1e-6) and p == pytest.approx(2 * stats.t.sf(statistic, df=5), rel=1e-5)
    assert dm_test(a, b, h=1)[0] != got  # the lag changes the variance


@pytest.mark.parametrize("value, words", [(0, "horizon must be an integer >= 1, got 0."),
                                          ("week", "horizon must be an integer, got 'week'.")])
def test_a_bad_horizon_is_one_sentence(value, words):
    with pytest.raises(ConfigError, match="^" + words.replace(".", r"\.") + "$"):
        RunConfig(horizon=value)


def test_a_horizon_too_long_for_the_data_is_one_sentence():
    frame = synthetic_frame(40)
    with pytest.raises(DataError, match=r"^40 days are too few for a 0\.7/0\.15/0\.15 split \(honest protocol\) "
                                        r"with window_len 7 and horizon 10; widen merge_date\.\.end_date\.$"):
        protocol_samples(frame, RunConfig(horizon=10))


@pytest.mark.slow
def test_a_model_of_three_days_trains_scores_each_day_and_its_pyfunc_returns_three_rows(tracking, synthetic_data):
    import mlflow

    from cryptolstm.data import load_market
    from cryptolstm.pyfunc import example_rows
    from cryptolstm.forecasting import NEVER, fitted, historical_forecasts
    from cryptolstm.tracking import tracked_train
    from cryptolstm.tracking.report import experiment_report

    cfg = tiny_config(synthetic_data, merge_date="2021-01-01", horizon=3, head="gaussian")
    market = load_market(synthetic_data, cfg.merge_date)
    run_id, result = tracked_train(cfg, market)
    test, actual = result.forecast("test")
    assert test.returns.shape == actual.shape == (len(samples(market.frame, cfg, result.periods["test"])), 3)
    assert test.quantiles.shape == (len(test), 3, len(test.levels))
    for key in ("test/h3/mae_ratio", "test/h2/dm_p", "val/h3/direction_accuracy", "test/h3/crps",
                "test/h2/coverage_80"):
        assert np.isfinite(result.metrics[key]), key
    assert result.metrics["test/h3/mae"] == pytest.approx(np.mean(np.abs(test.close(3) - actual[:, 2])))
    # The same model one day ahead: every test day is scored once, with the model's first output.
    one = historical_forecasts({"lstm": fitted(result.forecaster)}, market.frame, cfg, [result.periods["test"]], NEVER,
                               horizon=1)
    first = one.forecast("lstm", "test")[0]
    period = result.periods["test"]
    assert list(pd.DatetimeIndex(first.dates)) == list(pd.date_range(period.first, period.last))
    np.testing.assert_allclose(first.returns[: len(test), 0], test.returns[:, 0], rtol=1e-5)
    run = mlflow.get_run(run_id)
    assert run.data.params["config.horizon"] == "3" and "-h3-" in run.info.run_name
    assert run.data.metrics["test/h3/mae_ratio"] == pytest.approx(result.metrics["test/h3/mae_ratio"])
    out = mlflow.pyfunc.load_model(run.data.tags["model_uri"]).predict(example_rows(market.frame, cfg))
    assert out["horizon"].tolist() == [1, 2, 3]
    assert out["date"].tolist() == ["2021-12-01", "2021-12-02", "2021-12-03"]
    assert (out["lower_95"] < out["forecast_close"]).all() and (out["forecast_close"] < out["upper_95"]).all()
    assert out["last_close"].tolist() == [market.frame["BTC_close"].iloc[-1]] * 3
    report = experiment_report(mlflow.get_experiment(run.info.experiment_id).name)
    assert "## Prediction intervals" in report and "## Several days ahead" in report
    assert f"{result.metrics['test/h3/mae_ratio']:.3f} |" in report
