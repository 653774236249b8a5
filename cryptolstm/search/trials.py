"""What both engines share: one trial as a tracked child run, and the chosen config's re-training."""

from __future__ import annotations

import os
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.models.baselines import PERSISTENCE
from cryptolstm.models.interval_baselines import Garch
from cryptolstm.models.lstm import EpochHook, Lstm
from cryptolstm.progress import EpochBar
from cryptolstm.render import values_text
from cryptolstm.search.tracker import SearchTracker
from cryptolstm.search.space import SearchSpace
from cryptolstm.snooping import row_losses
from cryptolstm.train import MODEL, TrainResult, train

log = logging.getLogger(__name__)


def worker_id() -> str:
    """``host:pid`` of this worker, as trials and their child runs record it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class TrialRunner:
    """Runs trials of ``space`` on ``market`` as child runs of ``parent_id`` in ``tracker``, each capped
    at ``max_epochs``; ``progress`` shows a bar of the running trial's epochs."""

    space: SearchSpace
    market: Market
    max_epochs: int | None
    engine: str
    tracker: SearchTracker
    parent_id: str
    progress: bool = False

    def config(self, values: dict[str, Any]) -> RunConfig:
        """The trial's config: base + ``values``, epochs capped at ``max_epochs``."""
        cfg = self.space.config(values)
        return cfg.replace(epochs=min(cfg.epochs, self.max_epochs)) if self.max_epochs else cfg

    def run(self, values: dict[str, Any], name: str, on_epoch: Sequence[EpochHook] = (),
            lstm: Callable[[RunConfig, list[EpochHook]], Lstm] | None = None, epochs: int | None = None,
            on_run: Callable[[str], None] | None = None) -> TrainResult:
        """Train one trial on the validation split only, as a child run; ``lstm(cfg, hooks)`` makes an
        engine's own model, ``epochs`` is its budget, ``on_run(run_id)`` hears the child run's id.
        Raises whatever training raised (a pruning signal, a NaN loss) once the child run records it."""
        cfg = self.config(values).replace(epochs=epochs)  # None: the config's
        hooks = [self.tracker.on_epoch, *on_epoch]
        if lstm is None:  # a model an engine hands in was built after its own clear_session
            keras.backend.clear_session()  # frees Keras' global state between trials (TF still keeps ~11 MiB)
        tags = {"trial": name, "engine": self.engine, "coin": cfg.coin, "worker": worker_id(),
                "objective": self.space.objective, "trial.values": values_text(self.space.rounded(values))}
        with self.tracker.trial(self.parent_id, name, cfg, tags) as run_id:
            # under the search's bar of trials, gone when the trial ends
            hooks.append(EpochBar(f"  {name} epochs", self.progress, position=1, leave=False))
            if on_run:
                on_run(run_id)
            forecaster = lstm(cfg, hooks) if lstm else None
            result = train(cfg, self.market, () if forecaster else hooks, evaluate_test=False, forecaster=forecaster)
            self.tracker.trial_metrics({**result.metrics, "epochs_run": result.epochs_run})
        return result

    def objective(self, result: TrainResult) -> float:
        return float(result.metrics[self.space.objective])

    def benchmark(self) -> tuple[str, str]:
        """(loss, benchmark) the objective compares: the CRPS with the baseline a CRPS ratio names (GARCH
        by default), else the absolute error with persistence."""
        objective = self.space.objective
        if "crps" in objective:
            return "crps", objective.split("crps_ratio_", 1)[1] if "crps_ratio_" in objective else Garch.name
        return "mae", PERSISTENCE

    def daily_losses(self, result: TrainResult) -> dict[str, list]:
        """The trial's next-day validation losses and its benchmark's, for the SPA test:
        ``{"days": [...], "model": [...], "benchmark": [...]}``."""
        table = result.forecasts.table
        val = table[(table["period"] == "val") & (table["horizon"] == 1)].sort_values("origin", kind="stable")
        loss, benchmark = self.benchmark()
        mine = val[val["forecaster"] == MODEL]
        theirs = mine if benchmark == PERSISTENCE else val[val["forecaster"] == benchmark].set_index("origin").loc[
            mine["origin"]].reset_index()
        return {"days": [str(day.date()) for day in mine["origin"]],
                "model": [round(float(v), 10) for v in row_losses(mine, loss)],
                "benchmark": [round(float(v), 10) for v in row_losses(theirs, "persistence" if benchmark == PERSISTENCE
                                                                      else loss)]}

    def retrain(self, best_values: dict[str, Any]) -> TrainResult:
        """The selected config re-trained (same seed: the same model as its trial), the test days scored once."""
        keras.backend.clear_session()
        log.info("re-training the chosen configuration (%s) and scoring its test days once",
                 values_text(self.space.rounded(best_values)))
        return train(self.config(best_values), self.market, [EpochBar("chosen config epochs", self.progress)])
