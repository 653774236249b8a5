"""`SearchTracker`: where a search records itself, implemented by `cryptolstm.tracking.search`."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from cryptolstm.config import RunConfig

if TYPE_CHECKING:
    from cryptolstm.train import TrainResult


class SearchTracker(Protocol):
    """Where a search records itself: a parent run per study, a child run per trial."""

    def parent(self, study_name: str, tags: dict[str, str], run_id: str | None = None) -> str:
        """The study's parent run: ``run_id``, else one found by the study's name, else a new one."""

    def started(self, parent_id: str, space_file: str, tags: dict[str, str], leader: bool) -> None:
        """Record what the study searches (the leader also records the data)."""

    def trial(self, parent_id: str, name: str, cfg: RunConfig, tags: dict[str, str]) -> AbstractContextManager:
        """A trial's child run; an exception inside ends it pruned, failed or interrupted."""

    def on_epoch(self, epoch: int, logs: dict) -> None:
        """Per-epoch losses of the running trial."""

    def trial_metrics(self, metrics: dict[str, float]) -> None:
        """The running trial's final metrics."""

    def finished(self, parent_id: str, best: TrainResult, best_values: dict, trials: pd.DataFrame,
                 summary: dict[str, float], figures: dict, texts: dict[str, str]) -> None:
        """The chosen config re-trained and tested, on the parent run, which ends FINISHED."""

    def status(self, parent_id: str) -> str:
        """The parent run's status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``)."""

    def ended(self, parent_id: str, status: str, error: str | None = None) -> None:
        """End the parent run ``FAILED`` (``error``: the sentence the user saw) or ``KILLED``."""
