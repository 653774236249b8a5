"""The interfaces the search core (`cryptolstm.search.study`) works through.

`SearchEngine` is what Optuna and keras-tuner each implement; `SearchTracker` is
what the tracking layer (`cryptolstm.tracking.search`) implements, so the core
never imports MLflow. Neither asks which engine or tracker it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from cryptolstm.config import RunConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cryptolstm.options import SearchOptions
    from cryptolstm.search.space import SearchSpace
    from cryptolstm.search.trials import TrialRunner
    from cryptolstm.train import TrainResult


class SearchEngine(Protocol):
    """One study of one engine, opened (and checked to belong to this coin and space)."""

    name: str
    algorithms: tuple[str, ...]  # what ``SearchOptions.algorithm`` may name, the first the default

    @classmethod
    def open(cls, space: SearchSpace, study_name: str, options: SearchOptions, max_epochs: int) -> SearchEngine:
        """Open (create, resume or join) the study, checked to belong to this coin and space."""
        ...

    def parent_run_id(self, create: Callable[[], str]) -> tuple[str, bool]:
        """The study's tracking parent and whether this worker made it (``create()``) and leads."""
        ...

    def optimise(self, runner: TrialRunner, progress: bool) -> None:
        """Run trials (through ``runner``) until the study holds the requested number."""
        ...

    def best_values(self) -> dict[str, Any]:
        """The space's values of the best trial."""
        ...

    def trials(self) -> pd.DataFrame:
        """One row per trial (every worker's)."""
        ...

    def summary(self) -> dict[str, float]:
        """Counts over the study (``search/complete``, ``search/best_value``...)."""
        ...

    def figures(self) -> dict[str, Figure]:
        """The engine's plots of the study, by artifact path."""
        ...

    def claim_finish(self) -> bool:
        """True for exactly one worker once no trial can still run: the one that finishes the study."""
        ...

    def alone(self) -> bool:
        """Whether no other worker may still log to the study's parent run."""
        ...

    def close(self, failed: bool) -> None:
        """Stop (``failed``) or wait for the worker processes this engine started, if any."""
        ...


class SearchTracker(Protocol):
    """Where a search records itself: a parent run per study, a child run per trial."""

    def parent(self, study_name: str, tags: dict[str, str], run_id: str | None = None) -> str:
        """The study's parent run: ``run_id``, else one found by the study's name, else a new one."""
        ...

    def started(self, parent_id: str, space_file: str, tags: dict[str, str], leader: bool) -> None:
        """Record what the study searches (the leader also records the data)."""
        ...

    def trial(self, parent_id: str, name: str, cfg: RunConfig, tags: dict[str, str]) -> AbstractContextManager:
        """A trial's child run; an exception inside ends it pruned, failed or interrupted."""
        ...

    def on_epoch(self, epoch: int, logs: dict) -> None:
        """Per-epoch losses of the running trial."""
        ...

    def trial_metrics(self, metrics: dict[str, float]) -> None:
        """The running trial's final metrics."""
        ...

    def finished(self, parent_id: str, best: TrainResult, best_values: dict, trials: pd.DataFrame,
                 summary: dict[str, float], figures: dict) -> None:
        """The chosen config re-trained and tested, on the parent run, which ends FINISHED."""
        ...

    def ended(self, parent_id: str, status: str) -> None:
        """The parent run ended ``FAILED`` or ``KILLED`` (no other worker is logging to it)."""
        ...
