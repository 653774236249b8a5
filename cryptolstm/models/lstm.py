"""The stacked LSTM of the 2018 tutorial, generalised to any depth and width, as a forecaster.

The builder takes plain values (a `RunConfig`), never a search trial, so every
search engine and the plain training run build the same network. `Lstm` gives
it the interface of every forecaster (`cryptolstm.models.base`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers as kl

from cryptolstm.config import RunConfig
from cryptolstm.errors import TrainingError
from cryptolstm.forecast import Forecast
from cryptolstm.splits import Splits
from cryptolstm.windowing import WindowSet

EpochHook = Callable[[int, dict], None]  # (0-based epoch, Keras logs) after each epoch; may raise to stop


@keras.saving.register_keras_serializable(package="cryptolstm")
def hard_sigmoid_keras2(x):
    """Keras 2.x's hard sigmoid, ``clip(0.2 x + 0.5, 0, 1)``: the LSTM gate activation
    of 2018 (Keras 3's ``hard_sigmoid`` uses slope 1/6 instead)."""
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def _recurrent_activation(name: str):
    return hard_sigmoid_keras2 if name == "hard_sigmoid_keras2" else name


def _optimizer(cfg: RunConfig) -> keras.optimizers.Optimizer:
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    return classes[cfg.optimizer](learning_rate=cfg.learning_rate)


def build_lstm(cfg: RunConfig, window_len: int, n_features: int) -> keras.Model:
    """Compiled model mapping (batch, window_len, n_features) windows to (batch, 1) returns.

    ``cfg.layers`` LSTM layers of ``cfg.neurons`` units, each followed by
    Dropout(``cfg.dropout``), then Dense(1) with ``cfg.output_activation``.
    Call `keras.utils.set_random_seed` first for reproducible weights.
    """
    model = keras.Sequential(name=f"lstm_{cfg.coin.lower()}")
    model.add(keras.Input(shape=(window_len, n_features), name="window"))
    for depth in range(cfg.layers):
        model.add(
            kl.LSTM(
                cfg.neurons,
                activation=cfg.activation,
                recurrent_activation=_recurrent_activation(cfg.recurrent_activation),
                return_sequences=depth < cfg.layers - 1,
                name=f"lstm_{depth}",
            )
        )
        model.add(kl.Dropout(cfg.dropout, name=f"dropout_{depth}"))
    model.add(kl.Dense(1, activation=cfg.output_activation, name="return"))
    model.compile(loss=cfg.loss, optimizer=_optimizer(cfg), metrics=["mae"])
    return model


def flops_per_sample(cfg: RunConfig, window_len: int, n_features: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of `build_lstm`'s network.

    Per LSTM layer and step: 4 gates x units x (inputs + units + 1 bias) MACs;
    the elementwise gate arithmetic is left out (under 1%).
    """
    total, inputs = 0, n_features
    for _ in range(cfg.layers):
        total += 2 * window_len * 4 * cfg.neurons * (inputs + cfg.neurons + 1)
        inputs = cfg.neurons
    return total + 2 * (inputs + 1)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend, and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def training_device() -> str:
    """Where Keras trains here: its backend and the first GPU it sees (``tensorflow on CPU``,
    ``jax on cuda:0 NVIDIA H100 80GB HBM3``...)."""
    backend = keras.backend.backend()
    gpus: list[str] = []
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    elif backend == "jax":
        import jax

        gpus = [f"{d} {getattr(d, 'device_kind', '')}".strip() for d in jax.devices() if d.platform == "gpu"]
    elif backend == "torch":
        import torch

        gpus = [f"cuda:0 {torch.cuda.get_device_name(0)}"] if torch.cuda.is_available() else []
    return f"{backend} on {gpus[0] if gpus else 'CPU'}"


class _Hook(keras.callbacks.Callback):
    """A plain ``on_epoch(epoch, logs)`` function as a Keras callback (the logs dict is Keras' own,
    so a hook may add to it)."""

    def __init__(self, on_epoch: EpochHook):
        super().__init__()
        self.on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.on_epoch(epoch, logs if logs is not None else {})


class Lstm:
    """The LSTM of ``cfg`` as a forecaster.

    ``fit(splits)`` trains on ``splits.train``, validating on ``splits.val``: early
    stopping with the best weights restored where the protocol says so, else a fixed
    number of epochs. ``on_epoch`` hooks run after every epoch (tracking, pruning);
    ``callbacks`` are further Keras callbacks. A ``model`` may be handed in, already
    built (and resumed at ``initial_epoch``), by a search engine that manages its own.
    After ``fit``: ``history`` (Keras' per-epoch ``loss``/``val_loss``), ``best_epoch``
    (0-based) and ``params`` (best epoch, epochs run, best validation loss).
    """

    name = "lstm"

    def __init__(self, cfg: RunConfig, on_epoch: Sequence[EpochHook] = (), model: keras.Model | None = None,
                 initial_epoch: int = 0, callbacks: Sequence[keras.callbacks.Callback] = ()) -> None:
        self.cfg, self.model, self.initial_epoch = cfg, model, initial_epoch
        self.callbacks = [*(_Hook(h) for h in on_epoch), *callbacks]
        self.history: dict[str, list[float]] = {}
        self.best_epoch = 0
        self.params: dict[str, float] = {}

    def fit(self, splits: Splits, closes: pd.Series | None = None) -> Lstm:
        set_seed(self.cfg.seed)
        train, val = splits.train, splits.val
        if self.model is None:
            self.model = build_lstm(self.cfg, self.cfg.window_len, train.X.shape[2])
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.cfg.patience,
                                                restore_best_weights=True) if self.cfg.rules.early_stopping else None
        hist = self.model.fit(
            train.X, train.y, epochs=self.cfg.epochs, batch_size=self.cfg.batch_size,
            validation_data=(val.X, val.y), shuffle=self.cfg.shuffle, verbose=0, initial_epoch=self.initial_epoch,
            callbacks=[keras.callbacks.TerminateOnNaN(), *self.callbacks, *([stopper] if stopper else [])],
        )
        self.history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        self._check_finite()
        # Keras numbers epochs from initial_epoch on, so stopper.best_epoch is already absolute.
        self.best_epoch = int(stopper.best_epoch) if stopper else self.initial_epoch + self.epochs_run - 1
        self.params = {"best_epoch": self.best_epoch + 1, "epochs_run": self.epochs_run,
                       "val_loss": float(np.min(self.history["val_loss"]))}
        return self

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def _check_finite(self) -> None:
        if not np.all(np.isfinite(self.history["loss"])):
            raise TrainingError(
                f"training loss became NaN or infinite in epoch {self.epochs_run}; try a lower learning_rate "
                f"(now {self.cfg.learning_rate}) or a bounded output_activation."
            )

    def predict(self, samples: WindowSet, closes: pd.Series | None = None) -> Forecast:
        return Forecast.of_samples(samples, predict_returns(self.model, samples.X))


def predict_returns(model: keras.Model, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(n, w, f) windows -> (n,) predicted target returns."""
    if len(X) == 0:
        return np.zeros(0)
    return model.predict(X, batch_size=batch_size, verbose=0).reshape(-1).astype(np.float64)
