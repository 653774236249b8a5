import numpy as np
import pytest

from cryptolstm.data import load_market
from cryptolstm.models.lstm import build_lstm, flops_per_sample, hard_sigmoid_keras2
from cryptolstm.train import train
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def market(shared_data):
    return load_market(shared_data, "2023-01-01")


def test_same_seed_same_metrics_other_seed_other_metrics(market, shared_data):
    cfg = tiny_config(shared_data)
    a, b = train(cfg, market), train(cfg, market)
    assert a.metrics == b.metrics and a.history == b.history
    c = train(cfg.replace(seed=8), market)
    assert c.metrics["val/mae"] != a.metrics["val/mae"]


def test_honest_run_scores_val_and_test_beside_persistence_with_best_weights(market, shared_data):
    cfg = tiny_config(shared_data, epochs=6, patience=2, learning_rate=0.02)
    r = train(cfg, market)
    for split in ("val", "test"):
        for key in ("mae", "rmse", "mape", "persistence_mae", "persistence_rmse", "mae_ratio", "direction_accuracy"):
            assert np.isfinite(r.metrics[f"{split}/{key}"])
        assert r.metrics[f"{split}/mae_ratio"] == pytest.approx(
            r.metrics[f"{split}/mae"] / r.metrics[f"{split}/persistence_mae"]
        )
    # The restored weights are the best epoch's: their validation MSE is the minimum val_loss.
    val = r.splits.val
    mse = float(np.mean((r.forecasts["val"].point() - val.y[:, 0]) ** 2))
    assert mse == pytest.approx(min(r.history["val_loss"]), rel=1e-4)
    assert r.best_epoch == int(np.argmin(r.history["val_loss"]))


def test_seed_protocol_val_mae_is_keras_val_mae_in_normalised_units(market, shared_data):
    cfg = tiny_config(shared_data, protocol="seed", train_frac=0.8, recurrent_activation="hard_sigmoid_keras2")
    r = train(cfg, market)
    assert r.splits.test is None and r.epochs_run == cfg.epochs
    assert r.metrics["val/mae"] == pytest.approx(r.history["val_mae"][-1], rel=1e-4)
    assert 0 < r.metrics["val/persistence_mae"] < 0.5  # returns, not dollars
    assert r.metrics["val/mae_usd"] > 10


def test_builder_shapes_and_the_2018_model(shared_data):
    cfg = tiny_config(shared_data).replace(layers=3, neurons=512, recurrent_activation="hard_sigmoid_keras2")
    model = build_lstm(cfg, 7, 4)
    assert model.output_shape == (None, 1)
    assert [layer.name for layer in model.layers] == [
        "lstm_0", "dropout_0", "lstm_1", "dropout_1", "lstm_2", "dropout_2", "return"
    ]
    # 4 gates x 512 x (inputs + 512 + 1) per LSTM layer, plus Dense(513 -> 1).
    assert model.count_params() == 4 * 512 * (4 + 513) + 2 * 4 * 512 * (512 + 513) + 513
    assert flops_per_sample(cfg, 7, 4) == 2 * 7 * (4 * 512 * (4 + 513) + 2 * 4 * 512 * 1025) + 2 * 513


def test_keras2_hard_sigmoid_has_slope_point_two():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(hard_sigmoid_keras2(x)), [0.0, 0.3, 0.5, 0.7, 1.0], rtol=1e-6)


def test_a_distribution_head_is_trained_on_its_loss_calibrated_on_val_and_scored_beside_garch(market, shared_data):
    """The quantile head here; the gaussian head is trained by the pyfunc, backtest and horizon tests."""
    from cryptolstm.intervals import LEVELS
    from cryptolstm import metrics

    cfg = tiny_config(shared_data, head="quantile", epochs=3)
    r = train(cfg, market)
    val, test = r.forecasts["val"], r.forecasts["test"]
    assert val.quantiles.shape == (len(r.splits.val), 1, len(LEVELS)) and test.levels == LEVELS
    assert np.all(np.diff(test.quantiles, axis=2) >= 0)  # never crossing
    # The loss Keras minimised is the head's: the pinball loss over the grid.
    raw = r.forecaster().predict(r.splits.val, calibrated=False)
    pinball = metrics.pinball(raw.quantiles[:, 0, :], r.splits.val.y[:, 0], LEVELS).mean()
    assert pinball == pytest.approx(min(r.history["val_loss"]), rel=1e-3)
    # Split conformal on val: at least nominal coverage on the days it calibrated on.
    assert r.metrics["val/coverage_80"] >= 0.8 and r.metrics["val/coverage_95"] >= 0.95
    for split in ("val", "test"):
        for key in ("coverage_80", "coverage_95", "raw_coverage_80", "width_95", "width_95_return", "interval_score_95",
                    "crps", "pinball", "crps_ratio_garch", "crps_ratio_empirical", "crps_dm_p_garch", "garch/crps",
                    "empirical/coverage_95", "rolling_gaussian/crps"):
            assert np.isfinite(r.metrics[f"{split}/{key}"]), (split, key)
        assert r.metrics[f"{split}/crps_ratio_garch"] == pytest.approx(
            r.metrics[f"{split}/crps"] / r.metrics[f"{split}/garch/crps"])
    # The baselines forecast exactly the LSTM's days.
    assert np.array_equal(r.baselines["test"]["garch"].dates, test.dates)
    assert r.metrics["val/mae_ratio"] > 0  # the point forecast (mean or median) is scored as before
