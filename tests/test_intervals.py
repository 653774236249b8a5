"""Forecast distributions: the quantile grid, the interval scores against hand-worked cases, and
conformal calibration reaching its nominal coverage on a series whose spread changes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats

from cryptolstm import heads, metrics
from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError
from cryptolstm.forecast import Forecast
from cryptolstm.metrics import dm_test
from cryptolstm.intervals import (LEVELS, Calibration, check_levels, conformal_margin, fit_conformal,
                                  gaussian_quantiles, interval_levels, level_index)


def test_the_grid_holds_the_reported_intervals_and_is_symmetric():
    assert len(LEVELS) == 39 and LEVELS[0] == 0.025 and LEVELS[-1] == 0.975 and LEVELS[19] == 0.5
    assert [interval_levels(c) for c in (80, 95)] == [(0.1, 0.9), (0.025, 0.975)]
    assert level_index(0.1) == 3 and level_index(0.975) == 38
    assert all(math.isclose(LEVELS[p] + LEVELS[-1 - p], 1.0) for p in range(19))


def test_crps_of_a_gaussian_closed_form_and_from_the_grid():
    # Hand-worked: for N(0, 1) and y = 0 the CRPS is 2 phi(0) - 1/sqrt(pi) = 0.2336949...
    assert metrics.crps_gaussian(np.array([0.0]), np.array([1.0]), np.array([0.0]))[0] == pytest.approx(
        2 * stats.norm.pdf(0) - 1 / math.sqrt(math.pi), rel=1e-12)
    # scale-equivariant: CRPS(N(m, s), y) = s * CRPS(N(0, 1), (y - m) / s)
    assert metrics.crps_gaussian(np.array([1.0]), np.array([2.0]), np.array([4.0]))[0] == pytest.approx(
        2 * metrics.crps_gaussian(np.array([0.0]), np.array([1.0]), np.array([1.5]))[0])
    y = np.linspace(-3, 3, 25)
    grid = metrics.crps_quantiles(gaussian_quantiles(np.zeros(25), np.ones(25)), y, LEVELS)
    closed = metrics.crps_gaussian(np.zeros(25), np.ones(25), y)
    assert np.all(np.abs(grid / closed - 1) < 0.005)
    far = np.array([5.0])  # the outer 1.25 % of each tail weighs nothing: an extreme miss reads a little low
    ratio = metrics.crps_quantiles(gaussian_quantiles(np.zeros(1), np.ones(1)), far, LEVELS) / metrics.crps_gaussian(
        np.zeros(1), np.ones(1), far)
    assert 0.98 < ratio[0] < 1.0


def test_interval_score_pinball_and_coverage_by_their_definitions():
    lower, upper = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    actual = np.array([0.0, 2.0, -1.5])
    # width 2; outside by 1 above and 0.5 below, times 2 / alpha = 2 / 0.2 = 10
    assert metrics.interval_score(lower, upper, actual, 80) == pytest.approx([2.0, 12.0, 7.0])
    q = np.array([[-1.0, 0.0, 1.0]])
    assert metrics.pinball(q, np.array([0.5]), (0.1, 0.5, 0.9))[0] == pytest.approx([0.15, 0.25, 0.05])
    quantiles = np.tile(np.linspace(-1, 1, 39), (3, 1))  # 0.1 -> -0.842..., 0.9 -> 0.842...
    scores = metrics.distribution_scores(quantiles, np.array([0.0, 0.9, -0.5]), LEVELS)
    assert scores["coverage_80"] == pytest.approx(2 / 3) and scores["coverage_95"] == 1.0
    assert scores["width_95"] == pytest.approx(2.0)


def test_interval_scores_beside_a_baseline_in_both_units():
    dates = np.arange(4).astype("datetime64[D]")
    hundred = np.full(4, 100.0)
    y = np.array([0.0, 0.005, -0.02, 0.012])  # returns on the last close, 100 USD

    def gaussian(scale: float) -> Forecast:
        q = gaussian_quantiles(np.zeros((4, 1)), np.full((4, 1), scale))
        return Forecast(dates, hundred, hundred, np.zeros(4)).with_quantiles(q, LEVELS)

    mine, wide, raw = gaussian(0.01), gaussian(0.03), gaussian(0.005)
    out = metrics.interval_scores(mine, 100.0 * (1.0 + y), "return", {"wide": wide}, raw=raw)
    # 80 % intervals: +-1.2816 scale. Mine (+-0.0128) misses -0.02; raw (+-0.0064) misses two more; wide none.
    assert (out["coverage_80"], out["raw_coverage_80"], out["wide/coverage_80"]) == (0.75, 0.5, 1.0)
    assert out["width_95"] == pytest.approx(2 * 1.959964 * 0.01, rel=1e-6)
    mine_days = metrics.crps_quantiles(mine.quantiles[:, 0], y, LEVELS)
    wide_days = metrics.crps_quantiles(wide.quantiles[:, 0], y, LEVELS)
    assert out["crps"] == pytest.approx(mine_days.mean(), rel=1e-12)
    assert out["crps_ratio_wide"] == pytest.approx(mine_days.mean() / wide_days.mean(), rel=1e-12)
    assert out["crps_ratio_wide"] < 1.0  # the sharper forecast is right here: every day lies within 2 of its sds
    assert (out["crps_dm_stat_wide"], out["crps_dm_p_wide"], out["crps_dm_mde_wide"]) == pytest.approx(
        dm_test(mine_days, wide_days), rel=1e-12)
    # In USD on a 100 USD close every width and CRPS is 100 times the return's.
    assert out["crps_usd"] == pytest.approx(100 * out["crps"], rel=1e-9)
    assert out["width_95_usd"] == pytest.approx(100 * out["width_95"], rel=1e-9)


def test_a_forecast_gives_its_intervals_in_usd_and_refuses_levels_outside_0_1():
    base = Forecast(np.array(["2020-01-02"], dtype="datetime64[D]"), np.array([100.0]), np.array([100.0]),
                    np.array([0.0]))
    q = gaussian_quantiles(np.zeros(1), np.full(1, 0.01))[:, None, :]
    lower, upper = base.with_quantiles(q, LEVELS).bounds(95)
    assert lower[0] == pytest.approx(100 * (1 - 0.01 * 1.959964), rel=1e-6) and upper[0] > 100
    with pytest.raises(ValueError, match=r"a quantile level must be in \(0, 1\), got 1.5"):
        check_levels((0.5, 1.5))
    with pytest.raises(ValueError, match="quantiles must be"):
        base.with_quantiles(q[:, :, :3], LEVELS)


def test_conformal_margin_is_the_right_order_statistic():
    scores = np.arange(1.0, 20.0)  # 19 scores: ceil(20 * 0.9) = 18th smallest for alpha 0.1
    assert conformal_margin(scores, 0.1) == 18.0
    assert conformal_margin(scores, 0.01) == 19.0  # past the end: the largest score
    assert conformal_margin(np.array([]), 0.1) == 0.0


def _heteroscedastic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A return series whose scale follows a slow cycle, and that scale."""
    scale = 0.02 * (1.5 + np.sin(np.arange(n) / 40.0))
    return rng.standard_normal(n) * scale, scale


def test_calibration_brings_a_too_narrow_forecast_to_nominal_coverage_on_later_days():
    rng = np.random.default_rng(0)
    y, scale = _heteroscedastic(6000, rng)
    # A forecaster that knows the shape of the spread but believes it half as wide.
    raw = gaussian_quantiles(np.zeros_like(y), 0.5 * scale)[:, None, :]
    calibration = fit_conformal(raw[:2000], y[:2000, None])
    later = calibration.apply(raw[2000:])
    for coverage in (80, 95):
        lo, hi = (level_index(v) for v in interval_levels(coverage))
        raw_cover = np.mean((y[2000:] >= raw[2000:, 0, lo]) & (y[2000:] <= raw[2000:, 0, hi]))
        cover = np.mean((y[2000:] >= later[:, 0, lo]) & (y[2000:] <= later[:, 0, hi]))
        assert raw_cover < coverage / 100 - 0.2
        assert abs(cover - coverage / 100) < 0.02, (coverage, cover)
    assert np.all(np.diff(later, axis=2) >= 0)  # quantiles never cross after calibration
    again = Calibration.from_dict(calibration.to_dict())
    assert np.array_equal(again.apply(raw[2000:]), later)


def test_a_bad_head_is_one_sentence():
    with pytest.raises(ConfigError) as caught:
        RunConfig(head="banana")
    assert str(caught.value) == f"head must be one of {', '.join(heads.NAMES)}; got 'banana'."
    assert heads.NAMES[:3] == ("point", "gaussian", "quantile")


def test_an_interval_objective_needs_a_distribution_head(tmp_path):
    from cryptolstm.search.space import load_space

    (tmp_path / "s.yaml").write_text("objective: val/crps_ratio_empirical\nspace:\n"
                                     "  head: {type: categorical, choices: [point, gaussian]}\n")
    distributions = ", ".join(h.name for h in heads.HEADS.values() if h.distribution)
    assert distributions.startswith("gaussian, quantile")
    with pytest.raises(ConfigError, match=re.escape(
            f"objective val/crps_ratio_empirical scores intervals, so every trial needs a distribution head "
            f"({distributions}); the space allows head point.") + "$"):
        load_space(tmp_path / "s.yaml")
    (tmp_path / "s.yaml").write_text("objective: val/crps_ratio_empirical\nspace:\n"
                                     "  head: {type: categorical, choices: [gaussian, quantile]}\n")
    assert load_space(tmp_path / "s.yaml").objective == "val/crps_ratio_empirical"


@pytest.mark.parametrize("objective, space, words", [
    ("val/coverage_95", "head: {type: categorical, choices: [gaussian]}",
     "objective val/coverage_95 is not an error to minimise"),
    ("val/h7/mae_ratio", "dropout: {type: float, low: 0.0, high: 0.5}",
     "objective val/h7/mae_ratio is not logged by a run of horizon 1 and head point;"),
    ("val/mae_ration", "dropout: {type: float, low: 0.0, high: 0.5}", "objective val/mae_ration is not logged"),
    ("val/mae_ratio", "horizon: {type: int, low: 1, high: 7}", "horizon cannot be searched"),
])
def test_an_objective_no_trial_logs_or_that_is_not_an_error_is_one_sentence(tmp_path, objective, space, words):
    from cryptolstm.search.space import load_space

    (tmp_path / "s.yaml").write_text(f"objective: {objective}\nspace:\n  {space}\n")
    with pytest.raises(ConfigError, match=words):
        load_space(tmp_path / "s.yaml")


@pytest.mark.slow  # imports TensorFlow (about 10 s)
def test_keras_tuner_refuses_an_interval_objective(tmp_path):
    from cryptolstm.options import SearchOptions
    from cryptolstm.search.keras_tuner_engine import KerasTunerEngine
    from cryptolstm.search.space import load_space

    (tmp_path / "b.yaml").write_text("head: gaussian\n")
    (tmp_path / "s.yaml").write_text("base: b.yaml\nobjective: val/crps_ratio_garch\nspace:\n"
                                     "  dropout: {type: float, low: 0.0, high: 0.5}\n")
    with pytest.raises(ConfigError, match="engine keras-tuner cannot search on val/crps_ratio_garch"):
        KerasTunerEngine.open(load_space(tmp_path / "s.yaml"), "s", SearchOptions(engine="keras-tuner"), 2)
    assert not any(tmp_path.glob("keras_tuner*"))  # refused before its directory was claimed
