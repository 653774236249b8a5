"""Walk-forward backtest: folds, leakage, refitting, baselines, metrics, DM test, MLflow, report."""

import math

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.backtest.folds import Fold, fold_splits, make_folds
from cryptolstm.backtest.runner import fit_and_forecast, run_backtest
from cryptolstm.backtest.tables import metrics_table, summary_markdown
from cryptolstm.metrics import direction, dm_test, in_sample_scale, score
from cryptolstm.models.lstm import Lstm
from cryptolstm.options import BacktestOptions
from cryptolstm.cli import app
from cryptolstm.config import RunConfig
from cryptolstm.data import Market, load_market
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.models.baselines import Arima, Drift, MovingAverage, Persistence
from cryptolstm.windowing import next_day_windows
from tests.conftest import all_runs, synthetic_frame, tiny_config

runner = CliRunner()


# --- folds --------------------------------------------------------------------------------


def test_default_folds_are_twenty_quarters_that_tile_the_range():
    folds = make_folds("2019-01-01", "2023-12-31", 3)
    assert len(folds) == 20
    assert (folds[0].first, folds[0].last) == (pd.Timestamp("2019-01-01"), pd.Timestamp("2019-03-31"))
    assert folds[-1].last == pd.Timestamp("2023-12-31")
    days = [d for f in folds for d in pd.date_range(f.first, f.last)]
    assert len(days) == len(set(days)) == len(pd.date_range("2019-01-01", "2023-12-31"))  # no day twice, none missed


def test_a_short_last_fold_ends_at_end():
    folds = make_folds("2020-01-15", "2020-05-01", 2)
    assert [(f.first.date().isoformat(), f.last.date().isoformat()) for f in folds] == [
        ("2020-01-15", "2020-03-14"), ("2020-03-15", "2020-05-01")]


@pytest.mark.parametrize("args, words", [(("2020-01-01", "2019-01-01", 3), "must not be before start"),
                                         (("2020-01-01", "2021-01-01", 0), "fold_months must be an integer >= 1"),
                                         (("2020-13-01", "2021-01-01", 3), "start must be a date")])
def test_impossible_folds_are_one_sentence(args, words):
    with pytest.raises(ConfigError, match=words):
        make_folds(*args)


def test_fold_samples_train_only_on_days_before_the_fold():
    frame = synthetic_frame(300)
    cfg = RunConfig(window_len=5)
    for fold in make_folds("2020-07-01", "2020-10-26", 1):
        splits = fold_splits(frame, cfg, fold)
        assert splits.train.dates.max() < splits.val.dates.min()
        assert pd.Timestamp(splits.val.dates.max()) < fold.first
        test = pd.DatetimeIndex(splits.test.dates)
        assert test.min() == fold.first and test.max() == fold.last
        # Change every price from the fold's first day on: training and validation do not move.
        changed = frame.copy()
        changed.loc[fold.first:] *= 3.0
        again = fold_splits(changed, cfg, fold)
        for name in ("train", "val"):
            for key in ("X", "y", "ref_close", "target_close"):
                np.testing.assert_array_equal(getattr(getattr(splits, name), key), getattr(getattr(again, name), key))


def test_the_validation_tail_has_the_configs_share_of_the_days_before_the_fold():
    frame = synthetic_frame(400)
    fold = Fold(0, pd.Timestamp("2020-11-01"), pd.Timestamp("2020-11-30"))
    splits = fold_splits(frame, RunConfig(window_len=7, train_frac=0.7, val_frac=0.15), fold)
    before = len(splits.train) + len(splits.val)
    assert before == (pd.Timestamp("2020-11-01") - pd.Timestamp("2020-01-01")).days - 7
    assert len(splits.val) == before - round(before * 0.7 / 0.85)


def test_a_fold_without_history_is_one_sentence():
    frame = synthetic_frame(60)
    with pytest.raises(DataError, match="needs at least one of each"):
        fold_splits(frame, RunConfig(window_len=7), Fold(0, pd.Timestamp("2020-01-09"), pd.Timestamp("2020-01-31")))


# --- baselines on a made-up series: exact values --------------------------------------------


def _series_market(closes: list[float]) -> tuple[pd.Series, pd.DataFrame]:
    index = pd.date_range("2021-01-01", periods=len(closes), freq="D", name="date")
    frame = pd.DataFrame({"BTC_close": closes, "BTC_volume": 1.0, "ETH_close": 1.0, "ETH_volume": 1.0}, index=index)
    return frame["BTC_close"], frame


def test_baselines_exact_values_on_a_small_series():
    closes, frame = _series_market([100.0, 110.0, 121.0, 133.1, 146.41, 150.0, 120.0, 90.0])
    samples = next_day_windows(frame, "BTC", ("BTC", "ETH"), 2)  # targets days 2..7
    history = closes.iloc[:5]  # fit on 100 .. 146.41: every daily step is +10%
    usd = lambda model: model.predict(samples, closes).close()  # noqa: E731
    np.testing.assert_allclose(usd(Persistence().fit()), [110.0, 121.0, 133.1, 146.41, 150.0, 120.0])
    drift = Drift().fit(None, history)
    assert drift.params["mu"] == pytest.approx(math.log(1.1))
    np.testing.assert_allclose(usd(drift), [121.0, 133.1, 146.41, 161.051, 165.0, 132.0])
    # Mean of the three closes before each target day; day 2 has only two before it.
    ma = MovingAverage(3)
    with pytest.raises(DataError, match="needs 3 days"):
        ma.predict(samples, closes)
    later = samples.take(slice(1, None))
    np.testing.assert_allclose(ma.predict(later, closes).close(),
                               [110.333333333, 121.366666667, 133.503333333, 143.17, 138.803333333], rtol=1e-9)


def test_arima_is_fitted_on_the_training_days_and_forecasts_one_step_ahead():
    rng = np.random.default_rng(3)
    log_close = np.cumsum(0.001 + 0.02 * rng.standard_normal(400)) + np.log(1000.0)
    closes, frame = _series_market(list(np.exp(log_close)))
    samples = next_day_windows(frame, "BTC", ("BTC", "ETH"), 3).take(slice(300, None))
    first = pd.Timestamp(samples.dates[0])
    model = Arima().fit(None, closes.loc[: first - pd.Timedelta(days=1)])
    assert set(model.params) == {"drift", "ar.L1", "ma.L1", "sigma2"}
    forecast = model.predict(samples, closes).close()
    # Prices after a target day cannot change its forecast.
    changed = closes.copy()
    changed.iloc[-10:] *= 5.0
    again = model.predict(samples, changed).close()
    np.testing.assert_allclose(forecast[:-10], again[:-10], rtol=1e-12)
    # One step ahead of a near random walk: close to the last close, much closer than the spread of prices.
    assert np.mean(np.abs(forecast / samples.last_close() - 1.0)) < 0.01
    refit = Arima().fit(None, closes.loc[: first + pd.Timedelta(days=30)])
    assert refit.params != model.params  # fitted on other days, other parameters


# --- metrics --------------------------------------------------------------------------------


def _t3_cdf(t: float) -> float:
    """Student's t CDF with 3 degrees of freedom, in closed form."""
    return 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi


def test_dm_test_against_a_value_worked_by_hand():
    # d = |e_a| - |e_b| = [0, 1, 2, 3]: mean 1.5, gamma0 = (2.25 + .25 + .25 + 2.25) / 4 = 1.25,
    # DM = 1.5 / sqrt(1.25 / 4) = 2.683; HLN factor sqrt((4 + 1 - 2) / 4) = sqrt(0.75) -> 1.5 * sqrt(2.4).
    statistic, p = dm_test(np.array([1.0, 2.0, -3.0, 4.0]), np.array([1.0, -1.0, 1.0, 1.0]))
    assert statistic == pytest.approx(1.5 * math.sqrt(2.4), rel=1e-12)
    assert p == pytest.approx(2 * (1 - _t3_cdf(1.5 * math.sqrt(2.4))), rel=1e-9)
    assert p == pytest.approx(0.1029, abs=5e-4)
    # Swapping the forecasts flips the sign, not the p-value; squared loss is power 2.
    assert dm_test(np.array([1.0, -1.0, 1.0, 1.0]), np.array([1.0, 2.0, -3.0, 4.0]))[0] == pytest.approx(-statistic)
    # power 2, h = 2: d = [0, 3, 8, 15], mean 6.5; gammas (42.25 + 12.25 + 2.25 + 72.25) / 4 = 32.25 and ((-6.5)(-3.5) + (-3.5)(1.5) + (1.5)(8.5)) / 4 = 7.5625.
    statistic2, _ = dm_test(np.array([1.0, 2.0, -3.0, 4.0]), np.array([1.0, -1.0, 1.0, 1.0]), h=2, power=2)
    variance = (32.25 + 2 * 7.5625) / 4
    assert statistic2 == pytest.approx(6.5 / math.sqrt(variance) * math.sqrt((4 + 1 - 4 + 2 / 4) / 4), rel=1e-12)


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
    for name in ("fold_months", "seeds", "workers", "ma_window", "max_epochs"):
        with pytest.raises(ConfigError, match=f"{name} must be an integer >= 1"):
            BacktestOptions(**{name: 0})


# --- the backtest itself (tiny LSTMs) --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_backtest(shared_data):
    cfg = tiny_config(shared_data, merge_date="2022-06-01", epochs=2, patience=1)
    market = load_market(shared_data, cfg.merge_date, "2023-06-30")
    options = BacktestOptions(start="2023-02-01", end="2023-06-30", fold_months=2, seeds=2)
    return cfg, market, options, run_backtest(cfg, market, options)


@pytest.mark.slow
def test_every_fold_is_refitted_on_its_own_past(tiny_backtest):
    cfg, market, options, result = tiny_backtest
    assert [len(f.dates) for f in result.folds] == [59, 61, 30]
    assert result.config.protocol == "honest"
    closes = market.frame["BTC_close"]
    for fold in result.folds:
        history = closes.loc[: fold.fold.first - pd.Timedelta(days=1)]
        assert fold.fit["drift.mu"] == pytest.approx(np.mean(np.diff(np.log(history.to_numpy()))))
        assert fold.fit["arima.ar.L1"] == pytest.approx(Arima().fit(None, history).params["ar.L1"])
        assert {"lstm.seed7", "lstm.seed8"} <= set(fold.forecasts)
        assert all(fold.fit[f"lstm.seed{s}.epochs_run"] >= 1 for s in (7, 8))
        np.testing.assert_array_equal(fold.actual, closes.loc[fold.fold.first: fold.fold.last].to_numpy())
    mus = [f.fit["drift.mu"] for f in result.folds]
    assert len(set(mus)) == len(mus)
    assert [f.n_train + f.n_val for f in result.folds] == sorted(f.n_train + f.n_val for f in result.folds)
    # Two seeds are two models.
    assert not np.allclose(result.folds[0].forecasts["lstm.seed7"].close(), result.folds[0].forecasts["lstm.seed8"].close())
    # Every forecaster answers the same target days through the same interface.
    assert all(np.array_equal(f.dates, result.folds[0].dates) for f in result.folds[0].forecasts.values())


@pytest.mark.slow
def test_one_lstm_fit_sees_nothing_after_its_fold(tiny_backtest):
    from functools import partial

    from cryptolstm.backtest.runner import backtest_config

    cfg, market, options, result = tiny_backtest
    fold = result.folds[0].fold
    changed = market.frame.copy()
    changed.loc[fold.last + pd.Timedelta(days=1):] *= 10.0
    fold_cfg = backtest_config(cfg, options)
    again, _ = fit_and_forecast(partial(Lstm, fold_cfg.replace(seed=7)), fold_cfg, changed, fold)
    np.testing.assert_allclose(again.close(), result.folds[0].forecasts["lstm.seed7"].close(), rtol=1e-6)


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
    assert rows["days"].iloc[0] == 150
    # The pooled MAE is the day-weighted mean of the folds' MAEs.
    folds = table.loc[table["fold"] != "all"].set_index("forecaster").loc["drift"]
    assert rows.loc["drift", "usd/mae"] == pytest.approx(np.average(folds["usd/mae"], weights=folds["days"]))
    markdown = summary_markdown(table, "BTC")
    assert markdown.count("\n| ") == 5 and "| all | 2023-02-01..2023-06-30 | 150 |" in markdown


@pytest.mark.slow
def test_workers_2_gives_the_same_forecasts_in_two_processes(tiny_backtest):
    cfg, market, options, result = tiny_backtest
    from dataclasses import replace

    parallel = run_backtest(cfg, market, replace(options, workers=2, arima=False))
    for a, b in zip(result.folds, parallel.folds):
        for label in ("lstm.seed7", "lstm.seed8"):
            np.testing.assert_allclose(a.forecasts[label].close(), b.forecasts[label].close(), rtol=1e-4)
        assert "arima" not in b.forecasts


# --- MLflow: one parent, a child per fold; the CLI; the report ----------------------------------


@pytest.mark.slow
def test_backtest_command_logs_a_parent_and_a_child_per_fold(tracking, shared_data, tmp_path):
    base = tmp_path / "tiny.yaml"
    base.write_text("merge_date: '2022-06-01'\nlayers: 1\nneurons: 4\nepochs: 2\npatience: 1\nbatch_size: 64\nseed: 3\n"
                    "head: gaussian\n")
    result = runner.invoke(app, ["backtest", "--config", str(base), "--coin", "ETH", "--data-dir", str(shared_data),
                                 "--start", "2023-10-01", "--end", "2023-12-31", "--fold-months", "1",
                                 "--seeds", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    runs = all_runs(client)
    parent = next(r for r in runs if r.data.tags.get("cryptolstm.entry") == "backtest")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 4 and len(children) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(c.data.params["fold.first"] for c in children) == ["2023-10-01", "2023-11-01", "2023-12-01"]
    assert parent.data.params["config.coin"] == "ETH" and parent.data.params["backtest.seeds"] == "2"
    assert parent.data.tags["backtest.source"] == str(base)
    m = parent.data.metrics
    for key in ("lstm.mean/usd/mae_ratio", "lstm.std/usd/mae_ratio", "lstm.seed3/usd/dm_p", "lstm.seed4/return/mase",
                "drift/usd/rmse", "arima/usd/mape", "moving_average/return/mae", "lstm.mean/direction_low", "lstm.mean/direction_accuracy"):
        assert key in m, key
    child = children[0].data
    assert {"drift.mu", "arima.ar.L1", "fold.n_train"} <= set(child.params)
    assert "lstm.seed3.best_epoch" in child.metrics and "persistence/usd/mae" in child.metrics
    artifacts = {a.path for d in ("backtest", "plots") for a in client.list_artifacts(parent.info.run_id, d)}
    assert {"backtest/metrics.csv", "backtest/summary.md", "backtest/predictions.csv", "plots/mae_ratio_per_fold.png",
            "plots/forecasts_per_fold.png", "plots/error_distribution.png"} <= artifacts
    predictions = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{parent.info.run_id}/backtest/predictions.csv"))
    assert len(predictions) == 92 and {"lstm.seed3", "lstm.seed4", "persistence", "arima"} <= set(predictions.columns)
    assert "| all | 2023-10-01..2023-12-31 | 92 |" in result.output
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


@pytest.mark.parametrize(
    "args, words",
    [
        (["--coin", "DOGE"], "coin must be one of BTC, ETH; got 'DOGE'."),
        (["--end", "2024-06-30"], "the backtest ends 2024-06-30 but the data ends 2023-12-31"),
        (["--start", "2015-01-01"], "a fold needs earlier days to train on"),
        (["--fold-months", "0"], "fold_months must be an integer >= 1, got 0."),
        (["--seeds", "two"], "seeds must be an integer, got 'two'."),
        (["--start", "04/01/2018"], "start must be a date written YYYY-MM-DD, got '04/01/2018'."),
        (["--config", "0123456789abcdef0123456789abcdef"], "cannot read the configuration of run 0123456789abcdef"),
        (["--config", "models:/nope@champion"], "cannot find model models:/nope@champion"),
    ],
)
def test_backtest_bad_input_is_one_sentence_and_no_run(tracking, shared_data, args, words):
    result = runner.invoke(app, ["backtest", "--data-dir", str(shared_data), *args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, result.stderr
    assert [r for r in all_runs(MlflowClient())] == []


@pytest.mark.slow
def test_backtest_of_a_run_and_the_experiment_report(tracking, shared_data, tmp_path):
    from cryptolstm.tracking import tracked_train
    from cryptolstm.tracking.source import resolve

    cfg = tiny_config(shared_data, merge_date="2023-01-01", neurons=3, window_len=5, seed=11)
    run_id, trained = tracked_train(cfg, load_market(shared_data, cfg.merge_date))
    resolved, tags = resolve(run_id, {})
    assert resolved == cfg and tags["backtest.source_run"] == run_id
    assert resolve(f"runs:/{run_id}/model", {"coin": "ETH"})[0] == cfg.replace(coin="ETH")
    result = runner.invoke(app, ["backtest", "--config", run_id, "--start", "2023-11-01", "--end", "2023-12-31",
                                 "--fold-months", "1", "--seeds", "1", "--arima", "false", "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "report.md"
    result = runner.invoke(app, ["report", "--experiment", "cryptolstm-btc", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    backtest = next(r for r in all_runs(MlflowClient()) if r.data.tags.get("cryptolstm.entry") == "backtest")
    ratio = backtest.data.metrics["lstm.mean/usd/mae_ratio"]
    assert f"{trained.metrics['val/mae_ratio']:.4f}" in text and f"{ratio:.4f} ([`{backtest.info.run_id[:8]}`]" in text
    assert f"/runs/{run_id})" in text and "window_len=5" in text
    assert "2 x 1m, 2023-11-01..2023-12-31, 1 seeds" in text and text.count("\n| [`") == 2
    missing = runner.invoke(app, ["report", "--experiment", "nope"])
    assert missing.exit_code == 2 and "there is no MLflow experiment named 'nope'" in missing.stderr
