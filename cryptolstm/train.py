"""``train(config, market) -> TrainResult``: one model, one coin, one protocol, fitted, then every split
forecast and scored beside the baselines. No MLflow here: tracking attaches through the ``on_epoch`` hooks."""

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
    """What a run produced: the trained network (`Lstm` or `Ensemble`), every split's forecasts (the model's,
    its uncalibrated quantiles', the interval baselines'), their scores, the model's ``metrics`` named as the
    run logs them (``val/mae_ratio``...) and the protocol's periods (train, val, test)."""

    config: RunConfig
    forecaster: NetworkForecaster
    forecasts: Forecasts
    scores: Scores
    metrics: dict[str, float]
    periods: dict[str, Period]

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
    def splits(self):
        """The samples the model was fitted on (train and its validation tail)."""
        return self.forecaster.splits

    def forecast(self, split: str, forecaster: str = MODEL) -> tuple[Forecast, pd.Series]:
        """(``forecaster``'s `Forecast` of ``split``'s samples, their (n, H) actual USD closes)."""
        return self.forecasts.forecast(forecaster, split)


class Uncalibrated:
    """A network's raw quantiles, before conformal calibration (scored to show what calibration changed)."""

    def __init__(self, network: NetworkForecaster) -> None:
        self.network, self.name, self.params = network, network.name + UNCALIBRATED, {}

    def fit(self, history: History) -> Uncalibrated:
        return self

    def predict(self, samples: Samples, history: History) -> Forecast:
        return self.network.predict(samples, history, calibrated=False)


def validation_metrics(network: NetworkForecaster, frame: pd.DataFrame) -> dict[str, float]:
    """The ``val/...`` metrics of ``network`` with its weights as they are now (a search's per-epoch objective)."""
    made = historical_forecasts({MODEL: fitted(network)}, frame, network.cfg, [network.splits.periods[1]], NEVER)
    return score(made, network.cfg.rules.units).named(MODEL)


def train(cfg: RunConfig, market: Market, on_epoch: Sequence[EpochHook] = (), evaluate_test: bool = True,
          forecaster: NetworkForecaster | None = None) -> TrainResult:
    """Fit, then forecast and score every split beside persistence. The test split is forecast once, after
    training, and never feeds back; a search's trials pass ``evaluate_test=False`` (selection sees validation
    days only). ``forecaster``: a network the caller prepared with its own hooks (default: one from ``cfg``)."""
    if forecaster is not None and on_epoch:
        raise ValueError("pass the on_epoch hooks to the forecaster you hand in, not to train()")
    frame = market.frame
    periods, _ = protocol_samples(frame, cfg)
    network = forecaster or make_forecaster(cfg, on_epoch)
    network.fit(History(frame.loc[: periods["val"].last], cfg.coin, periods["train"], periods["val"]))
    scored = [p for name, p in periods.items() if name != "test" or evaluate_test]
    forecasts = historical_forecasts({MODEL: fitted(network)}, frame, cfg, scored, NEVER)
    if cfg.head_spec.distribution:  # the raw quantiles and the interval baselines, fitted once before validation
        later = [p for p in scored if p.name != "train"]
        raw = {MODEL + UNCALIBRATED: fitted(Uncalibrated(network))}
        forecasts += historical_forecasts(raw, frame, cfg, later, NEVER)
        forecasts += historical_forecasts({b.name: fresh(b) for b in INTERVAL}, frame, cfg, later, once(later))
    scores = score(forecasts, cfg.rules.units)
    metrics = scores.named(MODEL)
    for k, member in enumerate(network.members if isinstance(network, Ensemble) else ()):  # its members beside it
        alone = score(historical_forecasts({MODEL: fitted(member)}, frame, cfg, scored, NEVER), cfg.rules.units)
        metrics |= {key: value for key, value in alone.named(MODEL, f"member{k}/").items()
                    if key.endswith(("mae_ratio", "/crps"))}
    return TrainResult(cfg, network, forecasts, scores, metrics, periods)
