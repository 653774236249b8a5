"""Interval baselines: quantile grid and ordering, hand-worked empirical and Gaussian quantiles,
a GARCH(1,1)-t fitted on training days only and filtered one step ahead without look-ahead,
the seed protocol's reference close, one-sentence errors.

The quick tests use synthetic prices (themselves a GARCH(1,1) with t(5) shocks); what is claimed
about real BTC (its interval widths, coverage and fat tails) is checked on the real prices, skipped
without them."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cryptolstm.config import RunConfig
from cryptolstm.data import load_market
from cryptolstm.errors import DataError
from cryptolstm.forecasting import fresh, historical_forecasts
from cryptolstm.garch import fit_garch
from cryptolstm.intervals import LEVELS
from cryptolstm.models.base import History
from cryptolstm.models.har import Har
from cryptolstm.models.interval_baselines import INTERVAL, Combination, Empirical, Garch, RollingGaussian
from cryptolstm.splits import Period, folds
from cryptolstm.windowing import samples as samples_of

DAY = pd.Timedelta(days=1)


def every_day(frame: pd.DataFrame) -> Period:
    return Period("all", frame.index[0], frame.index[-1])


def windows(frame: pd.DataFrame, window_len: int, protocol: str = "honest"):
    """The next-day samples of every day of ``frame`` (BTC)."""
    return samples_of(frame, RunConfig(window_len=window_len, protocol=protocol), every_day(frame))


def history(frame: pd.DataFrame) -> History:
    return History(frame, "BTC")


def _from(frame: pd.DataFrame, first: str):
    """``frame`` and its next-day samples (window 5) whose target day is on or after ``first``."""
    made = windows(frame, 5)
    return frame, made.take(np.flatnonzero(pd.DatetimeIndex(made.dates) >= pd.Timestamp(first)))


@pytest.fixture(scope="module")
def btc(synthetic_market):
    """700 synthetic days (2020-01-01..2021-11-30) and the next-day samples of 2021."""
    return _from(synthetic_market.frame, "2021-01-01")


@pytest.fixture(scope="module")
def real_btc(shared_data):
    """Real BTC days 2019..2022 and 2022's honest next-day samples."""
    return _from(load_market(shared_data, "2019-01-01", "2022-12-31").frame, "2022-01-01")


def _garch_before(data) -> Garch:
    frame, samples = data
    return Garch().fit(history(frame.loc[: pd.Timestamp(samples.dates[0]) - DAY]))


@pytest.fixture(scope="module")
def garch_2021(btc):
    return _garch_before(btc)


def _series_frame(closes) -> pd.DataFrame:
    index = pd.date_range("2021-01-01", periods=len(closes), freq="D", name="date")
    return pd.DataFrame({"BTC_close": closes, "BTC_volume": 1.0, "ETH_close": 1.0, "ETH_volume": 1.0}, index=index)


def _made_up(days: int = 120, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return _series_frame(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, days))))


def _check_quantiles(data, garch, width_range, coverage_range):
    """Every interval baseline's quantiles on ``data``: ordered, on the grid, centred on the median;
    the median 80 % width and the share of days inside the 80 % interval in the ranges given."""
    frame, samples = data
    for model in (Empirical().fit(), RollingGaussian().fit(), garch):
        forecast = model.predict(samples, history(frame))
        q = forecast.quantiles
        assert q.shape == (len(samples), 1, len(LEVELS)) and forecast.levels == LEVELS
        assert np.all(np.diff(q, axis=2) > 0), model.name
        np.testing.assert_array_equal(forecast.point(), q[:, 0, LEVELS.index(0.5)])
        np.testing.assert_array_equal(forecast.reference, samples.ref_close)
        width = q[:, 0, LEVELS.index(0.9)] - q[:, 0, LEVELS.index(0.1)]
        assert width_range[0] < np.median(width) < width_range[1], model.name
        inside = (samples.y[:, 0] >= q[:, 0, LEVELS.index(0.1)]) & (samples.y[:, 0] <= q[:, 0, LEVELS.index(0.9)])
        assert coverage_range[0] < inside.mean() < coverage_range[1], model.name


def test_every_interval_baseline_gives_ordered_quantiles_on_the_grid(btc, garch_2021):
    assert {Garch, Empirical, RollingGaussian, Combination} <= set(INTERVAL)
    assert len({b.name for b in INTERVAL}) == len(INTERVAL)  # one label each
    # The synthetic series' daily sd is about 2 %: an 80 % interval about 5 % wide, covering ~80 %.
    _check_quantiles(btc, garch_2021, (0.02, 0.1), (0.7, 0.9))


def test_on_real_btc_an_80_percent_interval_is_a_few_percent_wide_and_covers_most_days(real_btc):
    _check_quantiles(real_btc, _garch_before(real_btc), (0.01, 0.15), (0.6, 0.95))


def test_empirical_quantiles_are_those_of_the_returns_before_the_target_day():
    frame = _made_up(100)
    closes = frame["BTC_close"].to_numpy()
    samples = windows(frame, 2)  # target day k for k = 2..99
    returns = closes[1:] / closes[:-1] - 1.0  # returns[j]: the return of day j + 1
    model = Empirical(n_days=40)
    assert model.params == {"n_days": 40.0}
    # Target day 80: the 40 returns of days 40..79. Target day 35: all 34 returns of days 1..34.
    picked = samples.take(np.array([78, 33]))
    assert list(pd.DatetimeIndex(picked.dates)) == [frame.index[80], frame.index[35]]
    forecast = model.predict(picked, history(frame))
    np.testing.assert_allclose(forecast.quantiles[0, 0], np.quantile(returns[39:79], LEVELS), rtol=0, atol=1e-15)
    np.testing.assert_allclose(forecast.quantiles[1, 0], np.quantile(returns[0:34], LEVELS), rtol=0, atol=1e-15)
    # Day 80's own return, and every later one, has no say: change them all.
    later = frame.copy()
    later.iloc[80:, 0] *= np.linspace(0.5, 3.0, 20)
    np.testing.assert_array_equal(model.predict(picked, history(later)).quantiles, forecast.quantiles)
    with pytest.raises(DataError, match=r"needs 30 daily returns before each target day but 2021-01-29 has 27; "):
        model.predict(samples.take(slice(26, 40)), history(frame))


def test_rolling_gaussian_scale_is_the_standard_deviation_of_the_last_returns():
    frame = _made_up(60)
    closes = frame["BTC_close"].to_numpy()
    samples = windows(frame, 3).take(np.array([47]))  # target day 50
    assert samples.dates[0] == frame.index[50]
    returns = closes[1:] / closes[:-1] - 1.0
    window = returns[19:49]  # the returns of days 20..49
    scale = math.sqrt(sum((r - sum(window) / 30) ** 2 for r in window) / 29)
    q = RollingGaussian().predict(samples, history(frame)).quantiles[0, 0]
    np.testing.assert_allclose(q, scale * stats.norm.ppf(LEVELS), rtol=1e-12, atol=1e-15)
    assert q[LEVELS.index(0.5)] == pytest.approx(0.0, abs=1e-15)  # persistence in the middle


def test_quantiles_under_the_seed_protocol_are_relative_to_the_first_close(btc, garch_2021):
    frame, _ = btc
    honest = windows(frame, 20).take(slice(-30, None))
    seed = windows(frame, 20, protocol="seed").take(slice(-30, None))
    np.testing.assert_array_equal(honest.dates, seed.dates)
    assert not np.allclose(seed.ref_close, seed.last_close())
    for model in (Empirical(), RollingGaussian(), garch_2021):
        on_last, on_first = model.predict(honest, history(frame)), model.predict(seed, history(frame))
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


def _fold_fits(frame: pd.DataFrame, periods) -> list[dict[str, float]]:
    """GARCH's parameters as the forecasting loop fits them before each of ``periods``."""
    made = historical_forecasts({"garch": fresh(Garch)}, frame, RunConfig(window_len=5), periods)
    assert [f.period for f in made.fits] == [p.name for p in periods]
    return [f.params for f in made.fits]


def test_garch_is_fitted_per_fold_on_the_days_before_it(btc):
    frame, _ = btc
    periods = folds("2021-08-01", "2021-09-30", 1)
    params = _fold_fits(frame, periods)
    for fitted, period in zip(params, periods):  # what Garch fits on the closes before the fold, exactly
        assert fitted == fit_garch(frame["BTC_close"].loc[: period.before])[1]
    first = params[0]
    assert set(first) == {"mu", "omega", "alpha", "beta", "nu"}
    assert first["omega"] > 0 and 0 < first["alpha"] and 0 < first["beta"] and first["alpha"] + first["beta"] <= 1
    assert 2 < first["nu"] < 10  # the synthetic shocks are t(5)
    changed = frame.copy()
    later = changed.index >= periods[0].first
    changed.loc[later, "BTC_close"] *= np.geomspace(0.3, 4.0, int(later.sum()))
    again = _fold_fits(changed, periods)
    assert again[0] == first  # bit-identical: nothing of the fold's days reached the fit
    assert again[1] != params[1]  # the second fit reads the (changed) first fold's days
    assert params[1] != first


def test_garch_on_real_btc_has_fat_tails(real_btc):
    params = _garch_before(real_btc).params
    assert 2 < params["nu"] < 10  # daily crypto returns have fat tails
    assert 0.8 < params["alpha"] + params["beta"] <= 1 + 1e-9  # and persistent volatility (or integrated)


def test_garch_forecast_of_a_day_uses_only_the_returns_before_it(btc, garch_2021):
    frame, samples = btc
    day = 150  # change every price from samples.dates[day] on
    forecast = garch_2021.predict(samples, history(frame))
    changed = frame.copy()
    after = changed.index >= pd.Timestamp(samples.dates[day])
    changed.loc[after, "BTC_close"] *= np.geomspace(0.5, 3.0, int(after.sum()))
    changed_samples = windows(changed, 5).take(slice(-len(samples), None))
    np.testing.assert_array_equal(changed_samples.dates, samples.dates)
    again = garch_2021.predict(changed_samples, history(changed))
    np.testing.assert_array_equal(again.quantiles[: day + 1], forecast.quantiles[: day + 1])
    assert not np.allclose(again.quantiles[day + 2 :], forecast.quantiles[day + 2 :])
    # Closes that start 40 days before the first target day: arch's backcast (up to 75 returns)
    # must still stop before it.
    short = frame.loc[pd.Timestamp(samples.dates[0]) - pd.Timedelta(days=40) :]
    first_days = samples.take(slice(0, 60))
    base = garch_2021.predict(first_days, history(short))
    moved = short.copy()
    moved.loc[pd.Timestamp(samples.dates[0]) :, "BTC_close"] *= 2.0 + np.sin(np.arange(len(short) - 40))
    np.testing.assert_array_equal(garch_2021.predict(first_days, history(moved)).quantiles[:1], base.quantiles[:1])
    # The same forecasts by hand: the GARCH recursion from arch's backcast, one step ahead.
    p = garch_2021.params
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
    with pytest.raises(DataError, match=r"^GARCH\(1,1\) needs at least 101 training closes, got 60; "
                                        r"start the data earlier\.$"):
        Garch().fit(history(frame))
    samples = windows(frame, 2)
    with pytest.raises(DataError, match=r"^the rolling Gaussian baseline needs 30 daily returns .* has 1; "):
        RollingGaussian().predict(samples, history(frame))
    with pytest.raises(DataError, match=r"^no close on 2021-01-09, the day before a target day\.$"):
        Empirical().predict(samples.take(slice(7, None)), history(frame.drop(frame.index[8])))
    with pytest.raises(DataError, match=r"^the GARCH baseline must be fitted before it predicts\.$"):
        Garch().predict(samples, history(frame))
    with pytest.raises(DataError, match=r"^the empirical baseline needs n_days >= 2 returns, got 1\.$"):
        Empirical(n_days=1)


def test_the_combination_is_the_mean_of_garch_and_har_quantiles_at_every_level(btc):
    """Vincentization: at each level the combination's quantile is the mean of GARCH's and HAR's,
    each fitted on the same days; it is ordered, its median the point forecast, and its width lies
    between theirs."""
    frame, samples = btc
    before = history(frame.loc[: pd.Timestamp(samples.dates[0]) - DAY])
    parts = [Garch().fit(before), Har().fit(before)]
    combination = Combination().fit(before)
    assert set(combination.params) == {f"{p.name}.{k}" for p in parts for k in p.params}
    made = combination.predict(samples, history(frame))
    garch, har = (p.predict(samples, history(frame)) for p in parts)
    np.testing.assert_allclose(made.quantiles, (garch.quantiles + har.quantiles) / 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(made.point(), made.quantiles[:, 0, LEVELS.index(0.5)], rtol=0, atol=1e-12)
    assert np.all(np.diff(made.quantiles, axis=2) > 0)
    widths = [f.quantiles[:, 0, -1] - f.quantiles[:, 0, 0] for f in (garch, made, har)]
    assert np.all(np.minimum(widths[0], widths[2]) <= widths[1] + 1e-12)
    assert np.all(widths[1] <= np.maximum(widths[0], widths[2]) + 1e-12)
