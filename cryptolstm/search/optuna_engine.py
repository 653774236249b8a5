"""The Optuna engine as a `SearchEngine` (the study and its workers' coordination: `cryptolstm.search.optuna_study`)."""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import subprocess
import sys
import warnings

import matplotlib
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import TrialState

from cryptolstm import plots
from cryptolstm.errors import ConfigError
from cryptolstm.options import SearchOptions, to_argv
from cryptolstm.search import optuna_study
from cryptolstm.search.optuna_study import SAMPLERS, StudyHandle
from cryptolstm.search.space import SearchSpace
from cryptolstm.search.trials import TrialRunner

log = logging.getLogger(__name__)


class OptunaEngine:
    """One Optuna study of a search, and the local worker processes this process started."""

    name = "optuna"
    algorithms = tuple(SAMPLERS)

    def __init__(self, handle: StudyHandle, options: SearchOptions, max_epochs: int):
        self.handle, self.options, self.max_epochs = handle, options, max_epochs

    @classmethod
    def open(cls, space: SearchSpace, study_name: str, options: SearchOptions, max_epochs: int) -> OptunaEngine:
        # Optuna's info lines (study created, trial finished) repeat the progress bar and the
        # command's summary, and would show under --quiet; its warnings stay.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        handle = optuna_study.open_study(study_name, options.storage_url, space, options.algorithm or "tpe",
                                         space.base.seed, options.prune, max_epochs,
                                         options.heartbeat_seconds, options.follower)
        return cls(handle, options, max_epochs)

    @property
    def study(self) -> optuna.Study:
        return self.handle.study

    def parent_run_id(self, create) -> tuple[str, bool]:
        return optuna_study.parent_run_id(self.handle, create)

    def optimise(self, runner: TrialRunner, progress: bool) -> None:
        if self.options.n_workers > 1:  # more processes on the same study: they join, never finish
            argv = [sys.executable, "-m", "cryptolstm", "search", *to_argv(self.options.worker()), "--quiet"]
            self.handle.start_workers(argv, self.options.n_workers - 1)
        optuna_study.run_optuna(self.handle, runner, self.options.n_trials, self.options.timeout, progress)

    def close(self, failed: bool) -> None:
        for child in self.handle.children:
            if failed and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.handle.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                if child.wait(timeout=60 if failed else None) != 0 and not failed:
                    log.warning("worker process %d ended with exit code %d; its trials were failed and retried",
                                child.pid, child.returncode)

    def release(self) -> None:
        self.handle.release()

    def _complete(self) -> list:
        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def best_values(self) -> dict:
        if not self._complete():
            raise ConfigError(f"study {self.study.study_name!r} has no completed trial (all failed or were pruned); "
                              f"see the child runs.")
        return dict(self.study.best_trial.params)

    def trials(self) -> pd.DataFrame:
        return self.study.trials_dataframe()

    def summary(self) -> dict[str, float]:
        """Counts over every worker's trials, the best value and the base (2018) trial's value."""
        every = self.study.get_trials(deepcopy=False)
        pruned = [t for t in every if t.state == TrialState.PRUNED]
        base = every[0].value if every and every[0].value is not None else float("nan")
        return {"search/complete": len(self._complete()), "search/pruned": len(pruned),
                "search/failed": sum(t.state == TrialState.FAIL for t in every),
                "search/epochs_trained": sum(t.user_attrs.get("epochs_run", 0) for t in every),
                "search/epochs_saved": sum(self.max_epochs - t.user_attrs.get("epochs_run", 0) for t in pruned),
                "search/best_value": self.study.best_value, "search/base_2018_value": base,
                "search/workers": len({t.user_attrs.get("worker") for t in every if t.user_attrs.get("worker")})}

    def figures(self) -> dict[str, Figure]:
        """Optimisation history, parameter importances and parallel coordinates, labelled with the
        objective; a plot that cannot be drawn (importances of one trial) is left out with a warning."""
        plots.headless()
        from optuna.visualization import matplotlib as ovm

        drawn, objective = {}, (self.study.metric_names or ["objective"])[0]  # the space's, named on creation
        for name in ("optimization_history", "param_importances", "parallel_coordinate"):
            try:
                with warnings.catch_warnings(), matplotlib.rc_context():  # Optuna's ggplot style stays inside
                    warnings.simplefilter("ignore")  # "experimental" warnings of optuna's matplotlib backend
                    axes = getattr(ovm, f"plot_{name}")(self.study, target_name=objective)
                    self._readable(name, axes, objective)
                    fig = plots.plain(plots.figure_of(axes))
                    fig.savefig(io.BytesIO(), format="png")  # one that cannot be saved is left out here
                    drawn[f"plots/optuna_{name}.png"] = fig
            except Exception as exc:  # noqa: BLE001 - a missing plot must not lose the search
                log.warning("optuna plot %s skipped: %s", name, exc)
        return drawn

    def finished_parent(self) -> str | None:
        return self.handle.finished_parent(self.options.n_trials)

    def _readable(self, name: str, axes, objective: str) -> None:
        """Optuna's figure ``name`` made readable (`cryptolstm.plots.study_history` ...)."""
        if name == "optimization_history":
            if "ratio" in objective:
                axes.axhline(1.0, color="black", lw=0.8, ls=":", label="ratio 1 (the baseline)")
                axes.legend(fontsize=8)
            plots.study_history(axes, [t.value for t in sorted(self.study.get_trials(deepcopy=False),
                                                                 key=lambda t: t.number)])
        elif name == "param_importances":
            plots.study_importances(axes, len(self._complete()))
        else:
            plots.study_parallel(axes if not hasattr(axes, "flat") else axes.flat[0], objective)

    def claim_finish(self) -> bool:
        return self.handle.claim_finish()

    def daily_losses(self) -> tuple[pd.DataFrame, pd.Series] | None:
        """(days, trials) validation losses of the complete trials that recorded them and the benchmark's
        (days,); None if none did."""
        recorded = {f"trial-{t.number}": t.user_attrs[optuna_study.LOSSES_ATTR] for t in self._complete()
                    if optuna_study.LOSSES_ATTR in t.user_attrs}
        if not recorded:
            return None
        models = pd.DataFrame({name: pd.Series(r["model"], index=r["days"]) for name, r in recorded.items()})
        first = next(iter(recorded.values()))
        return models, pd.Series(first["benchmark"], index=first["days"])

    def alone(self) -> bool:
        """This one leads, its processes have ended and no other worker's trial is running."""
        children = any(child.poll() is None for child in self.handle.children)
        return not (children or self.handle.follower or self.handle.live_running())
