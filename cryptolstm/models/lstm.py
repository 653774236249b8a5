"""The 2018 tutorial's stacked recurrent network (any depth, width, cell and head) as a forecaster (`Lstm`,
`Ensemble`), built from a `RunConfig`, never a search trial, so every search engine builds the same network."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import keras
import numpy as np
from keras import layers as kl

from cryptolstm import cells, features
from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import TrainingError
from cryptolstm.heads import HEADS
from cryptolstm.models.base import History
from cryptolstm.models.network import NetworkForecaster
from cryptolstm.windowing import fit_splits

WARM_PATIENCE = 3  # a warm fit starts near its best: epochs without improvement before it stops
EpochHook = Callable[[int, dict], None]  # (0-based epoch, Keras logs) after each epoch; may raise to stop


@keras.saving.register_keras_serializable(package="cryptolstm")
def hard_sigmoid_keras2(x):
    """Keras 2's hard sigmoid ``clip(0.2 x + 0.5, 0, 1)``, the 2018 gate activation (Keras 3's has slope 1/6)."""
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="cryptolstm")
class HeadOutput(kl.Layer):
    """The head's map from the last Dense layer's raw outputs to its parameters (`Head.activate`); given
    ``[raw, window]`` when the head reads a feature (column ``scale_column``) of the window's last day."""

    def __init__(self, head: str, scale_column: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.head, self.scale_column = head, scale_column

    def call(self, inputs):
        if self.scale_column is None:
            return HEADS[self.head].activate(inputs, keras.ops)
        raw, window = inputs
        return HEADS[self.head].activate(raw, keras.ops, scale=window[:, -1, self.scale_column:self.scale_column + 1])

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


def build_lstm(cfg: RunConfig, window_len: int, n_features: int, unroll: bool | None = None,
               jit_compile: bool | str = "auto") -> keras.Model:
    """Compiled model: (batch, window_len, n_features) windows -> the head's parameters of the next ``cfg.horizon``
    days (seed first: `set_seed`); ``unroll`` (default `default_unroll`) and ``jit_compile`` are Keras' own."""
    head = cfg.head_spec
    window = keras.Input(shape=(window_len, n_features), name="window")
    make = getattr(kl, cells.CELLS[cfg.cell].layer)
    gate = hard_sigmoid_keras2 if cfg.recurrent_activation == "hard_sigmoid_keras2" else cfg.recurrent_activation
    unroll = default_unroll() if unroll is None else unroll
    stack = []  # each recurrent layer and its Dropout, made in the order they run: weights depend on it
    for depth in range(cfg.layers):
        stack += [make(cfg.neurons, activation=cfg.activation, recurrent_activation=gate, unroll=unroll,
                       return_sequences=depth < cfg.layers - 1, name=f"{cfg.cell}_{depth}"),
                  kl.Dropout(cfg.dropout, name=f"dropout_{depth}")]
    dense = kl.Dense(head.width(cfg.horizon), activation=None if head.distribution else cfg.output_activation,
                     name="raw" if head.distribution else "return")
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
    optimizer = keras.optimizers.get({"class_name": cfg.optimizer, "config": {"learning_rate": cfg.learning_rate}})
    model.compile(loss=HeadLoss(head.name) if head.distribution else cfg.loss, optimizer=optimizer,
                  metrics=["mae"] if not head.distribution else [], jit_compile=jit_compile)
    return model


def flops_per_sample(cfg: RunConfig, window_len: int, n_features: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of `build_lstm`'s network (gate arithmetic left out)."""
    gates, units = cells.CELLS[cfg.cell].gates, cfg.neurons
    inputs = [n_features] + [units] * (cfg.layers - 1)
    recurrent = sum(2 * window_len * gates * units * (n_in + units + 1) for n_in in inputs)
    return recurrent + 2 * (units + 1) * cfg.head_spec.width(cfg.horizon)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend, and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def own_default_seeds(seed: int) -> Iterator[None]:
    """Inside, Keras draws its layers' seeds from our own ``random.Random(seed)``, not the process-wide one that a
    Dask worker's other threads draw from while a fit runs: the same weights as in a process alone."""
    from keras.src.random import seed_generator

    shared = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = shared


def default_unroll() -> bool:
    """Whether the recurrent steps are written out as one graph (``unroll``): on a CPU yes (about 7 % faster
    for the 2018 model, bench/README.md); on a GPU no, since Keras' cuDNN kernel needs the loop."""
    return training_device().endswith(" CPU")


def training_device() -> str:
    """Keras' backend and the first GPU it sees: ``tensorflow on CPU``, ``jax on cuda:0 NVIDIA H100 80GB HBM3``..."""
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
    """An ``on_epoch(epoch, logs)`` hook as a Keras callback, with a progress bar's ``start(total)`` and ``end()``."""

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
    """The network of ``cfg`` as a forecaster: ``fit`` trains on ``history.train`` and validates (early stopping
    where the protocol says so) and calibrates on ``history.val``; a search engine may hand in its own built
    ``model`` (resumed at ``initial_epoch``). After ``fit``: ``history``, ``best_epoch`` (0-based), ``splits``."""

    def __init__(self, cfg: RunConfig, on_epoch: Sequence[EpochHook] = (), model: keras.Model | None = None,
                 initial_epoch: int = 0, callbacks: Sequence[keras.callbacks.Callback] = (), warm: bool = False) -> None:
        super().__init__(cfg)
        self.model, self.initial_epoch, self.warm = model, initial_epoch, warm
        self.callbacks = [*(_Hook(h) for h in on_epoch), *callbacks]
        self.history, self.best_epoch, self.splits = {}, 0, None  # set by fit

    @property
    def members(self) -> list[Lstm]:
        """An ensemble of one (`Ensemble.members`)."""
        return [self]

    @property
    def networks(self) -> list:
        return [] if self.model is None else [partial(self.model.predict, batch_size=1024, verbose=0)]

    def continued(self, epochs: int, on_epoch: Sequence[EpochHook] = (), patience: int | None = None) -> Lstm:
        """A warm start from these weights: at most ``epochs`` more, ``patience`` default `WARM_PATIENCE`."""
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
        start = None
        if self.warm and stopper:  # (validation loss, weights) it starts from: epoch 0 of its early stopping
            loss = self.model.evaluate(X_val, val.y, batch_size=self.cfg.batch_size, verbose=0)
            start = float(np.atleast_1d(loss)[0]), self.model.get_weights()
        callbacks = [keras.callbacks.TerminateOnNaN(), *self.callbacks, *([stopper] if stopper else [])]
        hist = self.model.fit(X_train, train.y, epochs=self.cfg.epochs, batch_size=self.cfg.batch_size,
                              validation_data=(X_val, val.y), shuffle=self.cfg.shuffle, verbose=0,
                              initial_epoch=self.initial_epoch, callbacks=callbacks)
        self.history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        if not np.all(np.isfinite(self.history["loss"])):
            raise TrainingError(f"training loss became NaN or infinite in epoch {self.epochs_run}; try a lower "
                                f"learning_rate (now {self.cfg.learning_rate}) or a bounded output_activation.")
        # Keras numbers epochs from initial_epoch on, so stopper.best_epoch is already absolute.
        self.best_epoch = int(stopper.best_epoch) if stopper else self.initial_epoch + self.epochs_run - 1
        best = float(np.min(self.history["val_loss"]))
        if start is not None and start[0] <= best:  # no epoch beat the weights it started from: keep them
            self.model.set_weights(start[1])
            self.best_epoch, best = self.initial_epoch - 1, start[0]
        self.params = {"best_epoch": self.best_epoch + 1, "epochs_run": self.epochs_run, "val_loss": best}
        self.calibrate(val, history)
        return self

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


class _MemberHook:
    """The hook of ensemble member ``member`` (1, 2...): its logs carry ``member`` (logged under ``member<k>/``)."""

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
    """``cfg.ensemble`` networks seeded ``cfg.seed``, ``cfg.seed + 1``... forecasting and calibrated as one."""

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
