"""Walk-forward backtest: folds, leakage, refitting, baselines, metrics, DM test, MLflow, report."""

import functools
import logging
import math
from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.backtest.cluster import local_processes
from cryptolstm.backtest.runner import (NetworkMaker, backtest_config, fit_periods, forecasters, plan,
                                        retrain_policy, run_backtest)
from cryptolstm.backtest.tables import fold_table, metrics_table, predictions_frame
from cryptolstm.cli import app
from cryptolstm.config import RunConfig
from cryptolstm.data import Market, load_market
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.features import fit as fit_features
from cryptolstm.forecasting import Retrain, fresh, historical_forecasts
from cryptolstm.metrics import direction, dm_test, in_sample_scale, score
from cryptolstm.models.base import History
from cryptolstm.models.baselines import Arima, Drift, MovingAverage, Persistence
from cryptolstm.models.interval_baselines import INTERVAL
from cryptolstm.options import BacktestOptions
from cryptolstm.render import summary_markdown
from cryptolstm.scoring import score as score_table
from cryptolstm.splits import DAY, Period, folds
from cryptolstm.windowing import inputs, samples
from tests.conftest import all_runs, synthetic_frame, tiny_config

runner = CliRunner()
COINS = ("BTC", "ETH")


# --- folds --------------------------------------------------------------------------------


def test_default_folds_are_twenty_quarters_that_tile_the_range():
    made = folds("2019-01-01", "2023-12-31", 3)
    assert len(made) == 20 and [f.name for f in made] == [str(k) for k in range(20)]
    assert (made[0].first, made[0].last) == (pd.Timestamp("2019-01-01"), pd.Timestamp("2019-03-31"))
    assert made[-1].last == pd.Timestamp("2023-12-31")
    days = [d for f in made for d in pd.date_range(f.first, f.last)]
    assert len(days) == len(set(days)) == len(pd.date_range("2019-01-01", "2023-12-31"))  # no day twice, none missed


def test_a_short_last_fold_ends_at_end():
    labels = [f.label for f in folds("2020-01-15", "2020-05-01", 2)]
    assert labels == ["2020-01-15..2020-03-14", "2020-03-15..2020-05-01"]


@pytest.mark.parametrize("args, words", [(("2020-01-01", "2019-01-01", 3), "must not be before start"),
                                         (("2020-01-01", "2021-01-01", 0), "fold_months must be an integer >= 1"),
                                         (("2020-13-01", "2021-01-01", 3), "start must be a date")])
def test_impossible_folds_are_one_sentence(args, words):
    with pytest.raises(ConfigError, match=words):
        folds(*args)


def fit_samples(frame: pd.DataFrame, cfg: RunConfig, fold: Period) -> dict:
    """What one LSTM fit for ``fold`` trains and validates on: its samples and their input windows
    (the rows before the fold, as the loop hands them), and the fold's own samples."""
    history = frame.loc[: fold.before]
    train, val = fit_periods(cfg, frame, fold)
    state = fit_features(cfg.feature_names, history.loc[: train.last], COINS)
    made = {name: samples(history, cfg, period) for name, period in (("train", train), ("val", val))}
    windows = {f"X_{name}": inputs(history, cfg, state, made[name]) for name in made}
    return {**made, **windows, "test": samples(frame.loc[: fold.last], cfg, fold)}


def test_fold_samples_train_only_on_days_before_the_fold():
    frame = synthetic_frame(300)
    cfg = RunConfig(window_len=5)
    for fold in folds("2020-07-01", "2020-10-26", 1):
        made = fit_samples(frame, cfg, fold)
        assert made["train"].dates.max() < made["val"].dates.min()
        assert pd.Timestamp(made["val"].dates.max()) == fold.before  # validation runs up to the day before the fold
        test = pd.DatetimeIndex(made["test"].dates)
        assert test.min() == fold.first and test.max() == fold.last
        # Change every price from the fold's first day on: what the fit reads does not move.
        changed = frame.copy()
        changed.loc[fold.first:] *= 3.0
        again = fit_samples(changed, cfg, fold)
        for name in ("train", "val"):
            for key in ("y", "ref_close", "target_close", "dates"):
                np.testing.assert_array_equal(getattr(made[name], key), getattr(again[name], key))
        np.testing.assert_array_equal(made["X_train"], again["X_train"])
        np.testing.assert_array_equal(made["X_val"], again["X_val"])
        assert not np.array_equal(made["test"].target_close, again["test"].target_close)  # the change is real


def test_the_validation_tail_has_the_configs_share_of_the_days_before_the_fold():
    frame = synthetic_frame(400)
    fold = Period("0", pd.Timestamp("2020-11-01"), pd.Timestamp("2020-11-30"))
    made = fit_samples(frame, RunConfig(window_len=7, train_frac=0.7, val_frac=0.15), fold)
    before = len(made["train"]) + len(made["val"])
    assert before == (pd.Timestamp("2020-11-01") - pd.Timestamp("2020-01-01")).days - 7
    assert len(made["val"]) == before - round(before * 0.7 / 0.85)


def test_windows_whose_targets_cross_into_validation_belong_to_neither():
    frame = synthetic_frame(400)
    fold = Period("0", pd.Timestamp("2020-11-01"), pd.Timestamp("2020-11-30"))
    cfg = RunConfig(window_len=7, horizon=3)
    train, val = fit_periods(cfg, frame, fold)
    made = fit_samples(frame, cfg, fold)
    assert pd.Timestamp(made["train"].dates[-1]) + 2 * DAY == train.last and val.first == train.last + DAY
    assert pd.Timestamp(made["val"].dates[0]) == val.first
    assert pd.Timestamp(made["val"].dates[-1]) + 2 * DAY == fold.before
    everything = samples(frame, cfg, Period("before", frame.index[0], fold.before))
    assert len(everything) - len(made["train"]) - len(made["val"]) == 2


def test_a_fold_without_history_is_one_sentence():
    market = Market(synthetic_frame(60), {})
    options = BacktestOptions(start="2020-01-09", end="2020-01-31", fold_months=1)
    with pytest.raises(DataError, match=r"^fold 2020-01-09\.\.2020-01-31 has 1 training, 0 validation and 23 test "
                                        r"sample\(s\) with window_len 7 and horizon 1; it needs at least one of each"):
        plan(RunConfig(window_len=7), market, options)


def test_the_options_choose_the_forecasters_and_the_retrain_policy():
    cfg = RunConfig(epochs=5, seed=3)
    assert retrain_policy(cfg, BacktestOptions()) == Retrain("scratch", 1, 5)
    assert retrain_policy(cfg, BacktestOptions(retrain="warm", retrain_every=2, warm_epochs=1)) == Retrain("warm", 2, 1)
    assert list(forecasters(cfg, BacktestOptions(seeds=2, arima=False))) == [
        "lstm.seed3", "lstm.seed4", "persistence", "drift", "moving_average"]
    interval = [b.name for b in INTERVAL]  # a distribution head is scored beside every interval baseline
    assert list(forecasters(cfg.replace(head="gaussian"), BacktestOptions(seeds=1)))[-len(interval) - 1:] == [
        "arima", *interval]
    fold_cfg = backtest_config(RunConfig(protocol="seed", epochs=50), BacktestOptions(max_epochs=4))
    assert (fold_cfg.protocol, fold_cfg.epochs) == ("honest", 4)


def test_a_backtest_without_intervals_has_an_empty_interval_table():
    made = historical_forecasts({"lstm.seed1": fresh(Drift), "drift": fresh(Drift)}, synthetic_frame(300), RunConfig(),
                                folds("2020-07-01", "2020-08-31", 1))
    scores = score_table(made, "return")
    assert fold_table(scores, "0", "point").index.tolist() == ["lstm.seed1", "lstm.mean", "lstm.std", "drift"]
    empty = fold_table(scores, "0", "intervals")
    assert len(empty) == 0 and empty.index.name == "forecaster"


# --- baselines on a made-up series: exact values --------------------------------------------


def _series_market(closes: list[float]) -> pd.DataFrame:
    index = pd.date_range("2021-01-01", periods=len(closes), freq="D", name="date")
    return pd.DataFrame({"BTC_close": closes, "BTC_volume": 1.0, "ETH_close": 1.0, "ETH_volume": 1.0}, index=index)


def test_baselines_exact_values_on_a_small_series():
    frame = _series_market([100.0, 110.0, 121.0, 133.1, 146.41, 150.0, 120.0, 90.0])
    made = samples(frame, RunConfig(window_len=2), Period("all", frame.index[0], frame.index[-1]))  # targets days 2..7
    everything = History(frame, "BTC")
    usd = lambda model: model.predict(made, everything).close()  # noqa: E731
    np.testing.assert_allclose(usd(Persistence().fit()), [110.0, 121.0, 133.1, 146.41, 150.0, 120.0])
    drift = Drift().fit(History(frame.iloc[:5], "BTC"))  # fit on 100 .. 146.41: every daily step is +10%
    assert drift.params["mu"] == pytest.approx(math.log(1.1))
    np.testing.assert_allclose(usd(drift), [121.0, 133.1, 146.41, 161.051, 165.0, 132.0])
    # Mean of the three closes before each target day; day 2 has only two before it.
    ma = MovingAverage(3)
    with pytest.raises(DataError, match="needs 3 days"):
        ma.predict(made, everything)
    later = made.take(slice(1, None))
    np.testing.assert_allclose(ma.predict(later, everything).close(),
                               [110.333333333, 121.366666667, 133.503333333, 143.17, 138.803333333], rtol=1e-9)


def test_arima_is_fitted_on_the_training_days_and_forecasts_one_step_ahead():
    rng = np.random.default_rng(3)
    frame = _series_market(list(np.exp(np.cumsum(0.001 + 0.02 * rng.standard_normal(400)) + np.log(1000.0))))
    everything = samples(frame, RunConfig(window_len=3), Period("all", frame.index[0], frame.index[-1]))
    made = everything.take(slice(300, None))
    first = pd.Timestamp(made.dates[0])
    model = Arima().fit(History(frame.loc[: first - DAY], "BTC"))
    assert set(model.params) == {"drift", "ar.L1", "ma.L1", "sigma2"}
    forecast = model.predict(made, History(frame, "BTC")).close()
    # Prices after a target day cannot change its forecast.
    changed = frame.copy()
    changed.iloc[-10:, 0] *= 5.0
    again = model.predict(made, History(changed, "BTC")).close()
    np.testing.assert_allclose(forecast[:-10], again[:-10], rtol=1e-12)
    assert not np.allclose(forecast[-9:], again[-9:])
    # One step ahead of a near random walk: close to the last close, much closer than the spread of prices.
    assert np.mean(np.abs(forecast / made.last_close() - 1.0)) < 0.01
    refit = Arima().fit(History(frame.loc[: first + 30 * DAY], "BTC"))
    assert refit.params != model.params  # fitted on other days, other parameters


# --- metrics --------------------------------------------------------------------------------


def _t3_cdf(t: float) -> float:
    """Student's t CDF with 3 degrees of freedom, in closed form."""
    return 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi


def test_dm_test_against_a_value_worked_by_hand():
    # d = |e_a| - |e_b| = [0, 1, 2, 3]: mean 1.5, gamma0 = (2.25 + .25 + .25 + 2.25) / 4 = 1.25,
    # DM = 1.5 / sqrt(1.25 / 4) = 2.683; HLN factor sqrt((4 + 1 - 2) / 4) = sqrt(0.75) -> 1.5 * sqrt(2.4).
    statistic, p, detectable = dm_test(np.array([1.0, 2.0, -3.0, 4.0]), np.array([1.0, -1.0, 1.0, 1.0]))
    assert statistic == pytest.approx(1.5 * math.sqrt(2.4), rel=1e-12)
    # the detectable effect: (t3(0.975) + t3(0.80)) = 3.18245 + 0.97847 standard errors, the HLN-corrected
    # error sqrt(1.25 / 4) / sqrt(0.75) = 0.645497, relative to b's mean loss |b| = 1.0
    assert detectable == pytest.approx((3.182446 + 0.978472) * 0.645497, rel=1e-5)
    assert p == pytest.approx(2 * (1 - _t3_cdf(1.5 * math.sqrt(2.4))), rel=1e-9)
    assert p == pytest.approx(0.1029, abs=5e-4)
    # Swapping the forecasts flips the sign, not the p-value; squared loss is power 2.
    assert dm_test(np.array([1.0, -1.0, 1.0, 1.0]), np.array([1.0, 2.0, -3.0, 4.0]))[0] == pytest.approx(-statistic)
    # power 2, h = 2: d = [0, 3, 8, 15], mean 6.5; gammas (42.25 + 12.25 + 2.25 + 72.25) / 4 = 32.25 and ((-6.5)(-3.5) + (-3.5)(1.5) + (1.5)(8.5)) / 4 = 7.5625.
    statistic2, _, _ = dm_test(np.array([1.0, 2.0, -3.0, 4.0]), np.array([1.0, -1.0, 1.0, 1.0]), h=2, power=2)
    variance = (32.25 + 2 * 7.5625) / 4
    assert statistic2 == pytest.approx(6.5 / math.sqrt(variance) * math.sqrt((4 + 1 - 4 + 2 / 4) / 4), rel=1e-12)


def test_the_detectable_effect_is_detected_80_percent_of_the_time():
    """Plant a difference in mean loss equal to the detectable effect the test reports (on 400 days of
    i.i.d. absolute-t losses, as a CRPS is): the test rejects at 5 % in about 80 % of 2,000 draws."""
    rng = np.random.default_rng(3)
    n, draws = 400, 2000
    base = np.abs(rng.standard_t(5, size=(draws, n)))
    other = np.abs(rng.standard_t(5, size=(draws, n)))
    effect = np.median([dm_test(other[i], base[i])[2] for i in range(200)])  # what the test says it detects
    shifted = other + effect * base.mean()  # a loss larger by that relative difference
    rejected = np.mean([dm_test(shifted[i], base[i])[1] < 0.05 for i in range(draws)])
    assert 0.05 < effect < 0.2
    assert rejected == pytest.approx(0.80, abs=0.04)


def test_dm_test_of_identical_forecasts_is_undefined_not_significant():
    e = np.array([1.0, -2.0, 3.0])
    assert all(math.isnan(v) for v in dm_test(e, e))


def test_direction_has_a_wilson_interval_and_persistence_has_no_direction():
    actual = np.array([1.0, -1.0, 2.0, -2.0, 1.0, 0.0])
    out = direction(actual, np.array([1.0, -1.0, 1.0, 1.0, 0.0, 5.0]))  # 3 of 5 right (the no-move day is left out)
    assert out["direction_accuracy"] == pytest.approx(0.6)
    z = 1.959963984540054
    centre, half = (0.6 + z * z / 10) / (1 + z * z / 5), z / (1 + z * z / 5) * math.sqrt(0.6 * 0.4 / 5 + z * z / 100)
    assert (out["direction_low"], out["direction_high"]) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert out["direction_p"] == pytest.approx(1.0)  # 3 of 5 is no evidence at all
    assert math.isnan(direction(actual, np.zeros(6))["direction_accuracy"])


def test_forecast_metrics_in_usd_and_returns_with_mase():
    actual, last = np.array([110.0, 99.0]), np.array([100.0, 100.0])
    forecast = np.array([105.0, 100.0])
    scale_usd = in_sample_scale(pd.Series([100.0, 102.0, 98.0]), "usd")
    assert scale_usd == 3.0
    m = score(actual, forecast, last, scales={"usd": scale_usd, "return": 0.05})
    assert m["usd/mae"] == 3.0 and m["usd/rmse"] == pytest.approx(math.sqrt((25 + 1) / 2))
    assert m["usd/mae_ratio"] == pytest.approx(3.0 / 5.5) and m["usd/mase"] == pytest.approx(1.0)
    assert m["usd/mape"] == pytest.approx((5 / 110 + 1 / 99) / 2 * 100)
    assert m["return/mae"] == pytest.approx(0.03) and m["return/mase"] == pytest.approx(0.03 / 0.05)
    assert "return/mape" not in m  # a percentage of a return near zero means nothing


def test_options_refuse_impossible_values():
    for name in ("fold_months", "seeds", "workers", "ma_window", "max_epochs", "retrain_every", "warm_epochs"):
        with pytest.raises(ConfigError, match=f"^{name} must be an integer >= 1, got 0\\.$"):
            BacktestOptions(**{name: 0})
    with pytest.raises(ConfigError, match=r"^retrain must be one of scratch, warm; got 'cold'\.$"):
        BacktestOptions(retrain="cold")


# --- the backtest itself (tiny LSTMs on synthetic prices) -------------------------------------


@pytest.fixture(scope="module")
def tiny_backtest(synthetic_data):
    cfg = tiny_config(synthetic_data, merge_date="2020-06-01", epochs=2, patience=1)
    market = load_market(synthetic_data, cfg.merge_date, "2021-06-30")
    options = BacktestOptions(start="2021-02-01", end="2021-06-30", fold_months=2, seeds=2)
    return cfg, market, options, run_backtest(plan(cfg, market, options))


@pytest.mark.slow
def test_every_fold_is_refitted_on_its_own_past(tiny_backtest):
    cfg, market, options, result = tiny_backtest
    assert [f.days for f in result.folds] == [59, 61, 30]
    assert (result.config.protocol, result.config.epochs) == ("honest", 2)
    closes = market.frame["BTC_close"]
    labels = ["lstm.seed7", "lstm.seed8", "persistence", "drift", "moving_average", "arima"]
    for fold in result.folds:
        period = fold.period
        fits = {f.forecaster: f for f in fold.fits}
        assert list(fits) == labels and all(f.init == "scratch" and f.period == period.name for f in fold.fits)
        assert set(fold.forecasts.table["fit"]) == {period.name}  # every forecast made by this fold's fit
        history = History(market.frame.loc[: period.before], "BTC")
        assert fits["drift"].params["mu"] == pytest.approx(np.mean(np.diff(np.log(history.closes.to_numpy()))))
        assert fits["arima"].params["ar.L1"] == pytest.approx(Arima().fit(history).params["ar.L1"])
        assert all(fits[f"lstm.seed{s}"].params["epochs_run"] >= 1 for s in (7, 8))
        made = fit_samples(market.frame, result.config, period)
        assert (fold.n_train, fold.n_val) == (len(made["train"]), len(made["val"]))
        forecast, actual = fold.forecasts.forecast("drift", period.name)
        np.testing.assert_array_equal(actual[:, 0], closes.loc[period.first: period.last].to_numpy())
        # Every forecaster answers the same target days through the same interface.
        assert all(np.array_equal(fold.forecasts.forecast(label, period.name)[0].dates, forecast.dates)
                   for label in labels)
    mus = [f.fits[3].params["mu"] for f in result.folds]
    assert len(set(mus)) == len(mus)
    assert [f.n_train + f.n_val for f in result.folds] == sorted({f.n_train + f.n_val for f in result.folds})
    # Two seeds are two models.
    first = result.folds[0]
    assert not np.allclose(first.forecasts.forecast("lstm.seed7", "0")[0].close(),
                           first.forecasts.forecast("lstm.seed8", "0")[0].close())
    # The whole table is the folds' tables together.
    assert len(result.forecasts.table) == sum(len(f.forecasts.table) for f in result.folds) == 150 * len(labels)


@pytest.mark.slow
def test_one_lstm_fit_sees_nothing_after_its_fold(tiny_backtest):
    cfg, market, options, result = tiny_backtest
    fold_cfg = backtest_config(cfg, options)
    fold = result.folds[0].period
    fit = next(f for f in result.folds[0].fits if f.forecaster == "lstm.seed7")
    forecast = result.forecasts.forecast("lstm.seed7", "0")[0]

    def again(frame: pd.DataFrame):
        made = historical_forecasts({"lstm.seed7": NetworkMaker(fold_cfg.replace(seed=7))}, frame, fold_cfg, [fold],
                                    plan=functools.partial(fit_periods, fold_cfg))
        return made.fits[0], made.forecast("lstm.seed7", "0")[0]

    # Every price after the fold changed: the same fit, the same forecasts.
    later = market.frame.copy()
    later.loc[fold.last + DAY:] *= 10.0
    fit_later, forecast_later = again(later)
    assert fit_later.params == pytest.approx(fit.params, rel=1e-6)
    np.testing.assert_allclose(forecast_later.close(), forecast.close(), rtol=1e-6)
    # Every price from the fold's first day on changed: still the same fit (its forecasts, whose
    # inputs are the fold's days, move).
    inside = market.frame.copy()
    inside.loc[fold.first:] *= 10.0
    fit_inside, forecast_inside = again(inside)
    assert fit_inside.params == pytest.approx(fit.params, rel=1e-6)
    assert not np.allclose(forecast_inside.close(), forecast.close())


@pytest.mark.slow
def test_metrics_table_and_summary(tiny_backtest):
    *_, result = tiny_backtest
    table = metrics_table(result)
    assert list(table["fold"].unique()) == ["0", "1", "2", "all"]
    rows = table.loc[table["fold"] == "all"].set_index("forecaster")
    assert list(rows.index) == ["lstm.seed7", "lstm.seed8", "lstm.mean", "lstm.std", "persistence", "drift",
                                "moving_average", "arima"]
    assert rows.loc["persistence", "usd/mae_ratio"] == 1.0
    assert rows.loc["lstm.mean", "usd/mae"] == pytest.approx(rows.loc[["lstm.seed7", "lstm.seed8"], "usd/mae"].mean())
    assert rows.loc["lstm.std", "usd/mae"] == pytest.approx(rows.loc[["lstm.seed7", "lstm.seed8"], "usd/mae"].std())
    assert rows["days"].iloc[0] == 150 and (rows["first"].iloc[0], rows["last"].iloc[0]) == ("2021-02-01", "2021-06-30")
    # The pooled MAE is the day-weighted mean of the folds' MAEs.
    per_fold = table.loc[table["fold"] != "all"].set_index("forecaster").loc["drift"]
    assert rows.loc["drift", "usd/mae"] == pytest.approx(np.average(per_fold["usd/mae"], weights=per_fold["days"]))
    # MASE: the pooled MAE over the mean of the folds' in-sample scales.
    closes = tiny_backtest[1].frame["BTC_close"]
    scale = np.mean([in_sample_scale(closes.loc[: f.period.before], "usd") for f in result.folds])
    assert rows.loc["drift", "usd/mase"] == pytest.approx(rows.loc["drift", "usd/mae"] / scale)
    markdown = summary_markdown(table, "BTC")
    assert markdown.count("\n| ") == 5 and "| all | 2021-02-01..2021-06-30 | 150 |" in markdown
    # One row per test day, every forecast in USD.
    predictions = predictions_frame(result)
    assert len(predictions) == 150 and predictions["date"].iloc[[0, -1]].tolist() == ["2021-02-01", "2021-06-30"]
    np.testing.assert_array_equal(predictions["persistence"], predictions["last_close"])
    np.testing.assert_array_equal(predictions["actual"], closes.loc["2021-02-01":"2021-06-30"].to_numpy())
    drift = np.concatenate([f.forecasts.forecast("drift", f.period.name)[0].close() for f in result.folds])
    np.testing.assert_allclose(predictions["drift"], drift)


@pytest.mark.slow
def test_workers_2_gives_the_same_forecasts_in_two_processes(tiny_backtest):
    cfg, market, options, result = tiny_backtest
    parallel = run_backtest(plan(cfg, market, replace(options, workers=2, arima=False)))
    assert "arima" not in parallel.forecasts.forecasters
    for a, b in zip(result.folds, parallel.folds):
        for label in ("lstm.seed7", "lstm.seed8", "drift"):
            np.testing.assert_allclose(a.forecasts.forecast(label, a.period.name)[0].close(),
                                       b.forecasts.forecast(label, b.period.name)[0].close(), rtol=1e-4)


# --- MLflow: one parent, a child per fold; the CLI; the report ----------------------------------


@pytest.mark.slow
def test_backtest_command_logs_a_parent_and_a_child_per_fold(tracking, synthetic_data, tmp_path):
    base = tmp_path / "tiny.yaml"
    base.write_text("merge_date: '2021-01-01'\nlayers: 1\nneurons: 4\nepochs: 2\npatience: 1\nbatch_size: 64\nseed: 3\n"
                    "head: gaussian\n")
    result = runner.invoke(app, ["backtest", "--config", str(base), "--coin", "ETH", "--data-dir", str(synthetic_data),
                                 "--start", "2021-09-01", "--end", "2021-11-30", "--fold-months", "1",
                                 "--seeds", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    runs = all_runs(client)
    parent = next(r for r in runs if r.data.tags.get("cryptolstm.entry") == "backtest")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 4 and len(children) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(c.data.params["fold.first"] for c in children) == ["2021-09-01", "2021-10-01", "2021-11-01"]
    assert parent.data.params["config.coin"] == "ETH" and parent.data.params["backtest.seeds"] == "2"
    assert parent.data.params["backtest.retrain"] == "scratch" and parent.data.params["backtest.retrain_every"] == "1"
    assert parent.data.tags["backtest.source"] == str(base)
    m = parent.data.metrics
    for key in ("lstm.mean/usd/mae_ratio", "lstm.std/usd/mae_ratio", "lstm.seed3/usd/dm_p", "lstm.seed4/return/mase",
                "drift/usd/rmse", "arima/usd/mape", "moving_average/return/mae", "lstm.mean/direction_low", "lstm.mean/direction_accuracy"):
        assert key in m, key
    assert m["persistence/usd/mae_ratio"] == 1.0
    seeds = [m[f"lstm.seed{s}/usd/mae_ratio"] for s in (3, 4)]
    assert m["lstm.mean/usd/mae_ratio"] == pytest.approx(np.mean(seeds))
    child = next(c for c in children if c.data.params["fold.first"] == "2021-09-01").data
    assert {"drift.mu", "arima.ar.L1", "fold.n_train"} <= set(child.params)
    assert child.params["lstm.seed3.init"] == child.params["lstm.seed4.init"] == "scratch"
    assert child.params["fold.n_test"] == "30" and "lstm.seed3.best_epoch" in child.metrics
    assert "persistence/usd/mae" in child.metrics
    artifacts = {a.path for d in ("backtest", "plots") for a in client.list_artifacts(parent.info.run_id, d)}
    assert {"backtest/metrics.csv", "backtest/summary.md", "backtest/predictions.csv", "plots/mae_ratio_per_fold.png",
            "plots/forecasts_per_fold.png", "plots/error_distribution.png"} <= artifacts
    predictions = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{parent.info.run_id}/backtest/predictions.csv"))
    assert len(predictions) == 91 and {"lstm.seed3", "lstm.seed4", "persistence", "arima"} <= set(predictions.columns)
    assert "| all | 2021-09-01..2021-11-30 | 91 |" in result.output
    # A distribution head: its intervals beside the interval baselines, per fold and pooled.
    for key in ("lstm.mean/coverage_80", "lstm.seed3/crps_ratio_garch", "lstm.seed4/crps_dm_p_empirical",
                "garch/coverage_95", "empirical/crps", "rolling_gaussian/interval_score_95", "lstm.mean/width_95_usd"):
        assert key in m, key
    assert "garch/crps" in child.metrics and "garch.nu" in child.params
    assert {"backtest/intervals.csv", "backtest/intervals.md", "plots/coverage_80_per_fold.png",
            "plots/coverage_95_per_fold.png"} <= artifacts
    intervals = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{parent.info.run_id}/backtest/intervals.csv"))
    pooled = intervals.loc[intervals["fold"] == "all"].set_index("forecaster")
    assert pooled.loc["lstm.seed3", "crps_ratio_garch"] == pytest.approx(
        pooled.loc["lstm.seed3", "crps"] / pooled.loc["garch", "crps"])
    assert "Prediction intervals (ETH)" in result.output and "LSTM/GARCH CRPS" in result.output
    # The model confidence sets: every forecaster on each loss, the set and its block length recorded.
    forecasters = {"lstm.seed3", "lstm.seed4", "lstm.mean", "persistence", "drift", "moving_average", "arima"}
    assert forecasters <= {k.split("/", 2)[2] for k in m if k.startswith("mcs/mae/")}
    assert {"lstm.seed3", "lstm.mean", "garch", "har", "empirical"} <= {k.split("/", 2)[2] for k in m
                                                                        if k.startswith("mcs/crps/")}
    for loss in ("mae", "crps"):
        included = parent.data.tags[f"mcs.{loss}.included"].split(",")
        assert included and all(m[f"mcs/{loss}/{name}"] > 0.10 for name in included)
        assert int(parent.data.tags[f"mcs.{loss}.block_days"]) >= 1
    assert "backtest/confidence_set.md" in artifacts
    assert "Model confidence set (ETH, absolute error (USD), 90 %; stationary bootstrap, mean block " in result.output


@pytest.mark.slow
def test_a_warm_backtest_every_second_fold_logs_where_each_fold_s_weights_came_from(tracking, synthetic_data):
    from cryptolstm.tracking.backtest import tracked_backtest

    cfg = tiny_config(synthetic_data, merge_date="2021-01-01", seed=3, head="gaussian")
    market = load_market(synthetic_data, cfg.merge_date)
    options = BacktestOptions(start="2021-09-01", end="2021-11-30", fold_months=1, seeds=1, arima=False,
                              retrain="warm", retrain_every=2, warm_epochs=1)
    run_id, result, table, markdown = tracked_backtest(plan(cfg, market, options), {})
    lstm = [f for f in result.forecasts.fits if f.forecaster == "lstm.seed3"]
    assert [(f.period, f.init, f.params["epochs_run"]) for f in lstm] == [("0", "scratch", 2), ("2", "0", 1)]
    fitted_at = result.forecasts.table.groupby("period")["fit"].unique().map(list).to_dict()
    assert fitted_at == {"0": ["0"], "1": ["0"], "2": ["2"]}
    children = {c.data.params["fold.first"]: c.data for c in all_runs(MlflowClient())
                if c.data.tags.get("mlflow.parentRunId") == run_id}
    assert children["2021-09-01"].params["lstm.seed3.init"] == "scratch"
    assert children["2021-10-01"].params["lstm.seed3.fitted_at"] == "fold 0"
    assert "lstm.seed3.init" not in children["2021-10-01"].params  # nothing was fitted for fold 1
    assert children["2021-11-01"].params["lstm.seed3.init"] == "fold 0"
    assert children["2021-09-01"].params["init.from_fold"] == "scratch"
    assert children["2021-11-01"].params["init.from_fold"] == "0"
    assert children["2021-11-01"].metrics["lstm.seed3.epochs_run"] == 1
    parent = mlflow.get_run(run_id).data
    assert parent.params["backtest.retrain"] == "warm"
    assert set(table["fold"]) == {"0", "1", "2", "all"}
    # What the policy cost: 2 epochs before fold 0, none for fold 1, 1 (warm) before fold 2.
    assert result.epochs_trained() == {"lstm.seed3": 3} and parent.metrics["lstm.seed3/epochs_run"] == 3
    assert 0 < parent.metrics["backtest/seconds"] == pytest.approx(result.seconds)
    assert (f"Cost: the LSTM trained 3 epochs (seed 3: 3); fits and forecasts took {result.seconds / 60:.1f} min "
            "on local (1 process).") in markdown


@pytest.mark.parametrize(
    "args, words",
    [
        (["--coin", "DOGE"], "coin must be one of BTC, ETH; got 'DOGE'."),
        (["--end", "2024-06-30"], "the backtest ends 2024-06-30 but the data ends 2021-11-30"),
        (["--start", "2015-01-01"], "a fold needs earlier days to train on"),
        (["--fold-months", "0"], "fold_months must be an integer >= 1, got 0."),
        (["--seeds", "two"], "seeds must be an integer, got 'two'."),
        (["--start", "04/01/2018"], "start must be a date written YYYY-MM-DD, got '04/01/2018'."),
        (["--retrain", "cold"], "retrain must be one of scratch, warm; got 'cold'."),
        (["--retrain-every", "0"], "retrain_every must be an integer >= 1, got 0."),
        (["--seeds", "500"], "seeds must be at most 20, got 500: each seed trains a network per fold."),
        (["--workers", "4096"], "workers must be at most"),
        (["--cluster", "tcp://127.0.0.1:1"], "nothing listens at tcp://127.0.0.1:1 (connection refused); start one"),
        (["--config", "0123456789abcdef0123456789abcdef"], "cannot read the configuration of run 0123456789abcdef"),
        (["--config", "models:/nope@champion"], "cannot find model models:/nope@champion"),
    ],
)
def test_backtest_bad_input_is_one_sentence_and_no_run(tracking, synthetic_data, tmp_path, args, words):
    result = runner.invoke(app, ["backtest", "--data-dir", str(synthetic_data), "--start", "2021-06-01",
                                 "--end", "2021-09-30", *args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, result.stderr
    # No run: the command never opened the store (making one costs seconds), or left it without runs.
    assert not (tmp_path / "mlflow.db").exists() or all_runs(MlflowClient()) == []


@pytest.mark.slow
def test_backtest_of_a_run_and_the_experiment_report(tracking, synthetic_data, tmp_path):
    from cryptolstm.tracking import tracked_train
    from cryptolstm.tracking.source import resolve

    cfg = tiny_config(synthetic_data, merge_date="2021-01-01", neurons=3, window_len=5, seed=11, head="gaussian")
    run_id, trained = tracked_train(cfg, load_market(synthetic_data, cfg.merge_date))
    resolved, tags = resolve(run_id, {})
    # An end date left open is logged as the data's last day (no blank param), so it comes back as that day;
    # a backtest sets every fold's end date itself.
    last = str(load_market(synthetic_data, cfg.merge_date).frame.index[-1].date())
    assert resolved == cfg.replace(end_date=last) and tags["backtest.source_run"] == run_id
    assert resolve(f"runs:/{run_id}/model", {"coin": "ETH"})[0] == cfg.replace(coin="ETH", end_date=last)
    result = runner.invoke(app, ["backtest", "--config", run_id, "--start", "2021-10-01", "--end", "2021-11-30",
                                 "--fold-months", "1", "--seeds", "1", "--arima", "false", "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "report.md"
    result = runner.invoke(app, ["report", "--experiment", "cryptolstm-btc", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    backtest = next(r for r in all_runs(MlflowClient()) if r.data.tags.get("cryptolstm.entry") == "backtest")
    assert backtest.data.params["config.window_len"] == "5" and backtest.data.params["config.neurons"] == "3"
    ratio = backtest.data.metrics["lstm.mean/usd/mae_ratio"]
    assert f"{trained.metrics['val/mae_ratio']:.4f}" in text and f"{ratio:.4f} ([`{backtest.info.run_id[:8]}`]" in text
    assert f"/runs/{run_id})" in text and "window_len=5" in text
    assert "2 x 1m, 2021-10-01..2021-11-30, 1 seeds" in text
    sections = {part.split("\n", 1)[0]: part for part in text.split("\n## ")[1:]}
    best = sections["Best configurations by validation MAE ratio to persistence (1 scored runs), ranked only among "
                    "runs scored on the same days"]
    assert best.count("\n| [`") == 1 and best.count("\n### Validated on ") == 1  # one group, its days named
    assert sections["Walk-forward backtests (1)"].count("\n| [`") == 1
    missing = runner.invoke(app, ["report", "--experiment", "nope"])
    assert missing.exit_code == 2 and "there is no MLflow experiment named 'nope'" in missing.stderr


def _logger_levels(names: tuple[str, ...]) -> list[int]:
    """In a worker process: the effective levels of the loggers ``names``."""
    return [logging.getLogger(n).getEffectiveLevel() for n in names]


@pytest.mark.slow
def test_a_backtest_s_worker_processes_log_as_quietly_as_the_command():
    # A worker fits many networks; TensorFlow's Python logger then warns about retracing on every
    # few predictions, which reached the terminal of a `--workers 2 --quiet` backtest.
    names = ("tensorflow", "absl")
    with local_processes(2) as pool:
        levels = [pool.submit(_logger_levels, names).result() for _ in range(2)]
    assert levels == [[logging.ERROR, logging.ERROR]] * 2
