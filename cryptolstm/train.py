"""``train(config, market) -> TrainResult``: one model, one coin, one protocol.

No argv, no environment, no MLflow here: tracking is attached through Keras
callbacks by the caller (`cryptolstm.tracking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.errors import DataError, TrainingError
from cryptolstm.evaluate import split_metrics
from cryptolstm.models.lstm import build_lstm
from cryptolstm.splits import Splits, make_splits


@dataclass
class TrainResult:
    """What a run produced.

    ``predictions``: split name -> (n,) predicted target returns, aligned with
    ``splits``; ``metrics``: ``{"split/metric": value}`` (see `evaluate.split_metrics`);
    ``history``: Keras per-epoch ``loss`` / ``val_loss`` lists.
    """

    config: RunConfig
    model: keras.Model
    splits: Splits
    history: dict[str, list[float]]
    predictions: dict[str, np.ndarray]
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and Keras/TensorFlow, and make TF ops deterministic on CPU."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(
    cfg: RunConfig,
    splits: Splits,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    model: keras.Model | None = None,
    initial_epoch: int = 0,
) -> tuple[keras.Model, dict[str, list[float]], int]:
    """Fit a model on ``splits.train``, validating on ``splits.val``.

    The model is built from ``cfg`` unless one is given (keras-tuner builds its
    own and may resume it at ``initial_epoch``). Honest protocol: early stopping
    on ``val_loss`` with the best weights restored. Seed protocol: a fixed
    number of epochs, as in the notebook. Returns the model, the Keras history
    and the 0-based best epoch.
    """
    set_seed(cfg.seed)
    train, val = splits.train, splits.val
    if model is None:
        model = build_lstm(cfg, cfg.window_len, train.X.shape[2])
    stopper = None
    cbs = [keras.callbacks.TerminateOnNaN(), *callbacks]
    if cfg.protocol == "honest":
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.patience, restore_best_weights=True
        )
        cbs.append(stopper)
    hist = model.fit(
        train.X,
        train.y,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        validation_data=(val.X, val.y),
        shuffle=cfg.shuffle,
        verbose=0,
        callbacks=cbs,
        initial_epoch=initial_epoch,
    )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    if not np.all(np.isfinite(history["loss"])):
        raise TrainingError(
            f"training loss became NaN or infinite in epoch {len(history['loss'])}; "
            f"try a lower learning_rate (now {cfg.learning_rate}) or a bounded output_activation."
        )
    # Keras numbers epochs from initial_epoch on, so stopper.best_epoch is already absolute.
    best = int(stopper.best_epoch) if stopper is not None else initial_epoch + len(history["loss"]) - 1
    return model, history, best


def predict(model: keras.Model, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(n, w, f) windows -> (n,) predicted target returns."""
    if len(X) == 0:
        return np.zeros(0)
    return model.predict(X, batch_size=batch_size, verbose=0).reshape(-1).astype(np.float64)


def train(
    cfg: RunConfig,
    market: Market,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    evaluate_test: bool = True,
    model: keras.Model | None = None,
    initial_epoch: int = 0,
) -> TrainResult:
    """Split, fit, then score every split beside persistence.

    The test split (honest protocol only) is predicted once, after training has
    finished and the best weights are restored; nothing about it feeds back.
    A search passes ``evaluate_test=False`` for its trials: selection sees
    validation days only, and the test days are read for the chosen model alone.
    """
    splits = make_splits(market.frame, cfg)
    if len(splits.train) < 1:
        raise DataError("the training split is empty; widen merge_date..end_date.")
    model, history, best = fit(cfg, splits, callbacks, model, initial_epoch)
    predictions, metrics = {}, {}
    for name, samples in splits.items():
        if name == "test" and not evaluate_test:
            continue
        predictions[name] = predict(model, samples.X)
        metrics.update(split_metrics(name, samples, predictions[name], cfg.protocol))
    return TrainResult(cfg, model, splits, history, predictions, metrics, best)
