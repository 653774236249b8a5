"""A search end to end: one MLflow parent run per study, a child run per trial, the chosen
config re-trained and scored on the test days once, plots and a table of all trials."""

from __future__ import annotations

import logging
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


@dataclass
class SearchResult:
    parent_run_id: str
    study_name: str
    best_values: dict
    best: TrainResult
    trials: pd.DataFrame


def default_study_name(space: SearchSpace, options: SearchOptions) -> str:
    return f"{space.base.coin.lower()}-{options.engine}-{Path(space.path).stem}"


def run_search(space: SearchSpace, market: Market, options: SearchOptions, progress: bool = False) -> SearchResult:
    """Search ``space`` on ``market`` and return the chosen config, re-trained and tested."""
    name = options.study_name or default_study_name(space, options)
    max_epochs = options.max_epochs or space.base.epochs
    tags = {"coin": space.base.coin, "engine": options.engine, "study_name": name, "space_file": space.path,
            "protocol": space.base.protocol, "objective": space.objective, "cryptolstm.entry": "search"}
    experiment = options.experiment_name or tracking.default_experiment_name(space.base)
    runner = TrialRunner(space, market, "", max_epochs, options.engine)
    # The engine's state is opened (and checked to belong to this coin and space) before
    # any MLflow run is touched, so a mismatched study leaves nothing behind.
    open_engine, search = _ENGINES[options.engine]
    engine = open_engine(runner, name, options, max_epochs)
    runner.parent_id = tracking.find_or_start_study_run(name, tags, experiment)
    status = "FAILED"
    try:
        mlflow.log_artifact(space.path, "space")
        mlflow.set_tags({"search.n_trials": str(options.n_trials), "search.max_epochs": str(max_epochs),
                         "search.seed": str(options.seed), "search.algorithm": str(options.algorithm)})
        tracking.log_dataset(market, space.base)
        best_values, trials = search(runner, engine, options, max_epochs, progress)
        best = finish(runner, best_values, trials)
        status = "FINISHED"
        return SearchResult(runner.parent_id, name, best_values, best, trials)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracking.end_study_run(status)


def _open_optuna(runner: TrialRunner, name: str, options: SearchOptions, max_epochs: int):
    return optuna_engine.open_study(name, options.storage, runner, options.algorithm or "tpe", options.seed,
                                    options.prune, max_epochs)


def _optuna(runner: TrialRunner, study, options: SearchOptions, max_epochs: int, progress: bool):
    import optuna

    name = study.study_name
    optuna_engine.run_optuna(study, runner, options.n_trials, options.timeout, progress)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"study {name!r} has no completed trial (all failed or were pruned); see the child runs.")
    trials = study.trials_dataframe()
    epochs = {t.number: t.user_attrs.get("epochs_run", 0) for t in study.trials}
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    base = study.trials[0].value if study.trials and study.trials[0].value is not None else float("nan")
    mlflow.log_metrics({
        "search/complete": len(complete), "search/pruned": len(pruned),
        "search/failed": sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials),
        "search/epochs_trained": sum(epochs.values()),
        "search/epochs_saved": sum(max_epochs - epochs[t.number] for t in pruned),
        "search/best_value": study.best_value, "search/base_2018_value": base,
    })
    _log_optuna_plots(study)
    return dict(study.best_trial.params), trials


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
    mlflow.log_metrics({"search/complete": int((trials["state"] == "completed").sum()) if len(trials) else 0,
                        "search/failed": int((trials["state"] == "failed").sum()) if len(trials) else 0})
    return kte.best_values(tuner, runner), trials


# engine -> (open its state and check it belongs to this coin and space, run the search)
_ENGINES = {"optuna": (_open_optuna, _optuna), "keras-tuner": (_open_keras_tuner, _keras_tuner)}
