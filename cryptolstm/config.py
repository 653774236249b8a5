"""One frozen configuration per run (`RunConfig`): from an experiment file (YAML) plus overrides, validated
when constructed (`ConfigError`, one sentence, before any data is read), logged whole to MLflow as params."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from cryptolstm import cells, heads
from cryptolstm import features as feature_library
from cryptolstm.errors import ConfigError, path_problem
from cryptolstm.options import at_least, at_most, coerce_fields
from cryptolstm.protocols import PROTOCOLS, Protocol, protocol

COINS = ("BTC", "ETH")
ACTIVATIONS = ("tanh", "relu", "elu", "selu", "sigmoid", "softsign", "linear", "swish", "gelu")
# hard_sigmoid_keras2 is Keras 2.x's hard sigmoid (slope 0.2), the LSTM gate default in 2018.
RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "hard_sigmoid_keras2")
LOSSES = ("mse", "mae", "huber")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a training run's result (the protocols: `cryptolstm.protocols`)."""

    # what and how
    coin: str = "BTC"
    protocol: str = "honest"
    # data
    data_dir: str = "data"
    merge_date: str = "2016-01-01"
    end_date: str | None = None
    fill_gaps: bool = False
    sealed_from: str | None = None  # the first sealed day: the data layer hands no day from it on
    # inputs (`cryptolstm.features`), windows and splits
    features: str = ",".join(feature_library.DEFAULT)
    window_len: int = 7
    horizon: int = 1
    train_frac: float = 0.70
    val_frac: float = 0.15
    # model (the 2018 notebook's by default); the head: `cryptolstm.heads`
    cell: str = cells.DEFAULT.name  # `cryptolstm.cells`; same layers, neurons and dropout whichever
    layers: int = 3
    neurons: int = 512
    dropout: float = 0.25
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    output_activation: str = "tanh"
    head: str = heads.DEFAULT.name
    loss: str = "mse"
    optimizer: str = "adam"
    learning_rate: float = 0.001
    # training
    batch_size: int = 128
    epochs: int = 53
    patience: int = 10
    shuffle: bool = False
    seed: int = 202
    ensemble: int = 1  # seeds trained (seed, seed + 1...) and forecast as one model

    def __post_init__(self) -> None:
        object.__setattr__(self, "coin", str(self.coin).upper())
        if isinstance(self.features, (list, tuple)):  # a YAML list
            object.__setattr__(self, "features", ",".join(str(f) for f in self.features))
        coerce_fields(self)
        object.__setattr__(self, "features", ",".join(feature_library.parse(self.features)))
        _validate(self)

    @property
    def rules(self) -> Protocol:
        """The `cryptolstm.protocols.Protocol` named by ``protocol``: what the protocol decides."""
        return protocol(self.protocol)

    @property
    def head_spec(self) -> heads.Head:
        """The `cryptolstm.heads.Head` named by ``head``: what the network outputs."""
        return heads.get(self.head)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input features, in order (`cryptolstm.features`)."""
        return tuple(self.features.split(","))

    @property
    def test_frac(self) -> float:
        """Share of target days held out as the test split (honest protocol)."""
        return round(1.0 - self.train_frac - self.val_frac, 10)

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with ``changes`` applied; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{name: value}``; what MLflow logs as params and what the model saves."""
        return dataclasses.asdict(self)


FIELD_NAMES = tuple(f.name for f in fields(RunConfig))

# What each field means, as `cryptolstm train --help` shows it.
HELP = {
    "coin": f"The coin forecast: {', '.join(COINS)} (the model still reads both coins' inputs).",
    "protocol": "honest (chronological train/val/test, leak-free) or seed (the 2018 notebook's split).",
    "data_dir": "Price directory (env CRYPTOLSTM_DATA_DIR).",
    "merge_date": "First day of the data (YYYY-MM-DD).",
    "end_date": "Last day of the data (YYYY-MM-DD; default: the last day in the directory).",
    "fill_gaps": "Forward-fill missing days instead of refusing them.",
    "sealed_from": "First sealed day (YYYY-MM-DD): no day from it on is read (a final test, opened once with "
                   "`cryptolstm evaluate --open-seal`).",
    "features": f"Input features, comma-separated ({', '.join(feature_library.NAMES)}), or a set: "
                f"{', '.join(feature_library.SETS)}.",
    "window_len": "Days per input window.",
    "horizon": "Days forecast at once (t+1..t+H).",
    "train_frac": "Share of the days whose targets train the model.",
    "val_frac": "Share of the days that validate it (early stopping, calibration); the rest is the test split.",
    "cell": f"Recurrent layer: {', '.join(cells.NAMES)}.",
    "layers": "Recurrent layers.",
    "neurons": "Units per recurrent layer.",
    "dropout": "Dropout after each recurrent layer, in [0, 1).",
    "activation": f"Cell activation: {', '.join(ACTIVATIONS)}.",
    "recurrent_activation": f"Gate activation: {', '.join(RECURRENT_ACTIVATIONS)}.",
    "output_activation": f"Point head's output activation: {', '.join(ACTIVATIONS)}.",
    "head": f"What the network outputs: {', '.join(heads.NAMES)}.",
    "loss": f"Point head's loss: {', '.join(LOSSES)} (a distribution head trains on its own).",
    "optimizer": f"Optimizer: {', '.join(OPTIMIZERS)}.",
    "learning_rate": "Optimizer's learning rate.",
    "batch_size": "Samples per gradient step.",
    "epochs": "Most epochs (honest: early stopping may end sooner).",
    "patience": "Epochs without a better validation loss before training stops.",
    "shuffle": "Shuffle the training samples each epoch.",
    "seed": "Seed of the weights and dropout (an ensemble's members: seed, seed + 1...).",
    "ensemble": "Networks trained with successive seeds and forecast as one (mean points, mean quantiles).",
}


def _validate(c: RunConfig) -> None:
    for name, choices in (("coin", COINS), ("protocol", PROTOCOLS), ("activation", ACTIVATIONS),
                          ("output_activation", ACTIVATIONS), ("recurrent_activation", RECURRENT_ACTIVATIONS),
                          ("head", heads.NAMES), ("cell", cells.NAMES), ("loss", LOSSES), ("optimizer", OPTIMIZERS)):
        if getattr(c, name) not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {getattr(c, name)!r}.")
    rules, head = c.rules, c.head_spec
    if c.end_date is not None and c.end_date <= c.merge_date:  # ISO dates compare as text
        raise ConfigError(f"end_date ({c.end_date}) must be after merge_date ({c.merge_date}).")
    if c.sealed_from is not None and c.sealed_from <= c.merge_date:
        raise ConfigError(f"sealed_from ({c.sealed_from}) must be after merge_date ({c.merge_date}): a seal from "
                          f"there leaves no day to train on.")
    # A window of one day normalises to all zeros and leaves persistence undefined.
    at_least(c, 2, "window_len")
    at_least(c, 1, "horizon", "layers", "neurons", "batch_size", "epochs", "patience", "ensemble")
    at_most(c, "window_len", "horizon", "ensemble")
    # A head centred on persistence needs targets relative to the last close; one scaled by a feature, that feature.
    if head.pinned and rules.reference != "last":
        raise ConfigError(f"head {c.head} centres its forecast on the last close, which the {c.protocol} protocol's "
                          f"targets are not relative to; use protocol honest.")
    if head.scale_feature and head.scale_feature not in c.feature_names:
        raise ConfigError(f"head {c.head} scales its forecast by the {head.scale_feature} feature, which the features "
                          f"({c.features}) lack; add it: --features {c.features},{head.scale_feature}.")
    if not 0.0 <= c.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {c.dropout}.")
    if not c.learning_rate > 0.0:
        raise ConfigError(f"learning_rate must be > 0, got {c.learning_rate}.")
    if not 0.0 < c.train_frac < 1.0:
        raise ConfigError(f"train_frac must be in (0, 1), got {c.train_frac}.")
    if rules.has_test and not (0.0 < c.val_frac and c.test_frac >= 0.0):
        raise ConfigError(f"val_frac must be > 0 and train_frac + val_frac <= 1 (the rest is the test split; none for "
                          f"a refit on every day); got train_frac={c.train_frac}, val_frac={c.val_frac}.")


def read_experiment(path: str | Path) -> dict[str, Any]:
    """Read an experiment file's ``{field: value}`` mapping, checking its keys."""
    path = Path(path)
    if problem := path_problem(path):
        raise ConfigError(f"experiment file {path} {problem}.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"experiment file {path} is not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"experiment file {path} must be a mapping of parameter: value.")
    if unknown := sorted(set(raw) - set(FIELD_NAMES)):
        raise ConfigError(f"experiment file {path} has unknown key(s) {', '.join(unknown)}; "
                          f"known keys are {', '.join(FIELD_NAMES)}.")
    if empty := sorted(k for k, v in raw.items() if v is None):
        raise ConfigError(f"experiment file {path} gives no value for {', '.join(empty)}; give one or delete the line.")
    return raw


def load_config(experiment: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Build the run's config: defaults, then the experiment file, then non-None overrides."""
    values = read_experiment(experiment) if experiment else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if unknown := sorted(set(values) - set(FIELD_NAMES)):
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}.")
    return RunConfig(**values)
