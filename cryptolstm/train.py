"""``train(config, market) -> TrainResult``: one model, one coin, one protocol.

No argv, no environment, no MLflow here: tracking attaches through the
``on_epoch`` hooks and reads the result (`cryptolstm.tracking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.errors import DataError
from cryptolstm.forecast import Forecast
from cryptolstm.metrics import split_metrics
from cryptolstm.models.lstm import EpochHook, Lstm
from cryptolstm.splits import Splits, make_splits


@dataclass
class TrainResult:
    """What a run produced.

    ``forecasts``: split name -> `Forecast` of that split's target days, aligned with
    ``splits``; ``metrics``: ``{"split/metric": value}`` (see `metrics.split_metrics`);
    ``history``: Keras per-epoch ``loss`` / ``val_loss`` lists; ``best_epoch``: 0-based.
    """

    config: RunConfig
    model: keras.Model
    splits: Splits
    history: dict[str, list[float]]
    forecasts: dict[str, Forecast]
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping ended training before the last epoch."""
        return self.epochs_run < self.config.epochs


def train(cfg: RunConfig, market: Market, on_epoch: Sequence[EpochHook] = (), evaluate_test: bool = True,
          forecaster: Lstm | None = None) -> TrainResult:
    """Split, fit, then score every split beside persistence.

    The test split (honest protocol only) is predicted once, after training has
    finished and the best weights are restored; nothing about it feeds back.
    A search passes ``evaluate_test=False`` for its trials: selection sees
    validation days only, and the test days are read for the chosen model alone.
    ``forecaster``: an `Lstm` prepared by the caller (a search engine's own model, with its
    own hooks); by default one is made from ``cfg`` with the ``on_epoch`` hooks.
    """
    if forecaster is not None and on_epoch:
        raise ValueError("pass the on_epoch hooks to the forecaster you hand in, not to train()")
    splits = make_splits(market.frame, cfg)
    if len(splits.train) < 1:
        raise DataError("the training split is empty; widen merge_date..end_date.")
    lstm = (forecaster or Lstm(cfg, on_epoch)).fit(splits)
    forecasts, metrics = {}, {}
    for name, samples in splits.items():
        if name == "test" and not evaluate_test:
            continue
        forecasts[name] = lstm.predict(samples)
        metrics.update(split_metrics(name, forecasts[name], samples.target_close, cfg.rules.units))
    return TrainResult(cfg, lstm.model, splits, lstm.history, forecasts, metrics, lstm.best_epoch)

