"""Interval baselines: quantile grid and ordering, hand-worked empirical and Gaussian quantiles,
a GARCH(1,1)-t fitted on training days only and filtered one step ahead without look-ahead,
the seed protocol's reference close, one-sentence errors."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cryptolstm.backtest.folds import Fold, fold_splits
from cryptolstm.config import RunConfig
from cryptolstm.data import load_market
from cryptolstm.errors import DataError
from cryptolstm.intervals import LEVELS
from cryptolstm.models.interval_baselines import Empirical, Garch, RollingGaussian, interval_baselines
from cryptolstm.windowing import next_day_windows, target_windows

COINS = ("BTC", "ETH")
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def btc(shared_data):
    """Real BTC days 2019..2022 (merged frame) and 2022's honest next-day samples."""
    frame = load_market(shared_data, "2019-01-01", "2022-12-31").frame
    samples = next_day_windows(frame, "BTC", COINS, 5)
    in_2022 = np.flatnonzero(pd.DatetimeIndex(samples.dates) >= pd.Timestamp("2022-01-01"))
    return frame, samples.take(in_2022)


@pytest.fixture(scope="module")
def garch_2022(btc):
    frame, samples = btc
    closes = frame["BTC_close"]
    return Garch().fit(None, closes.loc[: pd.Timestamp(samples.dates[0]) - DAY])


def _series_frame(closes) -> pd.DataFrame:
    index = pd.date_range("2021-01-01", periods=len(closes), freq="D", name="date")
    return pd.DataFrame({"BTC_close": closes, "BTC_volume": 1.0, "ETH_close": 1.0, "ETH_volume": 1.0}, index=index)


def _made_up(days: int = 120, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return _series_frame(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, days))))


def test_every_interval_baseline_gives_ordered_quantiles_on_the_grid(btc, garch_2022):
    frame, samples = btc
    closes = frame["BTC_close"]
    assert {name: make().name for name, make in interval_baselines().items()} == {
        "garch": "garch", "empirical": "empirical", "rolling_gaussian": "rolling_gaussian"}
    for model in (Empirical().fit(None, closes), RollingGaussian().fit(None, closes), garch_2022):
        forecast = model.predict(samples, closes)
        q = forecast.quantiles
        assert q.shape == (len(samples), 1, len(LEVELS)) and forecast.levels == LEVELS
        assert np.all(np.diff(q, axis=2) > 0), model.name
        np.testing.assert_array_equal(forecast.point(), q[:, 0, LEVELS.index(0.5)])
        np.testing.assert_array_equal(forecast.reference, samples.ref_close)
        # Daily BTC: an 80 % interval a few percent wide, covering most of 2022's days.
        width = q[:, 0, LEVELS.index(0.9)] - q[:, 0, LEVELS.index(0.1)]
        assert 0.01 < np.median(width) < 0.15, model.name
        inside = (samples.y[:, 0] >= q[:, 0, LEVELS.index(0.1)]) & (samples.y[:, 0] <= q[:, 0, LEVELS.index(0.9)])
        assert 0.6 < inside.mean() < 0.95, model.name


def test_empirical_quantiles_are_those_of_the_returns_before_the_target_day():
    frame = _made_up(100)
    closes = frame["BTC_close"].to_numpy()
    samples = next_day_windows(frame, "BTC", COINS, 2)  # target day k for k = 2..99
    returns = closes[1:] / closes[:-1] - 1.0  # returns[j]: the return of day j + 1
    model = Empirical(n_days=40)
    # Target day 80: the 40 returns of days 40..79. Target day 35: all 34 returns of days 1..34.
    picked = samples.take(np.array([78, 33]))
    assert list(pd.DatetimeIndex(picked.dates)) == [frame.index[80], frame.index[35]]
    forecast = model.predict(picked, frame["BTC_close"])
    np.testing.assert_allclose(forecast.quantiles[0, 0], np.quantile(returns[39:79], LEVELS), rtol=0, atol=1e-15)
    np.testing.assert_allclose(forecast.quantiles[1, 0], np.quantile(returns[0:34], LEVELS), rtol=0, atol=1e-15)
    # Day 80's own return, and every later one, has no say: change them all.
    later = frame.copy()
    later.iloc[80:, 0] *= np.linspace(0.5, 3.0, 20)
    np.testing.assert_array_equal(model.predict(picked, later["BTC_close"]).quantiles, forecast.quantiles)
    with pytest.raises(DataError, match=r"needs 30 daily returns before each target day but 2021-01-29 has 27; "):
        model.predict(samples.take(slice(26, 40)), frame["BTC_close"])


def test_rolling_gaussian_scale_is_the_standard_deviation_of_the_last_returns():
    frame = _made_up(60)
    closes = frame["BTC_close"].to_numpy()
    samples = next_day_windows(frame, "BTC", COINS, 3).take(np.array([47]))  # target day 50
    returns = closes[1:] / closes[:-1] - 1.0
    window = returns[19:49]  # the returns of days 20..49
    scale = math.sqrt(sum((r - sum(window) / 30) ** 2 for r in window) / 29)
    q = RollingGaussian().predict(samples, frame["BTC_close"]).quantiles[0, 0]
    np.testing.assert_allclose(q, scale * stats.norm.ppf(LEVELS), rtol=1e-12, atol=1e-15)
    assert q[LEVELS.index(0.5)] == pytest.approx(0.0, abs=1e-15)  # persistence in the middle


def test_quantiles_under_the_seed_protocol_are_relative_to_the_first_close(btc, garch_2022):
    frame, _ = btc
    honest = next_day_windows(frame, "BTC", COINS, 20).take(slice(-30, None))
    seed = target_windows(frame, "BTC", COINS, 20, "first").take(slice(-30, None))
    np.testing.assert_array_equal(honest.dates, seed.dates)
    assert not np.allclose(seed.ref_close, seed.last_close())
    closes = frame["BTC_close"]
    for model in (Empirical(), RollingGaussian(), garch_2022):
        on_last, on_first = model.predict(honest, closes), model.predict(seed, closes)
        ratio = (seed.last_close() / seed.ref_close)[:, None, None]
        np.testing.assert_allclose(on_first.quantiles, ratio * (1.0 + on_last.quantiles) - 1.0, rtol=1e-12)
        # The same USD quantiles whichever close the returns are relative to.
        usd = lambda f: f.reference[:, None, None] * (1.0 + f.quantiles)  # noqa: E731
        np.testing.assert_allclose(usd(on_first), usd(on_last), rtol=1e-12)
        np.testing.assert_allclose(on_first.close(), on_last.close(), rtol=1e-12)


def test_arch_student_t_is_standardised_to_unit_variance():
    from arch.univariate import StudentsT

    nu = 4.5
    z = StudentsT().ppf(np.asarray(LEVELS), [nu])
    np.testing.assert_allclose(z, stats.t.ppf(LEVELS, nu) * math.sqrt((nu - 2) / nu), rtol=1e-12)
    assert stats.t(nu, scale=math.sqrt((nu - 2) / nu)).var() == pytest.approx(1.0)


def test_garch_is_fitted_per_fold_on_the_days_before_it(shared_data):
    frame = load_market(shared_data, "2019-01-01", "2022-06-30").frame
    fold = Fold(0, pd.Timestamp("2022-04-01"), pd.Timestamp("2022-06-30"))
    cfg = RunConfig(window_len=5)

    def fitted(prices: pd.DataFrame) -> dict[str, float]:
        splits = fold_splits(prices, cfg, fold)
        return Garch().fit(splits, prices["BTC_close"].loc[: fold.first - DAY]).params

    params = fitted(frame)
    assert set(params) == {"mu", "omega", "alpha", "beta", "nu"}
    assert params["omega"] > 0 and 0 < params["alpha"] and 0 < params["beta"] and params["alpha"] + params["beta"] <= 1
    assert 2 < params["nu"] < 10  # daily crypto returns have fat tails
    changed = frame.copy()
    changed.loc[fold.first :, "BTC_close"] *= np.geomspace(0.3, 4.0, len(changed.loc[fold.first :]))
    assert fitted(changed) == params  # bit-identical
    later = Fold(1, pd.Timestamp("2022-05-01"), pd.Timestamp("2022-06-30"))
    assert Garch().fit(None, frame["BTC_close"].loc[: later.first - DAY]).params != params


def test_garch_forecast_of_a_day_uses_only_the_returns_before_it(btc, garch_2022):
    frame, samples = btc
    day = 150  # change every price from samples.dates[day] on
    forecast = garch_2022.predict(samples, frame["BTC_close"])
    changed = frame.copy()
    after = changed.index >= pd.Timestamp(samples.dates[day])
    changed.loc[after, "BTC_close"] *= np.geomspace(0.5, 3.0, int(after.sum()))
    changed_samples = next_day_windows(changed, "BTC", COINS, 5).take(slice(-len(samples), None))
    again = garch_2022.predict(changed_samples, changed["BTC_close"])
    np.testing.assert_array_equal(again.quantiles[: day + 1], forecast.quantiles[: day + 1])
    assert not np.allclose(again.quantiles[day + 2 :], forecast.quantiles[day + 2 :])
    # Closes that start 40 days before the first target day: arch's backcast (up to 75 returns)
    # must still stop before it.
    short = frame["BTC_close"].loc[pd.Timestamp(samples.dates[0]) - pd.Timedelta(days=40) :]
    first_days = samples.take(slice(0, 60))
    base = garch_2022.predict(first_days, short)
    moved = short.copy()
    moved.loc[pd.Timestamp(samples.dates[0]) :] *= 2.0 + np.sin(np.arange(len(short) - 40))
    np.testing.assert_array_equal(garch_2022.predict(first_days, moved).quantiles[:1], base.quantiles[:1])
    # The same forecasts by hand: the GARCH recursion from arch's backcast, one step ahead.
    p = garch_2022.params
    closes = frame["BTC_close"]
    y = 100.0 * np.diff(np.log(closes.to_numpy()))
    first = closes.index.get_loc(pd.Timestamp(samples.dates[0]))  # returns before it: y[:first - 1]
    eps = y - p["mu"]
    w = 0.94 ** np.arange(75)
    sigma2 = np.sum(w / w.sum() * eps[:75] ** 2)  # arch's backcast, from returns before the first target
    assert first - 1 >= 75
    hand = np.empty(len(y))  # hand[t]: the variance of y[t] given y[:t]
    hand[0] = p["omega"] + (p["alpha"] + p["beta"]) * sigma2
    for t in range(1, len(y)):
        hand[t] = p["omega"] + p["alpha"] * eps[t - 1] ** 2 + p["beta"] * hand[t - 1]
    sigma = np.sqrt(hand[first - 1 : first - 1 + len(samples)])
    z = stats.t.ppf(LEVELS, p["nu"]) * math.sqrt((p["nu"] - 2) / p["nu"])
    np.testing.assert_allclose(forecast.quantiles[:, 0], np.expm1((p["mu"] + sigma[:, None] * z) / 100.0),
                               rtol=1e-9)


def test_too_few_closes_are_one_sentence():
    frame = _made_up(60)
    closes = frame["BTC_close"]
    with pytest.raises(DataError, match=r"^the GARCH baseline needs at least 101 training closes, got 60; "
                                        r"start the data earlier\.$"):
        Garch().fit(None, closes)
    samples = next_day_windows(frame, "BTC", COINS, 2)
    with pytest.raises(DataError, match=r"^the rolling Gaussian baseline needs 30 daily returns .* has 1; "):
        RollingGaussian().predict(samples, closes)
    with pytest.raises(DataError, match=r"^no close on 2021-01-09, the day before a target day\.$"):
        Empirical().predict(samples.take(slice(7, None)), closes.drop(closes.index[8]))
    with pytest.raises(DataError, match="must be fitted"):
        Garch().predict(samples, closes)
