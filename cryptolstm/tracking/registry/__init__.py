"""The registry in MLflow: `models` resolves and loads model URIs, `versions` registers runs and moves the
champion alias; `MlflowModels` is the `cryptolstm.registry.ModelStore` evaluate and refit talk to."""

from __future__ import annotations

from collections.abc import Sequence

import mlflow

from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError, first_line
from cryptolstm.registry import ModelInfo, champion_uri
from cryptolstm.tracking.registry.models import check_model_coin, load, load_pyfunc, resolve
from cryptolstm.tracking.registry.versions import (best_run, find_refit, forecast_with, load_champion, reap_registrations,
                                                   register, register_best, register_pick, register_run)

__all__ = ["MlflowModels", "best_run", "check_model_coin", "forecast_with", "load", "load_champion",
           "load_pyfunc", "reap_registrations", "register", "register_best", "register_pick", "register_run", "resolve"]


class MlflowModels:
    """`cryptolstm.registry.ModelStore` on MLflow; ``launched``: the run ``mlflow run`` made, to resume."""

    resolve = staticmethod(resolve)
    find_refit = staticmethod(find_refit)
    register = staticmethod(register_run)  # (run_id, coin, force, decide, tags), as the protocol says

    def __init__(self, launched: str | None = None) -> None:
        self.launched = launched

    def load(self, info: ModelInfo, coin: str | None = None):
        """The forecaster of ``info``; a model registered under a coin's name must be that coin's."""
        name = info.name or ""  # a run's model (runs:/...) has no registered name
        named = name.removeprefix("cryptolstm-").upper() if name.startswith("cryptolstm-") else None
        return load(info, coin or named)

    def champion(self, coin: str) -> ModelInfo | None:
        try:
            return resolve(champion_uri(coin))
        except ConfigError:
            return None

    def network(self, info: ModelInfo):
        """The Keras network its training run saved (``keras/lstm.keras``); one sentence without it."""
        import keras

        import cryptolstm.models.lstm  # noqa: F401 - registers the custom activation, heads and losses

        try:
            path = mlflow.artifacts.download_artifacts(run_id=info.run_id, artifact_path="keras/lstm.keras")
            return keras.models.load_model(path)
        except Exception as exc:  # noqa: BLE001 - a run without it (or a damaged file): one sentence
            raise ConfigError(f"{info.label} has no Keras network to start from ({first_line(exc)}); refit it with "
                              f"--retrain scratch.") from None

    def train(self, cfg: RunConfig, market, name: str, tags: dict[str, str], on_epoch: Sequence = (), init=None):
        from cryptolstm.tracking.runs import coin_experiment
        from cryptolstm.tracking.train import tracked_train

        return tracked_train(cfg, market, None, coin_experiment(cfg.coin), on_epoch, self.launched, name, tags, init)

    def record_evaluation(self, evaluation, market, data_dir: str) -> str:
        from cryptolstm.tracking.evaluate import log_evaluation

        return log_evaluation(evaluation, market, data_dir, self.launched)
