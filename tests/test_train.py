"""`train(cfg, market)`: one tiny network on synthetic prices, forecast and scored beside
persistence through the one forecasting loop; the builder and its 2018 gate activation."""

import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.models.base import History
from cryptolstm.models.lstm import build_lstm, flops_per_sample, hard_sigmoid_keras2
from cryptolstm.train import train, validation_metrics
from tests.conftest import MERGE, tiny_config


@pytest.fixture(scope="module")
def cfg(synthetic_data):
    return tiny_config(synthetic_data, merge_date=MERGE)


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_other_metrics(market, cfg):
    a, b = train(cfg, market), train(cfg, market)
    assert a.metrics == b.metrics and a.history == b.history
    assert a.forecasts.table.equals(b.forecasts.table)
    c = train(cfg.replace(seed=8), market)
    assert c.metrics["val/mae"] != a.metrics["val/mae"]


@pytest.mark.slow
def test_honest_run_scores_every_split_beside_persistence_with_best_weights(market, cfg):
    r = train(cfg.replace(epochs=6, patience=2, learning_rate=0.02), market)
    days = market.frame.index
    assert r.periods["val"].first == days[int(0.7 * len(days))]
    assert r.periods["test"].first == days[int(0.85 * len(days))]
    assert r.forecasts.forecasters == ["lstm"] and r.forecasts.fits == []  # fitted once, before the loop
    assert r.forecasts.period_names == ["train", "val", "test"]
    for split in ("val", "test"):
        forecast, actual = r.forecast(split)
        assert pd.Timestamp(forecast.dates[0]) == r.periods[split].first and len(forecast) == len(actual)
        # Persistence on exactly the same days, in USD; the model's errors from its own forecast.
        persistence = np.mean(np.abs(forecast.last_close - actual[:, 0]))
        assert r.metrics[f"{split}/persistence_mae"] == pytest.approx(persistence)
        assert r.metrics[f"{split}/mae"] == pytest.approx(np.mean(np.abs(forecast.close() - actual[:, 0])))
        assert r.metrics[f"{split}/mae_ratio"] == pytest.approx(
            r.metrics[f"{split}/mae"] / r.metrics[f"{split}/persistence_mae"])
        for key in ("rmse", "mape", "persistence_rmse", "direction_accuracy", "dm_p", "mae_return"):
            assert np.isfinite(r.metrics[f"{split}/{key}"]), (split, key)
    # The restored weights are the best epoch's: their validation MSE is the minimum val_loss.
    forecast, _ = r.forecast("val")
    mse = float(np.mean((forecast.point() - r.splits.val.y[:, 0]) ** 2))
    assert mse == pytest.approx(min(r.history["val_loss"]), rel=1e-4)
    assert r.best_epoch == int(np.argmin(r.history["val_loss"]))
    # A search's per-epoch objective reads the same validation numbers the run logs.
    val = {k: v for k, v in r.metrics.items() if k.startswith("val/")}
    assert validation_metrics(r.forecaster, market.frame) == pytest.approx(val)


@pytest.mark.slow
def test_seed_protocol_val_mae_is_keras_val_mae_in_normalised_units(market, cfg):
    seed_cfg = cfg.replace(protocol="seed", train_frac=0.8, recurrent_activation="hard_sigmoid_keras2")
    r = train(seed_cfg, market)
    assert set(r.periods) == {"train", "val"} and not any(k.startswith("test/") for k in r.metrics)
    assert r.epochs_run == seed_cfg.epochs  # no early stopping
    # The validation block's windows start inside it, as the notebook's did.
    assert r.periods["val"].inputs_from == r.periods["val"].first == market.frame.index[int(0.8 * len(market.frame))]
    assert r.metrics["val/mae"] == pytest.approx(r.history["val_mae"][-1], rel=1e-4)
    assert 0 < r.metrics["val/persistence_mae"] < 0.5  # returns, not dollars
    assert r.metrics["val/mae_usd"] > 10


def test_builder_shapes_and_the_2018_model():
    cfg = RunConfig(layers=3, neurons=512, recurrent_activation="hard_sigmoid_keras2")
    model = build_lstm(cfg, 7, 4)
    assert model.output_shape == (None, 1)
    assert [layer.name for layer in model.layers] == [
        "lstm_0", "dropout_0", "lstm_1", "dropout_1", "lstm_2", "dropout_2", "return"
    ]
    # 4 gates x 512 x (inputs + 512 + 1) per LSTM layer, plus Dense(513 -> 1).
    assert model.count_params() == 4 * 512 * (4 + 513) + 2 * 4 * 512 * (512 + 513) + 513
    assert flops_per_sample(cfg, 7, 4) == 2 * 7 * (4 * 512 * (4 + 513) + 2 * 4 * 512 * 1025) + 2 * 513
    # A head owns its width: a Gaussian of three days outputs a mean and a scale per day.
    gaussian = build_lstm(cfg.replace(layers=1, neurons=4, head="gaussian", horizon=3), 7, 4)
    assert gaussian.output_shape == (None, 6) and gaussian.layers[-2].units == 6


def test_keras2_hard_sigmoid_has_slope_point_two():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(hard_sigmoid_keras2(x)), [0.0, 0.3, 0.5, 0.7, 1.0], rtol=1e-6)


@pytest.mark.slow
def test_a_distribution_head_is_trained_on_its_loss_calibrated_on_val_and_scored_beside_garch(market, cfg):
    """The quantile head here; the gaussian head is trained by the forecasting, backtest and horizon tests."""
    from cryptolstm import metrics
    from cryptolstm.intervals import LEVELS
    from cryptolstm.models.interval_baselines import INTERVAL

    r = train(cfg.replace(head="quantile", epochs=3), market)
    (val, _), (test, _) = r.forecast("val"), r.forecast("test")
    assert val.quantiles.shape == (len(r.splits.val), 1, len(LEVELS)) and test.levels == LEVELS
    assert np.all(np.diff(test.quantiles, axis=2) >= 0)  # never crossing
    # The loss Keras minimised is the head's: the pinball loss over the grid.
    raw = r.forecaster.predict(r.splits.val, History(market.frame, cfg.coin), calibrated=False)
    pinball = metrics.pinball(raw.quantiles[:, 0, :], r.splits.val.y[:, 0], LEVELS).mean()
    assert pinball == pytest.approx(min(r.history["val_loss"]), rel=1e-3)
    # The table holds the uncalibrated quantiles beside: exactly the raw ones.
    uncalibrated, _ = r.forecast("val", "lstm.uncalibrated")
    np.testing.assert_allclose(uncalibrated.quantiles, raw.quantiles)
    # Split conformal on val: at least nominal coverage on the days it calibrated on.
    assert r.metrics["val/coverage_80"] >= 0.8 and r.metrics["val/coverage_95"] >= 0.95
    for split in ("val", "test"):
        for key in ("coverage_80", "coverage_95", "raw_coverage_80", "width_95", "width_95_return", "interval_score_95",
                    "crps", "pinball", "crps_ratio_garch", "crps_ratio_empirical", "crps_dm_p_garch", "garch/crps",
                    "empirical/coverage_95", "rolling_gaussian/crps"):
            assert np.isfinite(r.metrics[f"{split}/{key}"]), (split, key)
        assert r.metrics[f"{split}/crps_ratio_garch"] == pytest.approx(
            r.metrics[f"{split}/crps"] / r.metrics[f"{split}/garch/crps"])
    # The baselines forecast exactly the LSTM's days, fitted once on the days before validation.
    assert np.array_equal(r.forecast("test", "garch")[0].dates, test.dates)
    assert [(f.forecaster, f.period) for f in r.forecasts.fits] == [(b.name, "val") for b in INTERVAL]
    assert set(r.forecasts.table.loc[r.forecasts.table["forecaster"] == "garch", "fit"]) == {"val"}
    assert r.metrics["val/mae_ratio"] > 0  # the point forecast (the median) is scored as before
