"""The keras-tuner engine (Hyperband or Bayesian optimisation) over the same space file.

keras-tuner keeps its own state in ``<tuner_dir>/<study_name>``. Resuming is explicit:
the same study name, coin and space continue that search; anything else stops with a
sentence unless ``overwrite`` is set, so an unrelated search is never silently resumed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import keras_tuner as kt
import pandas as pd

from cryptolstm.config import COINS
from cryptolstm.errors import ConfigError
from cryptolstm.evaluate import split_metrics
from cryptolstm.models.lstm import build_lstm
from cryptolstm.search.trials import TrialRunner
from cryptolstm.splits import make_splits
from cryptolstm.windowing import feature_columns

ALGORITHMS = ("hyperband", "bayesian")
IDENTITY_FILE = "cryptolstm-search.json"


def _logs_key(objective: str) -> str:
    """``val/mae_ratio`` -> ``val_mae_ratio``, the name keras-tuner reads from Keras logs."""
    return objective.replace("/", "_")


class ObjectiveInLogs(keras.callbacks.Callback):
    """Writes the space's validation objective into each epoch's logs, so keras-tuner can
    track and checkpoint on it (it only sees what Keras logs)."""

    def __init__(self, runner: TrialRunner, cfg):
        super().__init__()
        self.runner, self.cfg = runner, cfg
        self.val = make_splits(runner.market.frame, cfg).val

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pred = self.model.predict(self.val.X, verbose=0, batch_size=1024).reshape(-1)
        metrics = split_metrics("val", self.val, pred, self.cfg.protocol)
        if logs is not None:
            logs[_logs_key(self.runner.space.objective)] = metrics[self.runner.space.objective]


class LstmHyperModel(kt.HyperModel):
    """Builds and fits the project's LSTM; the builder sees plain values, never ``hp``."""

    def __init__(self, runner: TrialRunner):
        super().__init__()
        self.runner = runner
        self.fits = 0

    def _values(self, hp: kt.HyperParameters) -> dict:
        return {d.name: d.keras_tuner(hp) for d in self.runner.space.dimensions}

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        keras.backend.clear_session()  # before each trial's model, as the Optuna path does
        cfg = self.runner.config(self._values(hp))
        return build_lstm(cfg, cfg.window_len, len(feature_columns(COINS)))

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs) -> dict:
        values = self._values(hp)
        cfg = self.runner.config(values)
        epochs = kwargs.get("epochs")
        callbacks = [ObjectiveInLogs(self.runner, cfg), *kwargs.get("callbacks", [])]
        name = f"fit-{self.fits}"  # Hyperband fits one trial's model in several rounds
        self.fits += 1
        result = self.runner.run(values, name, callbacks, model=model,
                                 initial_epoch=kwargs.get("initial_epoch", 0), epochs=epochs)
        return {_logs_key(self.runner.space.objective): self.runner.objective(result)}


def _check_identity(directory: Path, identity: dict, overwrite: bool) -> None:
    path = directory / IDENTITY_FILE
    if path.is_file() and not overwrite:
        existing = json.loads(path.read_text())
        if existing != identity:
            raise ConfigError(
                f"{directory} holds a keras-tuner search for {existing}, not {identity}; "
                f"choose another study_name or pass overwrite=true."
            )
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, sort_keys=True))


def make_tuner(runner: TrialRunner, algorithm: str, study_name: str, tuner_dir: str, n_trials: int,
               max_epochs: int, seed: int, overwrite: bool) -> kt.Tuner:
    """A Hyperband or Bayesian tuner whose state lives in ``tuner_dir/study_name``."""
    identity = {"coin": runner.space.base.coin, "space_digest": runner.space.digest(), "algorithm": algorithm}
    if overwrite and (Path(tuner_dir) / study_name).exists():
        shutil.rmtree(Path(tuner_dir) / study_name)
    _check_identity(Path(tuner_dir) / study_name, identity, overwrite)
    common = dict(
        hypermodel=LstmHyperModel(runner), objective=kt.Objective(_logs_key(runner.space.objective), "min"),
        seed=seed, directory=tuner_dir, project_name=study_name, overwrite=False,
        max_consecutive_failed_trials=max(3, n_trials),
    )
    if algorithm == "bayesian":
        return kt.BayesianOptimization(max_trials=n_trials, **common)
    return kt.Hyperband(max_epochs=max_epochs, factor=3, hyperband_iterations=1, **common)


def trials_frame(tuner: kt.Tuner) -> pd.DataFrame:
    """One row per keras-tuner trial: id, state, score and hyperparameters."""
    rows = []
    for trial in tuner.oracle.trials.values():
        rows.append({"trial_id": trial.trial_id, "state": str(trial.status).lower(), "score": trial.score,
                     **{k: v for k, v in trial.hyperparameters.values.items()}})
    return pd.DataFrame(rows)


def best_values(tuner: kt.Tuner, runner: TrialRunner) -> dict:
    """The space's values of the best trial (keras-tuner's own ``tuner/`` keys left out)."""
    (hp,) = tuner.get_best_hyperparameters(1)
    return {d.name: hp.get(d.name) for d in runner.space.dimensions}
