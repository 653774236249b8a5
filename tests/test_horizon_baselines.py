"""Every baseline forecasts horizons 1..H from the same origins: shapes, hand-worked values per
horizon, and no look-ahead for k > 1 (the forecast of day t + k uses closes up to t only).

The quick tests use synthetic prices (a GARCH(1,1)-t random walk); the same checks run on the real
BTC prices of 2019..2022 as slow tests, skipped without them."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cryptolstm.config import RunConfig
from cryptolstm.data import load_market
from cryptolstm.errors import DataError
from cryptolstm.forecasting import fresh, historical_forecasts
from cryptolstm.garch import percent_log_returns
from cryptolstm.intervals import LEVELS, level_index
from cryptolstm.models import interval_baselines
from cryptolstm.models.base import History
from cryptolstm.models.baselines import Arima, Drift, MovingAverage, Persistence
from cryptolstm.models.interval_baselines import Empirical, Garch, RollingGaussian
from cryptolstm.splits import Period, folds
from cryptolstm.windowing import samples as samples_of

DAY = pd.Timedelta(days=1)
H = 3


def every_day(frame: pd.DataFrame) -> Period:
    return Period("all", frame.index[0], frame.index[-1])


def windows(frame: pd.DataFrame, window_len: int, horizon: int = H, protocol: str = "honest"):
    """The samples of every day of ``frame`` (BTC)."""
    return samples_of(frame, RunConfig(window_len=window_len, horizon=horizon, protocol=protocol), every_day(frame))


def history(frame: pd.DataFrame) -> History:
    return History(frame, "BTC")


@pytest.fixture(scope="module", params=["synthetic", pytest.param("real", marks=pytest.mark.slow)])
def btc(request):
    """Daily prices (synthetic: 700 days of 2020-2021; real: BTC 2019..2022) and the honest samples
    (H = 3) of the last 60 origins."""
    if request.param == "synthetic":
        frame = request.getfixturevalue("synthetic_market").frame
    else:
        frame = load_market(request.getfixturevalue("shared_data"), "2019-01-01", "2022-12-31").frame
    return frame, windows(frame, 5).take(slice(-60, None))


@pytest.fixture(scope="module")
def fitted(btc):
    """Every baseline fitted on the year of closes before the first target day (a year keeps ARIMA's fit short)."""
    frame, samples = btc
    first = pd.Timestamp(samples.dates[0])
    past = history(frame.loc[first - 365 * DAY : first - DAY])
    models = (Persistence(), Drift(), MovingAverage(7), Arima(), Empirical(), RollingGaussian(), Garch())
    return [model.fit(past) for model in models]


def _series_frame(closes) -> pd.DataFrame:
    index = pd.date_range("2021-01-01", periods=len(closes), freq="D", name="date")
    return pd.DataFrame({"BTC_close": closes, "BTC_volume": 1.0, "ETH_close": 1.0, "ETH_volume": 1.0}, index=index)


def _made_up(days: int, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return _series_frame(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, days))))


def _after_last_origin(frame: pd.DataFrame, samples, inclusive: bool = False) -> pd.DataFrame:
    """``frame`` with every BTC close after the last sample's origin (from it if ``inclusive``) changed."""
    origin = pd.Timestamp(samples.origins[-1])
    changed = frame.copy()
    later = changed.index >= origin if inclusive else changed.index > origin
    changed.loc[later, "BTC_close"] *= np.geomspace(0.4, 3.0, int(later.sum()))
    return changed


def test_every_baseline_forecasts_every_horizon(btc, fitted):
    frame, samples = btc
    assert samples.horizon == H and len(samples) == 60
    for model in fitted:
        forecast = model.predict(samples, history(frame))
        assert forecast.returns.shape == (len(samples), H), model.name
        np.testing.assert_array_equal(forecast.dates, samples.dates)
        np.testing.assert_array_equal(forecast.reference, samples.ref_close)
        assert np.all(np.isfinite(forecast.returns)), model.name
        # Every forecast is a plausible close: within a factor 2 of the origin's, three days on.
        assert np.all(np.abs(forecast.returns) < 0.5), model.name
        if forecast.has_intervals:
            q = forecast.quantiles
            assert q.shape == (len(samples), H, len(LEVELS)) and forecast.levels == LEVELS
            assert np.all(np.diff(q, axis=2) > 0), model.name
            np.testing.assert_array_equal(forecast.returns, q[:, :, level_index(0.5)])
            # Farther days are less certain: the 80 % interval widens with the horizon.
            width = q[:, :, level_index(0.9)] - q[:, :, level_index(0.1)]
            assert np.all(np.diff(width.mean(axis=0)) > 0), model.name


def test_persistence_forecasts_the_origins_close_for_every_horizon(btc):
    frame, samples = btc
    forecast = Persistence().predict(samples)
    origin_close = frame["BTC_close"].reindex(pd.DatetimeIndex(samples.origins)).to_numpy()
    for h in range(1, H + 1):
        np.testing.assert_allclose(forecast.close(h), origin_close, rtol=1e-15)
        np.testing.assert_array_equal(forecast.point(h), 0.0)  # honest returns are on the origin's close


def test_drift_and_moving_average_by_hand_for_every_horizon():
    frame = _series_frame([100.0, 110.0, 121.0, 133.1, 146.41, 150.0, 120.0, 90.0])
    samples = windows(frame, 2)  # origins: days 1..4
    assert samples.y.shape == (4, H) and list(samples.origins) == list(frame.index[1:5])
    drift = Drift().fit(history(frame.iloc[:5]))  # every training step is +10 %
    assert drift.params["mu"] == pytest.approx(math.log(1.1), rel=1e-12)
    # close[t] * 1.1 ** k for origins 110, 121, 133.1, 146.41
    forecast = drift.predict(samples)
    np.testing.assert_allclose(np.stack([forecast.close(h) for h in range(1, H + 1)], axis=1),
                               [[121.0, 133.1, 146.41], [133.1, 146.41, 161.051], [146.41, 161.051, 177.1561],
                                [161.051, 177.1561, 194.87171]],
                               rtol=1e-12)
    ma = MovingAverage(3)
    with pytest.raises(DataError, match=r"^the moving average of 3 closes needs 3 days before each target day\.$"):
        ma.predict(samples, history(frame))  # origin day 1 has only two closes
    later = ma.predict(samples.take(slice(1, None)), history(frame))
    means = [(100 + 110 + 121) / 3, (110 + 121 + 133.1) / 3, (121 + 133.1 + 146.41) / 3]
    for h in range(1, H + 1):  # the mean of the three closes up to the origin, whatever the horizon
        np.testing.assert_allclose(later.close(h), means, rtol=1e-12)
    # Closes after the origin do not move either forecast.
    moved = frame.copy()
    moved.iloc[5:, 0] *= 7.0  # after the last origin, day 4
    np.testing.assert_array_equal(ma.predict(samples.take(slice(1, None)), history(moved)).returns, later.returns)
    np.testing.assert_array_equal(Drift().fit(history(moved.iloc[:5])).predict(samples).returns, forecast.returns)
    with pytest.raises(DataError, match="needs k >= 1 closes, got 0"):
        MovingAverage(0)


def test_empirical_quantiles_of_k_day_returns_by_hand():
    frame = _made_up(100)
    closes = frame["BTC_close"].to_numpy()
    samples = windows(frame, 2)  # sample i has origin day i + 1
    model = Empirical(n_days=40)
    picked = samples.take(np.array([78, 33]))  # origins: days 79 and 34
    forecast = model.predict(picked, history(frame))
    for k in range(1, H + 1):
        # Origin 79: days s = 40..79. Origin 34: days s = k..34, all the data has.
        late = closes[40:80] / closes[40 - k : 80 - k] - 1.0
        early = closes[k:35] / closes[0 : 35 - k] - 1.0
        assert len(late) == 40 and len(early) == 35 - k
        np.testing.assert_allclose(forecast.quantiles[0, k - 1], np.quantile(late, LEVELS), rtol=0, atol=1e-15)
        np.testing.assert_allclose(forecast.quantiles[1, k - 1], np.quantile(early, LEVELS), rtol=0, atol=1e-15)
    later = frame.copy()
    later.iloc[80:, 0] *= np.linspace(0.5, 3.0, 20)  # every close after origin 79
    np.testing.assert_array_equal(model.predict(picked, history(later)).quantiles, forecast.quantiles)
    # Origin 31 has 29 three-day returns (days 3..31): too few.
    with pytest.raises(DataError, match=r"needs 30 3-day returns before each target day but 2021-02-02 has 29; "):
        model.predict(samples.take(slice(30, 40)), history(frame))


def test_rolling_gaussian_scale_grows_with_the_square_root_of_the_horizon():
    frame = _made_up(60)
    closes = frame["BTC_close"].to_numpy()
    samples = windows(frame, 3).take(np.array([46]))  # origin day 48
    assert samples.origins[0] == frame.index[48]
    returns = closes[19:49] / closes[18:48] - 1.0  # the 30 daily returns of days 19..48
    scale = math.sqrt(sum((r - sum(returns) / 30) ** 2 for r in returns) / 29)
    q = RollingGaussian().predict(samples, history(frame)).quantiles[0]
    for k in range(1, H + 1):
        np.testing.assert_allclose(q[k - 1], scale * math.sqrt(k) * stats.norm.ppf(LEVELS), rtol=1e-12, atol=1e-15)


def test_arima_multi_day_forecasts_are_statsmodels_dynamic_predictions(btc, fitted):
    frame, samples = btc
    closes = frame["BTC_close"]
    arima = next(m for m in fitted if m.name == "arima")
    assert set(arima.params) >= {"drift", "ar.L1", "ma.L1", "sigma2"}
    forecast = arima.predict(samples, history(frame))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        applied = arima._result.apply(Arima._log_daily(closes))
        for i in (0, 17, len(samples) - 1):
            first = pd.Timestamp(samples.dates[i])
            dynamic = applied.predict(start=first, end=first + (H - 1) * DAY, dynamic=True).to_numpy()
            np.testing.assert_allclose(np.log(samples.ref_close[i] * (1 + forecast.returns[i])), dynamic,
                                       rtol=1e-12)
    # Horizon 1 is the one-step forecast of H = 1, on the same origins.
    one = windows(frame, 5, horizon=1).take(slice(-60 - (H - 1), -(H - 1)))
    np.testing.assert_array_equal(one.dates, samples.dates)
    np.testing.assert_allclose(forecast.point(1), arima.predict(one, history(frame)).point(1), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["drift", "moving_average", "empirical", "rolling_gaussian", "arima", "garch"])
def test_no_close_after_the_last_origin_moves_any_forecast(btc, fitted, name):
    frame, samples = btc
    model = next(m for m in fitted if m.name == name)
    forecast = model.predict(samples, history(frame))
    changed = _after_last_origin(frame, samples)
    moved = windows(changed, 5).take(slice(-len(samples), None))
    assert not np.allclose(moved.target_close[-1], samples.target_close[-1])
    again = model.predict(moved, history(changed))
    np.testing.assert_array_equal(again.returns, forecast.returns)
    if forecast.has_intervals:
        np.testing.assert_array_equal(again.quantiles, forecast.quantiles)
    # Closes that end on the last origin (the days forecast are not in the data yet): the same.
    up_to_origin = frame.loc[: pd.Timestamp(samples.origins[-1])]
    np.testing.assert_array_equal(model.predict(samples, history(up_to_origin)).returns, forecast.returns)
    # The origin's own close is an input: changing it from there on does move the last forecast.
    including = _after_last_origin(frame, samples, inclusive=True)
    last = windows(including, 5).take(slice(-1, None))
    assert last.origins[-1] == samples.origins[-1]
    nearer = model.predict(last, history(including))
    assert not np.allclose(nearer.close(1), forecast.close(1)[-1:])
    if forecast.has_intervals:  # the spread too, not only the close it is centred on
        assert not np.allclose(nearer.quantiles, forecast.quantiles[-1:])


def test_garch_first_horizon_is_the_one_day_forecast_and_later_ones_are_simulated(btc, fitted):
    frame, samples = btc
    closes = frame["BTC_close"]
    garch = next(m for m in fitted if m.name == "garch")
    forecast = garch.predict(samples, history(frame))
    # Horizon 1 is computed exactly as for H = 1 (arch's analytic one-day t quantiles): identical.
    one = windows(frame, 5, horizon=1).take(slice(-60 - (H - 1), -(H - 1)))
    np.testing.assert_array_equal(forecast.quantiles[:, 0], garch.predict(one, history(frame)).quantiles[:, 0])
    # The simulation's own first day agrees with it within Monte Carlo error: every origin uses the
    # same unit-variance shocks z, so the simulated quantile is mu + sigma * (empirical quantile of
    # z). The empirical p-quantile of N draws has standard error sqrt(p (1 - p) / N) / f(q_p) (f the
    # unit-variance t density; antithetic pairs only lower it); allow 4 of them, times sigma.
    origin = closes.index.get_indexer(pd.DatetimeIndex(samples.origins))
    returns = percent_log_returns(closes)
    simulated = garch.simulated(origin, returns, H)
    exact = garch._one_day(origin, returns)
    nu, n = garch.params["nu"], interval_baselines.SIMULATIONS
    unit = stats.t(nu, scale=math.sqrt((nu - 2) / nu))
    levels = np.asarray(LEVELS)
    standard_error = np.sqrt(levels * (1 - levels) / n) / unit.pdf(unit.ppf(levels))
    sigma = (exact[:, level_index(0.5)] - exact[:, 0]) / (0.0 - unit.ppf(levels[0]))
    gap = np.abs(simulated[:, 0] - exact)
    assert np.all(gap <= 4 * sigma[:, None] * standard_error[None, :])
    # Constant mean, symmetric shocks in antithetic pairs: the k-day median is k * mu exactly.
    k_mu = garch.params["mu"] * np.arange(1, H + 1)
    np.testing.assert_allclose(simulated[:, :, level_index(0.5)], np.broadcast_to(k_mu, (len(samples), H)), rtol=1e-12)
    np.testing.assert_allclose(forecast.quantiles[:, 1:], np.expm1(simulated[:, 1:] / 100.0), rtol=0, atol=1e-15)
    # Reproducible, and the same forecast of an origin whichever other origins are asked for (up to
    # rounding: arch's one-day variances start their recursion at the first origin asked for).
    np.testing.assert_array_equal(garch.predict(samples, history(frame)).quantiles, forecast.quantiles)
    np.testing.assert_allclose(garch.predict(samples.take(slice(40, 50)), history(frame)).quantiles,
                               forecast.quantiles[40:50], rtol=1e-12, atol=1e-15)


def test_seed_protocol_forecasts_the_same_usd_closes_at_every_horizon(btc, fitted):
    frame, _ = btc
    honest = windows(frame, 20).take(slice(-30, None))
    seed = windows(frame, 20, protocol="seed").take(slice(-30, None))
    np.testing.assert_array_equal(honest.dates, seed.dates)
    assert not np.allclose(seed.ref_close, honest.ref_close)
    for model in fitted:
        on_last, on_first = model.predict(honest, history(frame)), model.predict(seed, history(frame))
        for h in range(1, H + 1):
            np.testing.assert_allclose(on_first.close(h), on_last.close(h), rtol=1e-12)
        if on_last.has_intervals:
            usd = lambda f: f.reference[:, None, None] * (1.0 + f.quantiles)  # noqa: E731
            np.testing.assert_allclose(usd(on_first), usd(on_last), rtol=1e-12)


def test_the_forecasting_loop_fits_each_baseline_on_the_days_before_each_fold(synthetic_market):
    frame = synthetic_market.frame
    cfg = RunConfig(window_len=5, horizon=H)
    periods = folds("2021-09-01", "2021-11-30", 1)
    made = historical_forecasts({"drift": fresh(Drift), "moving_average": fresh(MovingAverage)}, frame, cfg, periods)
    log_closes = np.log(frame["BTC_close"])
    assert [(f.forecaster, f.period) for f in made.fits] == [("drift", "0"), ("drift", "1"), ("drift", "2"),
                                                              ("moving_average", "0"), ("moving_average", "1"),
                                                              ("moving_average", "2")]
    for fit, period in zip(made.fits[:3], periods):
        assert fit.params["mu"] == pytest.approx(np.mean(np.diff(log_closes.loc[: period.before])), rel=1e-12)
    # Each fold's rows: its origins whose three target days lie in it, every horizon, the actual closes.
    rows = made.rows("moving_average", "1")
    october = samples_of(frame, cfg, periods[1])
    assert len(rows) == 3 * len(october) == 3 * (31 - 2)
    np.testing.assert_array_equal(rows["actual"].to_numpy(), october.target_close.reshape(-1))
    by_hand = MovingAverage().predict(october, history(frame)).returns.reshape(-1)
    np.testing.assert_allclose(rows["forecast"].to_numpy(), by_hand, rtol=1e-12)
