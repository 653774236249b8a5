"""The stacked LSTM of the 2018 tutorial, generalised to any depth and width.

The builder takes plain values (a `RunConfig`), never a search trial, so every
search engine and the plain training run build the same network.
"""

from __future__ import annotations

import keras
from keras import layers as kl

from cryptolstm.config import RunConfig


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
