"""`SearchEngine`: what Optuna and keras-tuner each implement for the search core (`cryptolstm.search.study`),
which never asks which one it holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cryptolstm.options import SearchOptions
    from cryptolstm.search.space import SearchSpace
    from cryptolstm.search.trials import TrialRunner


class SearchEngine(Protocol):
    """One study of one engine, opened (and checked to belong to this coin and space). The defaults
    are those of an engine of one process, a new parent run per command and no plots (keras-tuner)."""

    name: str
    algorithms: tuple[str, ...]  # what ``SearchOptions.algorithm`` may name, the first the default

    @classmethod
    def open(cls, space: SearchSpace, study_name: str, options: SearchOptions, max_epochs: int) -> SearchEngine:
        """Open (create, resume or join) the study, checked to belong to this coin and space."""

    def parent_run_id(self, create: Callable[[], str]) -> tuple[str, bool]:
        """The study's tracking parent and whether this worker made it (``create()``) and leads."""
        return create(), True

    def optimise(self, runner: TrialRunner, progress: bool) -> None:
        """Run trials (through ``runner``) until the study holds the requested number."""

    def best_values(self) -> dict[str, Any]:
        """The space's values of the best trial."""

    def trials(self) -> pd.DataFrame:
        """One row per trial (every worker's)."""

    def summary(self) -> dict[str, float]:
        """Counts over the study (``search/complete``, ``search/best_value``...)."""

    def figures(self) -> dict[str, Figure]:
        """The engine's plots of the study, by artifact path."""
        return {}

    def finished_parent(self) -> str | None:
        """The parent run of a study an earlier command finished; None while anything is left to do."""

    def daily_losses(self) -> tuple[pd.DataFrame, pd.Series] | None:
        """(days, trials) validation losses of the finished trials and the benchmark's (days,); None if not kept."""

    def claim_finish(self) -> bool:
        """True for exactly one worker once no trial can still run: the one that finishes the study."""
        return True

    def alone(self) -> bool:
        """Whether no other worker may still log to the study's parent run."""
        return True

    def close(self, failed: bool) -> None:
        """Stop (``failed``) or wait for the worker processes this engine started, if any."""

    def release(self) -> None:
        """Let another command open the study (once this one is done with it, finish included)."""
