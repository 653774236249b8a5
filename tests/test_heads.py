"""Heads as objects: each owns its width, its map to parameters, its loss and its decoding, and the
network, the pyfunc and the metrics follow from it. The generic checks run over every declared head,
so a new head is checked by declaring it."""

import keras
import numpy as np
import pytest
from scipy import stats

from cryptolstm import heads
from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError
from cryptolstm.intervals import LEVELS, gaussian_quantiles
from cryptolstm.metrics import pinball
from cryptolstm.models.lstm import build_lstm

ALL = list(heads.HEADS.values())
RNG = np.random.default_rng(3)


def _raw(head: heads.Head, n: int = 64, horizon: int = 2) -> np.ndarray:
    return RNG.normal(0, 1, (n, head.width(horizon))).astype("float32")


def _params(head: heads.Head, raw: np.ndarray, scale: float = 0.03) -> np.ndarray:
    """The head's parameters for raw outputs, through Keras' ops as inside the network."""
    scales = np.full((len(raw), 1), scale, dtype="float32") if head.scale_feature else None
    return np.asarray(keras.ops.convert_to_numpy(head.activate(raw, keras.ops, scale=scales)), dtype=np.float64)


@pytest.mark.parametrize("head", ALL, ids=lambda h: h.name)
def test_every_head_decodes_its_parameters_into_h_points_and_ordered_quantiles(head):
    params = _params(head, _raw(head, horizon=3))
    point, quantiles = head.decode(params, 3)
    assert point.shape == (64, 3)
    if not head.distribution:
        assert quantiles is None and head.levels == ()
        return
    assert quantiles.shape == (64, 3, len(head.levels)) and head.levels == LEVELS
    assert np.all(np.diff(quantiles, axis=2) > 0)  # never crossing
    np.testing.assert_allclose(point, quantiles[:, :, len(LEVELS) // 2], atol=1e-12)  # symmetric or median point


@pytest.mark.parametrize("head", ALL, ids=lambda h: h.name)
def test_every_head_decodes_no_window_into_empty_forecasts(head):
    point, quantiles = head.decode(np.zeros((0, head.width(2))), 2)  # a forecast of no day (network.predict)
    assert point.shape == (0, 2) and (quantiles is None or quantiles.shape == (0, 2, len(head.levels)))


@pytest.mark.slow
@pytest.mark.parametrize("head", [h for h in ALL if h.distribution], ids=lambda h: h.name)
def test_every_distribution_heads_loss_falls_when_its_forecast_fits_the_data(head):
    """Trained on its own loss, a tiny network's loss on returns of scale 2 % falls and its 80 % interval
    covers roughly 80 % of new draws: the loss and the decoding agree."""
    cfg = RunConfig(layers=1, neurons=4, head=head.name, window_len=3, learning_rate=0.02, **(
        {"features": "close,volume,garch_vol"} if head.scale_feature else {}))
    n_features = 6 if head.scale_feature else 4
    X = RNG.normal(0, 0.01, (512, 3, n_features)).astype("float32")
    if head.scale_feature:
        X[:, :, 2] = 0.02  # the scale feature (BTC's garch_vol) on every day
    y = RNG.standard_t(5, (512, 1)).astype("float32") * 0.02 / np.sqrt(5 / 3)
    keras.utils.set_random_seed(1)
    model = build_lstm(cfg, 3, n_features)
    history = model.fit(X, y, epochs=20, batch_size=64, verbose=0).history["loss"]
    assert history[-1] < history[0]
    _, quantiles = head.decode(model.predict(X, verbose=0), 1)
    lo, hi = quantiles[:, 0, LEVELS.index(0.1)], quantiles[:, 0, LEVELS.index(0.9)]
    fresh = RNG.standard_t(5, 512) * 0.02 / np.sqrt(5 / 3)
    assert 0.6 < np.mean((fresh >= lo) & (fresh <= hi)) < 0.95


@pytest.mark.parametrize("head", ALL, ids=lambda h: h.name)
def test_the_network_outputs_the_heads_width_and_its_parameters(head):
    cfg = RunConfig(layers=1, neurons=4, head=head.name, horizon=2, **(
        {"features": "close,volume,garch_vol"} if head.scale_feature else {}))
    n_features = 6 if head.scale_feature else 4
    out = np.asarray(build_lstm(cfg, 5, n_features)(np.zeros((3, 5, n_features), "float32")))
    assert out.reshape(3, -1).shape[1] == head.width(2)
    point, _ = head.decode(out, 2)
    assert point.shape == (3, 2)


def test_the_gaussian_heads_loss_is_its_negative_log_likelihood_and_its_quantiles_are_normal():
    head = heads.get("gaussian")
    params = _params(head, _raw(head, horizon=1))
    y = RNG.normal(0, 0.02, (64, 1))
    mean, scale = params[:, :1], params[:, 1:]
    nll = -stats.norm.logpdf(y, mean, scale) - 0.5 * np.log(2 * np.pi)  # the constant is dropped
    assert float(head.loss(y, params.astype("float32"), keras.ops)) == pytest.approx(np.mean(nll), rel=1e-5)
    np.testing.assert_allclose(head.decode(params, 1)[1], gaussian_quantiles(mean, scale))


def test_the_quantile_heads_loss_is_the_mean_pinball_loss():
    head = heads.get("quantile")
    params = _params(head, _raw(head, horizon=1))
    y = RNG.normal(0, 0.02, (64, 1))
    expected = np.mean(pinball(params[:, 0, :], y[:, 0], LEVELS))
    assert float(head.loss(y, params.astype("float32"), keras.ops)) == pytest.approx(expected, rel=1e-5)


def test_the_point_head_is_the_2018_dense_layer_with_the_configs_activation_and_loss():
    model = build_lstm(RunConfig(layers=1, neurons=4), 7, 4)
    assert model.layers[-1].name == "return" and model.layers[-1].activation.__name__ == "tanh"
    assert model.loss == "mse"


def test_an_unknown_head_is_one_sentence_naming_the_heads_there_are():
    with pytest.raises(ConfigError, match=r"head must be one of point, gaussian, quantile.*got 'normal'"):
        RunConfig(head="normal")


# --- the Student-t head ----------------------------------------------------------------------


def test_log_gamma_in_keras_ops_matches_scipys():
    from scipy.special import gammaln

    x = np.concatenate([np.linspace(1.0, 3.0, 41), np.linspace(3.0, 200.0, 60)])
    got = np.asarray(keras.ops.convert_to_numpy(heads.log_gamma(keras.ops.convert_to_tensor(x, "float64"), keras.ops)))
    np.testing.assert_allclose(got, gammaln(x), rtol=0, atol=1e-10)


def test_the_student_t_heads_loss_is_its_negative_log_likelihood():
    head = heads.get("student_t")
    params = _params(head, _raw(head, horizon=1))
    loc, scale, df = params[:, :1], params[:, 1:2], params[:, 2:]
    assert np.all(scale > 0) and np.all(df > heads.MIN_DF)
    y = RNG.standard_t(4, (64, 1)) * 0.02
    expected = np.mean(-stats.t.logpdf(y, df, loc, scale))
    assert float(head.loss(y, params, keras.ops)) == pytest.approx(expected, rel=1e-9)


def test_the_student_t_heads_quantiles_are_the_t_distributions():
    head = heads.get("student_t")
    params = _params(head, _raw(head, horizon=2))
    point, quantiles = head.decode(params, 2)
    loc, scale, df = params[:, :2], params[:, 2:4], params[:, 4:]
    np.testing.assert_allclose(point, loc)
    expected = stats.t.ppf(np.asarray(LEVELS)[None, None, :], df[..., None], loc[..., None], scale[..., None])
    np.testing.assert_allclose(quantiles, expected, rtol=1e-12)


@pytest.mark.slow
def test_a_student_t_run_is_scored_by_the_crps_of_its_quantile_grid_beside_garch(synthetic_market):
    """Nothing but the head was written for it: the run trains on its likelihood, calibrates its
    intervals on the validation days and logs the interval metrics of every distribution head."""
    from cryptolstm.train import train

    cfg = RunConfig(data_dir="unused", merge_date="2020-01-01", head="student_t", layers=1, neurons=4, epochs=2,
                    batch_size=64, seed=7)
    result = train(cfg, synthetic_market)
    metrics = result.metrics
    assert metrics["test/crps"] > 0 and np.isfinite(metrics["test/crps_ratio_garch"])
    assert 0 <= metrics["test/coverage_80"] <= 1 and result.forecaster.calibration is not None
