"""``train(config, market) -> TrainResult``: one model, one coin, one protocol.

No argv, no environment, no MLflow here: tracking attaches through the ``on_epoch`` hooks and
reads the result (`cryptolstm.tracking`). The model is fitted on the protocol's training period
(validating on its validation period), then every split is forecast through the one forecasting
loop (`cryptolstm.forecasting`) beside, for a forecast distribution, the interval baselines fitted
on the days before the validation period, and scored in one step (`cryptolstm.scoring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.forecast import Forecast
from cryptolstm.forecasting import NEVER, Forecasts, fitted, fresh, historical_forecasts, once
from cryptolstm.models.network import NetworkForecaster
from cryptolstm.models.base import History
from cryptolstm.models.interval_baselines import INTERVAL
from cryptolstm.models.lstm import Ensemble, EpochHook, make_forecaster
from cryptolstm.scoring import UNCALIBRATED, Scores, score
from cryptolstm.splits import Period
from cryptolstm.windowing import Samples, protocol_samples

MODEL = NetworkForecaster.name  # the trained model's label in the table of forecasts


@dataclass
class TrainResult:
    """What a run produced.

    ``forecaster``: the trained network (`Lstm` or `Ensemble`: its model(s), features' state,
    calibration, Keras history); ``forecasts``: the long table of every split's forecasts by the
    model (``lstm``), its uncalibrated quantiles and the interval baselines; ``scores``: every
    metric of it; ``metrics``: the model's, named as the run logs them (``val/mae_ratio``...);
    ``periods``: the protocol's periods (train, val, test).
    """

    config: RunConfig
    forecaster: NetworkForecaster
    forecasts: Forecasts
    scores: Scores
    metrics: dict[str, float]
    periods: dict[str, Period]

    @property
    def model(self):
        """The Keras model (the first member's of an ensemble)."""
        return self.forecaster.members[0].model

    @property
    def history(self) -> dict[str, list[float]]:
        return self.forecaster.history

    @property
    def best_epoch(self) -> int:
        return self.forecaster.best_epoch

    @property
    def epochs_run(self) -> int:
        return self.forecaster.epochs_run

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping ended training before the last epoch."""
        return self.epochs_run < self.config.epochs

    @property
    def calibration(self):
        return self.forecaster.calibration

    @property
    def splits(self):
        """The samples the model was fitted on (train and its validation tail)."""
        return self.forecaster.splits

    def forecast(self, split: str, forecaster: str = MODEL) -> tuple[Forecast, pd.Series]:
        """(``forecaster``'s `Forecast` of ``split``'s samples, their (n, H) actual USD closes)."""
        return self.forecasts.forecast(forecaster, split)


class Uncalibrated:
    """A network forecaster's raw quantiles, before its conformal calibration (scored beside the
    calibrated ones: their coverage shows what calibration changed)."""

    def __init__(self, network: NetworkForecaster) -> None:
        self.network, self.name, self.params = network, network.name + UNCALIBRATED, {}

    def fit(self, history: History) -> Uncalibrated:
        return self

    def predict(self, samples: Samples, history: History) -> Forecast:
        return self.network.predict(samples, history, calibrated=False)


def split_forecasts(cfg: RunConfig, frame: pd.DataFrame, network: NetworkForecaster,
                    periods: Sequence[Period]) -> Forecasts:
    """The fitted ``network``'s forecasts of ``periods`` and, for a forecast distribution, its
    uncalibrated ones and the interval baselines', those fitted on the days before the first
    period that is not the training one (they have no earlier days to fit on for it)."""
    made = historical_forecasts({MODEL: fitted(network)}, frame, cfg, periods, NEVER)
    if not cfg.head_spec.distribution:
        return made
    later = [p for p in periods if p.name != "train"]
    made += historical_forecasts({MODEL + UNCALIBRATED: fitted(Uncalibrated(network))}, frame, cfg, later, NEVER)
    baselines = {b.name: fresh(b) for b in INTERVAL}
    return made + historical_forecasts(baselines, frame, cfg, later, once(later))


def validation_metrics(network: NetworkForecaster, frame: pd.DataFrame) -> dict[str, float]:
    """The metrics (``val/...``, no interval baselines) of ``network``'s forecasts of the validation
    samples it is being fitted on, with its weights as they are now (a search engine's per-epoch
    objective)."""
    made = historical_forecasts({MODEL: fitted(network)}, frame, network.cfg, [network.splits.periods[1]], NEVER)
    return score(made, network.cfg.rules.units).named(MODEL)


def train(cfg: RunConfig, market: Market, on_epoch: Sequence[EpochHook] = (), evaluate_test: bool = True,
          forecaster: NetworkForecaster | None = None) -> TrainResult:
    """Fit, then forecast and score every split beside persistence (module docstring).

    The test split (honest protocol only) is forecast once, after training has finished and the
    best weights are restored; nothing about it feeds back. A search passes ``evaluate_test=False``
    for its trials: selection sees validation days only, and the test days are read for the chosen
    model alone. ``forecaster``: a network prepared by the caller (a search engine's own model,
    with its own hooks); by default one is made from ``cfg`` with the ``on_epoch`` hooks.
    """
    if forecaster is not None and on_epoch:
        raise ValueError("pass the on_epoch hooks to the forecaster you hand in, not to train()")
    frame = market.frame
    periods, _ = protocol_samples(frame, cfg)
    network = forecaster or make_forecaster(cfg, on_epoch)
    network.fit(History(frame.loc[: periods["val"].last], cfg.coin, periods["train"], periods["val"]))
    scored = [p for name, p in periods.items() if name != "test" or evaluate_test]
    forecasts = split_forecasts(cfg, frame, network, scored)
    scores = score(forecasts, cfg.rules.units)
    metrics = scores.named(MODEL)
    for k, member in enumerate(network.members if isinstance(network, Ensemble) else ()):  # its members beside it
        alone = score(historical_forecasts({MODEL: fitted(member)}, frame, cfg, scored, NEVER), cfg.rules.units)
        metrics |= {key: value for key, value in alone.named(MODEL, f"member{k}/").items() if key.endswith("mae_ratio")
                    or key.endswith("/crps")}
    return TrainResult(cfg, network, forecasts, scores, metrics, periods)
