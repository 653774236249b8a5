"""``train(config, market) -> TrainResult``: one model, one coin, one protocol.

No argv, no environment, no MLflow here: tracking attaches through the
``on_epoch`` hooks and reads the result (`cryptolstm.tracking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import pandas as pd

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.errors import DataError
from cryptolstm.forecast import Forecast
from cryptolstm.intervals import Calibration
from cryptolstm.metrics import interval_metrics, split_metrics
from cryptolstm.models.interval_baselines import interval_baselines
from cryptolstm.models.lstm import EpochHook, Lstm
from cryptolstm.splits import Splits, make_splits


@dataclass
class TrainResult:
    """What a run produced.

    ``forecasts``: split name -> `Forecast` of that split's target days, aligned with
    ``splits`` (calibrated quantiles under a distribution head); ``baselines``: split name ->
    interval baseline name -> `Forecast` of the same days (distribution heads only);
    ``metrics``: ``{"split/metric": value}`` (`metrics.split_metrics`, `metrics.interval_metrics`);
    ``history``: Keras per-epoch ``loss`` / ``val_loss`` lists; ``best_epoch``: 0-based.
    """

    config: RunConfig
    model: keras.Model
    splits: Splits
    history: dict[str, list[float]]
    forecasts: dict[str, Forecast]
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    baselines: dict[str, dict[str, Forecast]] = field(default_factory=dict)
    calibration: Calibration | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def forecaster(self) -> Lstm:
        """The trained `Lstm` forecaster: the model, its config and the intervals' calibration."""
        lstm = Lstm(self.config, model=self.model)
        lstm.calibration = self.calibration
        return lstm

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
    baselines = {}
    if cfg.head != "point":
        baselines = score_intervals(cfg, market, splits, lstm, forecasts, metrics)
    return TrainResult(cfg, lstm.model, splits, lstm.history, forecasts, metrics, lstm.best_epoch, baselines,
                       lstm.calibration)


def score_intervals(cfg: RunConfig, market: Market, splits: Splits, lstm: Lstm, forecasts: dict[str, Forecast],
                    metrics: dict[str, float]) -> dict[str, dict[str, Forecast]]:
    """Add the interval metrics of the validation and test forecasts to ``metrics``, beside the
    interval baselines (`models.interval_baselines`) fitted on the closes before the first
    validation day and forecasting the same days; returns split -> baseline -> `Forecast`.
    The validation days calibrated the intervals, so their coverage is in-sample: the test
    days are the honest check."""
    closes = market.frame[f"{cfg.coin}_close"]
    history = closes.loc[: pd.Timestamp(splits.val.dates[0]) - pd.Timedelta(days=1)]
    fitted = {name: make().fit(splits, history) for name, make in interval_baselines().items()}
    out = {}
    for name, samples in splits.items():
        if name == "train" or name not in forecasts:
            continue
        out[name] = {b: model.predict(samples, closes) for b, model in fitted.items()}
        metrics.update(interval_metrics(name, forecasts[name], samples.target_close, cfg.rules.units, out[name],
                                        raw=lstm.predict(samples, calibrated=False)))
    return out

