"""A search end to end: one MLflow parent run per study, a child run per trial, the chosen
config re-trained and scored on the test days once, plots and a table of all trials."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import mlflow
import pandas as pd

from cryptolstm import tracking
from cryptolstm.data import Market
from cryptolstm.errors import ConfigError
from cryptolstm.search import optuna_engine
from cryptolstm.search.space import SearchSpace
from cryptolstm.search.storage import is_parallel_safe, masked
from cryptolstm.search.trials import TrialRunner, finish
from cryptolstm.train import TrainResult

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SearchOptions:
    """How to search (not what the model is: that is the space file).

    ``n_trials``: finished trials the study should hold (a resumed study runs the rest);
    ``max_epochs``: cap on each trial's epochs (and Hyperband's top budget);
    ``algorithm``: Optuna ``tpe``/``random``/``qmc`` or keras-tuner ``hyperband``/``bayesian``.
    """

    engine: str = "optuna"
    study_name: str | None = None
    storage: str = "sqlite:///optuna.db"
    n_trials: int = 20
    timeout: float | None = None
    seed: int = 202
    max_epochs: int | None = None
    algorithm: str | None = None
    prune: bool = True
    tuner_dir: str = "keras_tuner"
    overwrite: bool = False
    experiment_name: str | None = None
    n_workers: int = 1
    heartbeat: int | None = None
    worker_argv: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.engine not in _ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(_ENGINES)}; got {self.engine!r}.")
        allowed = optuna_engine.SAMPLERS if self.engine == "optuna" else ("hyperband", "bayesian")
        if self.algorithm is not None and self.algorithm not in allowed:
            raise ConfigError(f"algorithm for {self.engine} must be one of {', '.join(allowed)}; got {self.algorithm!r}.")
        if self.n_trials < 1:
            raise ConfigError(f"n_trials must be an integer >= 1, got {self.n_trials}.")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ConfigError(f"max_epochs must be an integer >= 1, got {self.max_epochs}.")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}.")
        if self.n_workers < 1:
            raise ConfigError(f"n_workers must be an integer >= 1, got {self.n_workers}.")
        if self.n_workers > 1 and self.engine != "optuna":
            raise ConfigError("n_workers > 1 needs the optuna engine; keras-tuner runs one process.")
        if self.n_workers > 1 and not is_parallel_safe(self.storage):
            raise ConfigError(
                f"n_workers={self.n_workers} cannot share {masked(self.storage)}: SQLite locks under parallel "
                f"writers; use storage journal:optuna.journal (one machine) or postgresql://... (many)."
            )


@dataclass
class SearchResult:
    parent_run_id: str
    study_name: str
    best_values: dict
    best: TrainResult | None  # None in a worker that was not the last one out
    trials: pd.DataFrame


def default_study_name(space: SearchSpace, options: SearchOptions) -> str:
    return f"{space.base.coin.lower()}-{options.engine}-{Path(space.path).stem}"


def run_search(space: SearchSpace, market: Market, options: SearchOptions, progress: bool = False) -> SearchResult:
    """Search ``space`` on ``market`` and return the chosen config, re-trained and tested.

    Several workers may run this on one study (PostgreSQL or journal storage): each logs its
    trials as children of the one parent run, and the last one out re-trains the chosen
    config and ends the parent; the others return ``best=None``.
    """
    name = options.study_name or default_study_name(space, options)
    max_epochs = options.max_epochs or space.base.epochs
    tags = {"coin": space.base.coin, "engine": options.engine, "study_name": name, "space_file": space.path,
            "protocol": space.base.protocol, "objective": space.objective, "cryptolstm.entry": "search"}
    experiment = options.experiment_name or tracking.default_experiment_name(space.base)
    runner = TrialRunner(space, market, "", max_epochs, options.engine)
    # The engine's state is opened (and checked to belong to this coin and space) before
    # any MLflow run is touched, so a mismatched study leaves nothing behind.
    open_engine, search, coordinate = _ENGINES[options.engine]
    engine = open_engine(runner, name, options, max_epochs)
    runner.parent_id, first = coordinate(engine, lambda: tracking.study_parent(name, tags, experiment))
    if not first:
        tracking.study_parent(name, tags, experiment, run_id=runner.parent_id)
    with tracking.on_run(runner.parent_id):
        mlflow.log_artifact(space.path, "space")
        mlflow.set_tags({"search.n_trials": str(options.n_trials), "search.max_epochs": str(max_epochs),
                         "search.seed": str(options.seed), "search.algorithm": str(options.algorithm),
                         "search.storage": masked(options.storage)})
        if first:
            tracking.log_dataset(market, space.base)
    children = _start_local_workers(engine, options)
    try:
        best_values, trials, summarise = search(runner, engine, options, max_epochs, progress)
    except BaseException as exc:
        _stop(children)
        if _alone(engine):  # no other worker is logging to the parent: it ends with this one
            tracking.end_study_run(runner.parent_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    _wait(children)
    if not _claim(engine):
        log.info("other workers of study %s are still running; the last one re-trains the chosen config", name)
        return SearchResult(runner.parent_id, name, best_values, None, trials)
    with tracking.on_run(runner.parent_id, status_after="FINISHED"):
        summarise()
        best = finish(runner, best_values, trials)
    return SearchResult(runner.parent_id, name, best_values, best, trials)


def _alone(engine) -> bool:
    return not hasattr(engine, "live_running") or not (engine.children or engine.follower or engine.live_running())


def _claim(engine) -> bool:
    return engine.claim_finish() if hasattr(engine, "claim_finish") else True


def _start_local_workers(engine, options: SearchOptions) -> list:
    """Start ``n_workers - 1`` more processes on the same study (the command line of this one)."""
    if options.n_workers <= 1 or not options.worker_argv:
        return []
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID",)}
    env[optuna_engine.FOLLOWER_ENV] = "1"
    engine.children = [subprocess.Popen(list(options.worker_argv), env=env) for _ in range(options.n_workers - 1)]
    log.info("started %d more worker process(es): %s", len(engine.children), ", ".join(str(p.pid) for p in engine.children))
    return engine.children


def _wait(children: list) -> None:
    for child in children:
        if child.wait() != 0:
            log.warning("worker process %d ended with exit code %d; its trials were failed and retried",
                        child.pid, child.returncode)


def _stop(children: list) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=60)


def _open_optuna(runner: TrialRunner, name: str, options: SearchOptions, max_epochs: int):
    return optuna_engine.open_study(name, options.storage, runner, options.algorithm or "tpe", options.seed,
                                    options.prune, max_epochs, options.heartbeat)


def _optuna(runner: TrialRunner, handle, options: SearchOptions, max_epochs: int, progress: bool):
    import optuna

    study = handle.study
    name = study.study_name
    optuna_engine.run_optuna(handle, runner, options.n_trials, options.timeout, progress)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"study {name!r} has no completed trial (all failed or were pruned); see the child runs.")
    trials = study.trials_dataframe()

    def summarise() -> None:
        """On the active parent run: counts over every worker's trials, and the Optuna plots."""
        every = study.get_trials(deepcopy=False)
        epochs = {t.number: t.user_attrs.get("epochs_run", 0) for t in every}
        pruned = [t for t in every if t.state == optuna.trial.TrialState.PRUNED]
        base = every[0].value if every and every[0].value is not None else float("nan")
        mlflow.log_metrics({
            "search/complete": len(complete), "search/pruned": len(pruned),
            "search/failed": sum(t.state == optuna.trial.TrialState.FAIL for t in every),
            "search/epochs_trained": sum(epochs.values()),
            "search/epochs_saved": sum(max_epochs - epochs[t.number] for t in pruned),
            "search/best_value": study.best_value, "search/base_2018_value": base,
            "search/workers": len({t.user_attrs.get("worker") for t in every if t.user_attrs.get("worker")}),
        })
        tracking.close_lost_trials(runner.parent_id)
        _log_optuna_plots(study)

    return dict(study.best_trial.params), trials, summarise


def _log_optuna_plots(study) -> None:
    """Optimisation history, parameter importances, parallel coordinates (PNG); a plot that
    cannot be drawn (e.g. importances of a single trial) is skipped with a warning."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"optimization_history": ovm.plot_optimization_history, "param_importances": ovm.plot_param_importances,
             "parallel_coordinate": ovm.plot_parallel_coordinate}
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" warnings of optuna's matplotlib backend
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            mlflow.log_figure(fig, f"plots/optuna_{name}.png")
            plt.close(fig)
        except Exception as exc:  # noqa: BLE001 - a missing plot must not lose the search
            log.warning("optuna plot %s skipped: %s", name, exc)


def _open_keras_tuner(runner: TrialRunner, name: str, options: SearchOptions, max_epochs: int):
    from cryptolstm.search import keras_tuner_engine as kte

    return kte.make_tuner(runner, options.algorithm or "hyperband", name, options.tuner_dir, options.n_trials,
                          max_epochs, options.seed, options.overwrite)


def _keras_tuner(runner: TrialRunner, tuner, options: SearchOptions, max_epochs: int, progress: bool):
    from cryptolstm.search import keras_tuner_engine as kte

    tuner.search(verbose=1 if progress else 0)
    trials = kte.trials_frame(tuner)

    def summarise() -> None:
        mlflow.log_metrics({"search/complete": int((trials["state"] == "completed").sum()) if len(trials) else 0,
                            "search/failed": int((trials["state"] == "failed").sum()) if len(trials) else 0})

    return kte.best_values(tuner, runner), trials, summarise


def _single_parent(engine, create) -> tuple[str, bool]:
    return create(), True


# engine -> (open its state and check it belongs to this coin and space, run the search,
#            find or make the study's parent run)
_ENGINES = {
    "optuna": (_open_optuna, _optuna, optuna_engine.parent_run_id),
    "keras-tuner": (_open_keras_tuner, _keras_tuner, _single_parent),
}
