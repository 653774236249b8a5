"""The HAR baseline (#21) against a hand computation on a tiny synthetic series: the regressors, the
OLS coefficients, the standardized-residual quantiles and the forecast distribution."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptolstm.errors import DataError
from cryptolstm.intervals import LEVELS
from cryptolstm.models.base import History
from cryptolstm.models.har import Har, regressors
from cryptolstm.splits import Period
from cryptolstm.windowing import samples
from tests.conftest import synthetic_frame

FRAME = synthetic_frame(200)  # 2020-01-01..2020-07-18


def _by_hand(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients [c, b1, b5, b22], Parkinson volatility) by plain NumPy: each day's
    sqrt(ln(high/low)^2 / (4 ln 2)), its 1-, 5- and 22-day trailing means, the next day's volatility
    regressed on them by least squares with a constant."""
    high, low = frame["BTC_high"].to_numpy(), frame["BTC_low"].to_numpy()
    vol = np.sqrt(np.log(high / low) ** 2 / (4 * math.log(2)))
    rows, target = [], []
    for t in range(21, len(vol) - 1):
        rows.append([1.0, vol[t], vol[t - 4:t + 1].mean(), vol[t - 21:t + 1].mean()])
        target.append(vol[t + 1])
    coefficients, *_ = np.linalg.lstsq(np.array(rows), np.array(target), rcond=None)
    return coefficients, vol


def test_har_coefficients_are_the_least_squares_fit_computed_by_hand():
    har = Har().fit(History(FRAME, "BTC"))
    expected, _ = _by_hand(FRAME)
    np.testing.assert_allclose(har.coefficients, expected, rtol=1e-9, atol=1e-12)
    assert set(har.params) == {"const", "vol_1", "vol_5", "vol_22"}


def test_the_regressors_of_a_day_read_no_later_day():
    _, vol = _by_hand(FRAME)
    changed = FRAME.copy()
    changed.loc[changed.index[120]:, ["BTC_high", "BTC_low"]] *= [1.5, 0.5]
    before, after = regressors(pd.Series(vol, FRAME.index)), regressors(pd.Series(_by_hand(changed)[1], FRAME.index))
    pd.testing.assert_frame_equal(before.iloc[:120], after.iloc[:120])
    assert not np.allclose(before.iloc[120:].to_numpy(), after.iloc[120:].to_numpy())


def test_the_forecast_distribution_is_the_forecast_volatility_times_the_standardized_quantiles():
    history = History(FRAME.iloc[:170], "BTC")
    har = Har().fit(history)
    coefficients, vol = _by_hand(FRAME.iloc[:170])
    # The standardized training returns: each day's log return over the volatility forecast the day before.
    forecast = np.maximum(coefficients[0] + coefficients[1] * vol
                          + coefficients[2] * pd.Series(vol).rolling(5).mean().to_numpy()
                          + coefficients[3] * pd.Series(vol).rolling(22).mean().to_numpy(), 1e-4)
    returns = np.diff(np.log(FRAME["BTC_close"].to_numpy()[:170]))
    z = returns[1:] / forecast[:-1][1:]  # return of day t+1 over the forecast made on day t
    z = z[~np.isnan(z)]
    np.testing.assert_allclose(har.z_quantiles, np.quantile(z, LEVELS), rtol=1e-9)

    period = Period("test", FRAME.index[170], FRAME.index[179])
    visible = FRAME.iloc[:180]
    made = samples(visible, _config(), period)
    got = har.predict(made, History(visible, "BTC"))
    # Origin 169 (the day before 2020-06-19): the volatility forecast made on that day, times each z quantile.
    _, vol_all = _by_hand(visible)
    t = 169
    sigma = max(coefficients[0] + coefficients[1] * vol_all[t] + coefficients[2] * vol_all[t - 4:t + 1].mean()
                + coefficients[3] * vol_all[t - 21:t + 1].mean(), 1e-4)
    np.testing.assert_allclose(got.quantiles[0, 0], np.expm1(sigma * har.z_quantiles), rtol=1e-9)
    assert np.all(np.diff(got.quantiles, axis=2) >= 0)
    np.testing.assert_allclose(got.returns[:, 0], got.quantiles[:, 0, LEVELS.index(0.5)])


def test_too_few_days_is_one_sentence():
    with pytest.raises(DataError, match=r"^the HAR baseline needs at least 122 training days with a high and a low"):
        Har().fit(History(FRAME.iloc[:60], "BTC"))


def _config():
    from cryptolstm.config import RunConfig

    return RunConfig(window_len=5)
