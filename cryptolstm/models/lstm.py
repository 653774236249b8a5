"""The stacked recurrent network of the 2018 tutorial, generalised to any depth, width, cell and
head, as a forecaster.

The builder takes plain values (a `RunConfig`), never a search trial, so every search engine
and the plain training run build the same network. Its output layer is the head's
(`cryptolstm.heads`): a Dense layer of the head's width, then the head's map to its parameters
(`HeadOutput`), trained on the head's loss (`HeadLoss`). `Lstm` gives the network the interface
of every forecaster (`cryptolstm.models.base`); an ensemble (`cfg.ensemble` > 1) is several of
them forecasting as one (`Ensemble`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence

import keras
import numpy as np
from keras import layers as kl

from cryptolstm import features
from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import TrainingError
from cryptolstm.heads import HEADS
from cryptolstm.models.network import NetworkForecaster
from cryptolstm import cells
from cryptolstm.models.base import History
from cryptolstm.windowing import fit_splits

WARM_PATIENCE = 3  # a warm fit starts near its best: epochs without improvement before it stops
EpochHook = Callable[[int, dict], None]  # (0-based epoch, Keras logs) after each epoch; may raise to stop
UNROLL: bool | None = None  # None: recurrent steps written out on a CPU, a loop on a GPU (see `default_unroll`)


@keras.saving.register_keras_serializable(package="cryptolstm")
def hard_sigmoid_keras2(x):
    """Keras 2.x's hard sigmoid, ``clip(0.2 x + 0.5, 0, 1)``: the LSTM gate activation
    of 2018 (Keras 3's ``hard_sigmoid`` uses slope 1/6 instead)."""
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def _recurrent_activation(name: str):
    return hard_sigmoid_keras2 if name == "hard_sigmoid_keras2" else name


@keras.saving.register_keras_serializable(package="cryptolstm")
class HeadOutput(kl.Layer):
    """The head's map from the last Dense layer's raw outputs to its parameters
    (`cryptolstm.heads.Head.activate`); given ``[raw, window]`` when the head reads a feature of
    the window's last day (``scale_column``: its column)."""

    def __init__(self, head: str, scale_column: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.head, self.scale_column = head, scale_column

    def call(self, inputs):
        if self.scale_column is None:
            return HEADS[self.head].activate(inputs, keras.ops)
        raw, window = inputs
        scale = window[:, -1, self.scale_column:self.scale_column + 1]
        return HEADS[self.head].activate(raw, keras.ops, scale=scale)

    def get_config(self) -> dict:
        return {**super().get_config(), "head": self.head, "scale_column": self.scale_column}


@keras.saving.register_keras_serializable(package="cryptolstm")
class HeadLoss(keras.losses.Loss):
    """The head's training loss (`cryptolstm.heads.Head.loss`)."""

    def __init__(self, head: str, name: str | None = None, **kwargs):
        super().__init__(name=name or f"{head}_loss", **kwargs)
        self.head = head

    def call(self, y_true, y_pred):
        return HEADS[self.head].loss(y_true, y_pred, keras.ops)

    def get_config(self) -> dict:
        return {**super().get_config(), "head": self.head}


def _optimizer(cfg: RunConfig) -> keras.optimizers.Optimizer:
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    return classes[cfg.optimizer](learning_rate=cfg.learning_rate)


def _cell(cfg: RunConfig, depth: int, unroll: bool = False) -> kl.Layer:
    """Layer ``depth`` of the recurrent stack: ``cfg.cell`` (LSTM or GRU), ``cfg.neurons`` units
    (``unroll``: its steps written out as one graph instead of a loop)."""
    make = getattr(kl, cells.get(cfg.cell).layer)
    return make(cfg.neurons, activation=cfg.activation, recurrent_activation=_recurrent_activation(cfg.recurrent_activation),
                return_sequences=depth < cfg.layers - 1, name=f"{cfg.cell}_{depth}", unroll=unroll)


def _stack(cfg: RunConfig, unroll: bool = False) -> list[kl.Layer]:
    out = []
    for depth in range(cfg.layers):
        out += [_cell(cfg, depth, unroll), kl.Dropout(cfg.dropout, name=f"dropout_{depth}")]
    return out


def build_lstm(cfg: RunConfig, window_len: int, n_features: int, unroll: bool | None = None,
               jit_compile: bool | str = "auto") -> keras.Model:
    """Compiled model mapping (batch, window_len, n_features) windows to the head's parameters of
    the ``cfg.horizon`` days after each window (all at once: a direct multi-output forecast).

    ``cfg.layers`` recurrent layers (``cfg.cell``) of ``cfg.neurons`` units, each followed by
    Dropout(``cfg.dropout``), then the head: Dense(width) (with ``cfg.output_activation`` and
    ``cfg.loss`` for the point head: the 2018 model) and the head's map to its parameters, trained
    on its loss. Call `keras.utils.set_random_seed` first for reproducible weights. ``unroll`` and
    ``jit_compile`` (Keras' own options; default: `default_unroll` and Keras' choice) are for the
    throughput benchmark.
    """
    head = cfg.head_spec
    window = keras.Input(shape=(window_len, n_features), name="window")
    stack = _stack(cfg, default_unroll() if unroll is None else unroll)  # made in the order they run: weights depend on it
    dense = kl.Dense(head.width(cfg.horizon), activation=head.dense_activation(cfg.output_activation),
                     name="return" if not head.distribution else "raw")
    if head.scale_feature is None:
        model = keras.Sequential([window, *stack, dense, *([HeadOutput(head.name, name="return")] if head.distribution
                                                          else [])], name=f"{cfg.cell}_{cfg.coin.lower()}")
    else:  # the head reads a feature of the window's last day: a functional graph
        hidden = window
        for layer in stack:
            hidden = layer(hidden)
        column = features.columns(cfg.feature_names, COINS).index(features.column(cfg.coin, head.scale_feature))
        params = HeadOutput(head.name, column, name="return")([dense(hidden), window])
        model = keras.Model(window, params, name=f"{cfg.cell}_{cfg.coin.lower()}")
    loss = head.configured_loss(cfg.loss) or HeadLoss(head.name)
    model.compile(loss=loss, optimizer=_optimizer(cfg), metrics=["mae"] if not head.distribution else [],
                  jit_compile=jit_compile)
    return model


def flops_per_sample(cfg: RunConfig, window_len: int, n_features: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of `build_lstm`'s network.

    Per recurrent layer and step: gates x units x (inputs + units + 1 bias) MACs (4 gates for an
    LSTM, 3 for a GRU); the elementwise gate arithmetic is left out (under 1%)."""
    gates = cells.get(cfg.cell).gates
    total, n_in = 0, n_features
    for _ in range(cfg.layers):
        total += 2 * window_len * gates * cfg.neurons * (n_in + cfg.neurons + 1)
        n_in = cfg.neurons
    return total + 2 * (n_in + 1) * cfg.head_spec.width(cfg.horizon)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend, and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def own_default_seeds(seed: int) -> Iterator[None]:
    """Inside, the seeds Keras draws for its layers' initializers and dropout (Python's
    ``random.randint``, process-wide) come from a generator of this thread's own, seeded with
    ``seed`` exactly as `set_seed` seeds the process's: the same weights as in a process that does
    nothing else, also on a Dask worker, whose other threads draw from ``random`` while a fit runs."""
    from keras.src.random import seed_generator

    shared = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = shared


def default_unroll() -> bool:
    """Whether the recurrent steps are written out as one graph (``unroll``): on a CPU yes, about 7 % more
    samples per second for the 2018 model with the same results to float rounding (bench/README.md);
    on a GPU no, since Keras' cuDNN kernel needs the loop. `UNROLL` set to a bool decides instead."""
    return training_device().endswith(" CPU") if UNROLL is None else UNROLL


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
    """An ``on_epoch(epoch, logs)`` hook as a Keras callback (the logs dict is Keras' own, so a hook
    may add to it); a hook that has them is also told the fit's epochs as it starts (``start(total)``)
    and when it ends (``end()``): a progress bar's."""

    def __init__(self, on_epoch: EpochHook):
        super().__init__()
        self.on_epoch = on_epoch

    def on_train_begin(self, logs: dict | None = None) -> None:
        if hasattr(self.on_epoch, "start"):
            self.on_epoch.start(self.params.get("epochs"))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.on_epoch(epoch, logs if logs is not None else {})

    def on_train_end(self, logs: dict | None = None) -> None:
        if hasattr(self.on_epoch, "end"):
            self.on_epoch.end()


class Lstm(NetworkForecaster):
    """The network of ``cfg`` as a forecaster.

    ``fit(history)`` fits the features' parameters on the training period, trains on its samples,
    validating on ``history.val``: early stopping with the best weights restored where the
    protocol says so, else a fixed number of epochs; then calibrates the intervals on the
    validation samples. ``on_epoch`` hooks run after every epoch (tracking, pruning);
    ``callbacks`` are further Keras callbacks. A ``model`` may be handed in, already built (and
    resumed at ``initial_epoch``), by a search engine that manages its own, or trained further (a
    warm start, `continued`). After ``fit``: ``history`` (Keras' per-epoch ``loss``/``val_loss``),
    ``best_epoch`` (0-based), ``params`` (best epoch, epochs run, best validation loss),
    ``calibration`` (distribution heads) and ``splits`` (the samples it trained on).
    """

    def __init__(self, cfg: RunConfig, on_epoch: Sequence[EpochHook] = (), model: keras.Model | None = None,
                 initial_epoch: int = 0, callbacks: Sequence[keras.callbacks.Callback] = (), warm: bool = False) -> None:
        super().__init__(cfg)
        self.model, self.initial_epoch, self.warm = model, initial_epoch, warm
        self.callbacks = [*(_Hook(h) for h in on_epoch), *callbacks]
        self.history: dict[str, list[float]] = {}
        self.best_epoch = 0
        self.splits = None

    @property
    def members(self) -> list[Lstm]:
        """A single network is an ensemble of one (`Ensemble.members`)."""
        return [self]

    @property
    def networks(self) -> list:
        return [] if self.model is None else [self._forward]

    def _forward(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X, batch_size=1024, verbose=0)

    def continued(self, epochs: int, on_epoch: Sequence[EpochHook] = (), patience: int | None = None) -> Lstm:
        """A forecaster that starts from this one's trained weights (and optimizer state) and trains
        at most ``epochs`` more epochs on its next fit (calling ``on_epoch``), early-stopped after
        ``patience`` epochs without improvement (default `WARM_PATIENCE`, at most the config's): a
        warm start, which keeps its starting weights if no epoch beats them (see `fit`)."""
        patience = patience or min(self.cfg.patience, WARM_PATIENCE)
        return Lstm(self.cfg.replace(epochs=epochs, patience=patience), on_epoch, model=self.model, warm=True)

    def fit(self, history: History) -> Lstm:
        set_seed(self.cfg.seed)
        frame = history.frame
        self.state = features.fit(self.cfg.feature_names, frame.loc[: history.train.last], COINS)
        self.splits = fit_splits(frame, self.cfg, history.train, history.val)
        train, val = self.splits.train, self.splits.val
        X_train, X_val = self.windows(train, history), self.windows(val, history)
        if self.model is None:
            with own_default_seeds(self.cfg.seed):
                self.model = build_lstm(self.cfg, self.cfg.window_len, X_train.shape[2])
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.cfg.patience,
                                                restore_best_weights=True) if self.cfg.rules.early_stopping else None
        start = self._start(X_val, val.y) if self.warm and stopper else None
        hist = self.model.fit(
            X_train, train.y, epochs=self.cfg.epochs, batch_size=self.cfg.batch_size, validation_data=(X_val, val.y), shuffle=self.cfg.shuffle, verbose=0,
            initial_epoch=self.initial_epoch,
            callbacks=[keras.callbacks.TerminateOnNaN(), *self.callbacks, *([stopper] if stopper else [])],
        )
        self.history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        self._check_finite()
        # Keras numbers epochs from initial_epoch on, so stopper.best_epoch is already absolute.
        self.best_epoch = int(stopper.best_epoch) if stopper else self.initial_epoch + self.epochs_run - 1
        best = float(np.min(self.history["val_loss"]))
        if start is not None and start[0] <= best:  # no epoch beat the weights it started from: keep them
            self.model.set_weights(start[1])
            self.best_epoch, best = self.initial_epoch - 1, start[0]
        self.params = {"best_epoch": self.best_epoch + 1, "epochs_run": self.epochs_run, "val_loss": best}
        self.calibrate(val, history)
        return self

    def _start(self, X_val: np.ndarray, y_val: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """(validation loss, weights) of a warm fit's starting weights: epoch 0 of its early stopping."""
        loss = self.model.evaluate(X_val, y_val, batch_size=self.cfg.batch_size, verbose=0)
        return float(np.atleast_1d(loss)[0]), self.model.get_weights()

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def _check_finite(self) -> None:
        if not np.all(np.isfinite(self.history["loss"])):
            raise TrainingError(
                f"training loss became NaN or infinite in epoch {self.epochs_run}; try a lower learning_rate "
                f"(now {self.cfg.learning_rate}) or a bounded output_activation."
            )


class _MemberHook:
    """An ``on_epoch`` hook of ensemble member ``member`` (1, 2...): its logs carry ``member``, so
    that tracking logs them under ``member<k>/`` and pruning reads the first member only."""

    def __init__(self, hook: EpochHook, member: int) -> None:
        self.hook, self.member = hook, member
        if hasattr(hook, "start"):
            self.start, self.end = hook.start, hook.end

    def __call__(self, epoch: int, logs: dict) -> None:
        self.hook(epoch, {**logs, "member": self.member})


def _member_hooks(on_epoch: Sequence[EpochHook], member: int) -> Sequence[EpochHook]:
    """The ``on_epoch`` hooks of ensemble member ``member``: the first member's as they are."""
    return [_MemberHook(hook, member) for hook in on_epoch] if member else on_epoch


class Ensemble(NetworkForecaster):
    """``cfg.ensemble`` networks of ``cfg`` trained with the seeds ``cfg.seed``, ``cfg.seed + 1``...,
    forecasting as one: the mean of their point forecasts and the mean of their quantiles
    (`cryptolstm.forecast.Forecast.mean_of`), calibrated on the validation days as one model."""

    def __init__(self, cfg: RunConfig, on_epoch: Sequence[EpochHook] = (), members: Sequence[Lstm] = ()) -> None:
        super().__init__(cfg)
        self.members = list(members) or [Lstm(cfg.replace(seed=cfg.seed + k, ensemble=1), _member_hooks(on_epoch, k))
                                         for k in range(cfg.ensemble)]

    def continued(self, epochs: int, on_epoch: Sequence[EpochHook] = (), patience: int | None = None) -> Ensemble:
        """The ensemble warm-started: each member from its own trained weights (`Lstm.continued`)."""
        return Ensemble(self.cfg, members=[member.continued(epochs, _member_hooks(on_epoch, k), patience)
                                           for k, member in enumerate(self.members)])

    @property
    def networks(self) -> list:
        return [network for member in self.members for network in member.networks]

    def fit(self, history: History) -> Ensemble:
        for member in self.members:
            member.fit(history)
        first = self.members[0]
        self.state, self.history, self.best_epoch, self.splits = first.state, first.history, first.best_epoch, first.splits
        self.params = {f"member{k}.{name}": value for k, m in enumerate(self.members) for name, value in m.params.items()}
        self.calibrate(first.splits.val, history)
        return self

    @property
    def epochs_run(self) -> int:
        return self.members[0].epochs_run


def make_forecaster(cfg: RunConfig, on_epoch: Sequence[EpochHook] = ()) -> Lstm | Ensemble:
    """The network forecaster of ``cfg``: one `Lstm`, or an `Ensemble` of ``cfg.ensemble`` of them."""
    return Ensemble(cfg, on_epoch) if cfg.ensemble > 1 else Lstm(cfg, on_epoch)
