"""What both engines share: the data (loaded once), one trial as an MLflow child run, and
the final step that re-trains the chosen config and reads the test days once."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import mlflow
import pandas as pd

from cryptolstm import tracking
from cryptolstm.data import Market
from cryptolstm.search.space import SearchSpace
from cryptolstm.train import TrainResult, train


def worker_id() -> str:
    """``host:pid`` of this worker, as trials and their child runs record it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class TrialRunner:
    """Runs trials of ``space`` on ``market`` under the parent run ``parent_id``.

    ``max_epochs`` caps each trial's epochs (the space's base value otherwise).
    """

    space: SearchSpace
    market: Market
    parent_id: str
    max_epochs: int | None
    engine: str

    def config(self, values: dict[str, Any]):
        """The trial's config: base + ``values``, epochs capped at ``max_epochs``."""
        cfg = self.space.config(values)
        return cfg.replace(epochs=min(cfg.epochs, self.max_epochs)) if self.max_epochs else cfg

    def run(
        self,
        values: dict[str, Any],
        name: str,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        model: keras.Model | None = None,
        initial_epoch: int = 0,
        epochs: int | None = None,
    ) -> TrainResult:
        """Train one trial on the validation split only, logged as a child run.

        Raises whatever training raised (a pruning signal, a NaN loss) after the
        child run records it; the engine decides what it means for the study.
        """
        if model is None:  # a model handed in (keras-tuner) was built after its own clear_session
            keras.backend.clear_session()  # frees Keras' global state between trials (TF still keeps ~11 MiB)
        cfg = self.config(values)
        cfg = cfg.replace(epochs=epochs) if epochs else cfg
        tags = {"trial": name, "engine": self.engine, "coin": cfg.coin, "worker": worker_id()}
        with tracking.trial_run(self.parent_id, name, cfg, tags):
            result = train(
                cfg, self.market, [tracking.EpochLogger(), *callbacks], evaluate_test=False,
                model=model, initial_epoch=initial_epoch,
            )
            mlflow.log_metrics({**result.metrics, "epochs_run": result.epochs_run})
        return result

    def objective(self, result: TrainResult) -> float:
        return float(result.metrics[self.space.objective])


def finish(runner: TrialRunner, best_values: dict[str, Any], trials: pd.DataFrame) -> TrainResult:
    """Re-train the selected config (same seed: the same model as its trial) and score the
    test days once; log it all on the parent run, which must be active."""
    cfg = runner.config(best_values)
    keras.backend.clear_session()
    result = train(cfg, runner.market)
    mlflow.set_tags({f"best.{k}": str(v) for k, v in best_values.items()})  # a resumed study may change them
    mlflow.log_metrics(result.metrics)
    tracking.log_split_ranges(result)
    tracking.log_figures(runner.market, result)
    tracking.log_model(result, runner.market)
    mlflow.log_text(trials.to_csv(index=False), "trials.csv")
    return result
