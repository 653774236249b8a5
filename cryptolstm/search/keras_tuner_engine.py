"""The keras-tuner engine (Hyperband or Bayesian) as a `SearchEngine`. Its state in ``<tuner_dir>/<study_name>``
resumes only for the same coin, space and algorithm (else a sentence, unless ``overwrite``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import keras_tuner as kt
import pandas as pd

from cryptolstm import features
from cryptolstm.config import COINS
from cryptolstm.errors import ConfigError
from cryptolstm.models.lstm import Lstm, build_lstm
from cryptolstm.progress import CountBar
from cryptolstm.search.engine import SearchEngine
from cryptolstm.search.space import SearchSpace
from cryptolstm.search.trials import TrialRunner
from cryptolstm.train import validation_metrics

ALGORITHMS = ("hyperband", "bayesian")
IDENTITY_FILE = "cryptolstm-search.json"


def _logs_key(objective: str) -> str:
    """``val/mae_ratio`` -> ``val_mae_ratio``, the name keras-tuner reads from Keras logs."""
    return objective.replace("/", "_")


class LstmHyperModel(kt.HyperModel):
    """Builds and fits the project's LSTM; the builder sees plain values, never ``hp``."""

    def __init__(self, runner: TrialRunner):
        super().__init__()
        self.runner = runner
        self.fits = 0
        self.bar: CountBar | None = None  # the search's bar of fits, set by the engine before the search

    def _values(self, hp: kt.HyperParameters) -> dict:
        return {d.name: d.keras_tuner(hp) for d in self.runner.space.dimensions}

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        keras.backend.clear_session()  # before each trial's model, as the Optuna path does
        cfg = self.runner.config(self._values(hp))
        return build_lstm(cfg, cfg.window_len, len(features.columns(cfg.feature_names, COINS)))

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs) -> dict:
        values, objective = self._values(hp), self.runner.space.objective
        trained: dict[str, Lstm] = {}

        def in_logs(epoch: int, logs: dict) -> None:  # keras-tuner tracks and checkpoints only what Keras logs
            logs[_logs_key(objective)] = validation_metrics(trained["network"], self.runner.market.frame)[objective]

        def lstm(trial_cfg, hooks) -> Lstm:  # keras-tuner's model, resumed where it says, with its callbacks
            trained["network"] = Lstm(trial_cfg, [*hooks, in_logs], model=model,
                                   initial_epoch=kwargs.get("initial_epoch", 0), callbacks=kwargs.get("callbacks", []))
            return trained["network"]

        name = f"fit-{self.fits}"  # Hyperband fits one trial's model in several rounds
        self.fits += 1
        result = self.runner.run(values, name, lstm=lstm, epochs=kwargs.get("epochs"))
        value = self.runner.objective(result)
        self.bar.advance(f"{name}: {objective} {value:.4g}")
        return {_logs_key(objective): value}


def claim_directory(space: SearchSpace, algorithm: str, study_name: str, tuner_dir: str, overwrite: bool) -> None:
    """Check (or, with ``overwrite``, clear) ``tuner_dir/study_name`` for this coin, space and algorithm."""
    identity = {"coin": space.base.coin, "space_digest": space.digest(), "algorithm": algorithm}
    directory = Path(tuner_dir) / study_name
    if overwrite and directory.exists():
        shutil.rmtree(directory)
    path = directory / IDENTITY_FILE
    if path.is_file() and (existing := json.loads(path.read_text())) != identity:
        raise ConfigError(f"{directory} holds a keras-tuner search for {existing}, not {identity}; "
                          f"choose another study_name or pass overwrite=true.")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, sort_keys=True))


class KerasTunerEngine(SearchEngine):
    """A keras-tuner search: one process, one parent run, no other worker, no per-day losses (no SPA test)."""

    name = "keras-tuner"
    algorithms = ALGORITHMS

    def __init__(self, space: SearchSpace, study_name: str, options, max_epochs: int):
        self.space, self.study_name, self.options, self.max_epochs = space, study_name, options, max_epochs
        self.algorithm = options.algorithm or "hyperband"
        self.tuner: kt.Tuner | None = None

    @classmethod
    def open(cls, space: SearchSpace, study_name: str, options, max_epochs: int) -> KerasTunerEngine:
        from cryptolstm.heads import HEADS
        from cryptolstm.scoring import logged_names

        # keras-tuner reads the objective after every epoch, where only the point metrics are computed.
        pointwise = next(head for head in HEADS.values() if not head.distribution)
        if space.objective not in logged_names("val", space.base.horizon, pointwise, space.base.rules.units):
            raise ConfigError(f"engine keras-tuner cannot search on {space.objective} (it scores each epoch's point "
                              f"forecast only); use --engine optuna for an interval objective.")
        claim_directory(space, options.algorithm or "hyperband", study_name, options.tuner_dir, options.overwrite)
        return cls(space, study_name, options, max_epochs)

    def optimise(self, runner: TrialRunner, progress: bool) -> None:
        n_trials, bayesian, hypermodel = self.options.n_trials, self.algorithm == "bayesian", LstmHyperModel(runner)
        common = {"hypermodel": hypermodel, "objective": kt.Objective(_logs_key(runner.space.objective), "min"),
                  "seed": self.space.base.seed, "directory": self.options.tuner_dir,
                  "project_name": self.study_name,  # its state lives in directory/project_name
                  "overwrite": False, "max_consecutive_failed_trials": max(3, n_trials)}
        self.tuner = (kt.BayesianOptimization(max_trials=n_trials, **common) if bayesian
                      else kt.Hyperband(max_epochs=self.max_epochs, **common))  # factor 3, one iteration
        # keras-tuner's own tables and bars stay off; ours counts its fits (Hyperband fits a trial in rounds)
        hypermodel.bar = CountBar(n_trials if bayesian else None,
                                  f"{self.space.base.coin} keras-tuner {self.algorithm} fits", "fit", progress)
        try:
            self.tuner.search(verbose=0)
        finally:
            hypermodel.bar.close()

    def best_values(self) -> dict:
        """The space's values of the best trial (keras-tuner's own ``tuner/`` keys left out)."""
        (hp,) = self.tuner.get_best_hyperparameters(1)
        return {d.name: hp.get(d.name) for d in self.space.dimensions}

    def trials(self) -> pd.DataFrame:
        """One row per keras-tuner trial: id, state, score and hyperparameters."""
        return pd.DataFrame([{"trial_id": t.trial_id, "state": str(t.status).lower(), "score": t.score,
                              **t.hyperparameters.values} for t in self.tuner.oracle.trials.values()])

    def summary(self) -> dict[str, float]:
        states = self.trials()["state"] if self.tuner.oracle.trials else pd.Series(dtype=str)
        return {"search/complete": int((states == "completed").sum()), "search/failed": int((states == "failed").sum())}
