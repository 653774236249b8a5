"""The Optuna engine: a seeded sampler, median pruning on per-epoch validation loss, a
resumable study in an RDB storage (SQLite by default)."""

from __future__ import annotations

import logging

import keras
import optuna
from optuna.trial import TrialState

from cryptolstm.errors import ConfigError
from cryptolstm.search.trials import TrialRunner

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SAMPLERS = ("tpe", "random", "qmc")


class PruneOnValLoss(keras.callbacks.Callback):
    """Reports ``val_loss`` after each epoch and stops the trial when the pruner says so."""

    def __init__(self, trial: optuna.Trial):
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.trial.report(float((logs or {})["val_loss"]), epoch)
        self.trial.set_user_attr("epochs_run", epoch + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """``tpe`` (default), ``random`` or ``qmc`` (quasi-random exploration), all seeded."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(prune: bool, max_epochs: int) -> optuna.pruners.BasePruner:
    """Median pruning: stop a trial whose val_loss is worse than the median of earlier trials
    at the same epoch. It assumes nothing about the curves and works from a handful of trials
    (Hyperband's brackets need far more than a 20-trial budget); the first 5 trials and the
    first third of the epochs are never pruned, so slow starters get a chance."""
    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, max_epochs // 3))


def open_study(name: str, storage: str, runner: TrialRunner, algorithm: str, seed: int, prune: bool,
               max_epochs: int) -> optuna.Study:
    """Create the study or load it to resume; refuse a study made for another coin or space."""
    study = optuna.create_study(
        study_name=name, storage=storage, direction="minimize", load_if_exists=True,
        sampler=make_sampler(algorithm, seed), pruner=make_pruner(prune, max_epochs),
    )
    identity = {"coin": runner.space.base.coin, "space_digest": runner.space.digest(),
                "protocol": runner.space.base.protocol}
    existing = {k: study.user_attrs.get(k) for k in identity}
    if not study.trials and not study.user_attrs:
        for key, value in identity.items():
            study.set_user_attr(key, value)
    elif existing != identity:
        raise ConfigError(
            f"study {name!r} in {storage} was made for {existing}, not {identity}; "
            f"choose another study_name."
        )
    _enqueue_base(study, runner)
    return study


def _enqueue_base(study: optuna.Study, runner: TrialRunner) -> None:
    """Queue the base config (the 2018 model) first, so the gain over it is measured; again on
    resume if its trial failed or was interrupted, never twice."""
    base = runner.space.base_values()
    if not all(d.contains(base[d.name]) for d in runner.space.dimensions):
        log.warning("the base config lies outside the space; it is not enqueued")
        return
    alive = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING)
    if not any(t.params == base or t.system_attrs.get("fixed_params") == base
               for t in study.get_trials(deepcopy=False, states=alive)):
        study.enqueue_trial(base)


def objective_fn(runner: TrialRunner):
    """The Optuna objective: validation metric of one trial, logged as a child run."""

    def objective(trial: optuna.Trial) -> float:
        values = {d.name: d.optuna(trial) for d in runner.space.dimensions}
        result = runner.run(values, f"trial-{trial.number}", [PruneOnValLoss(trial)])
        trial.set_user_attr("epochs_run", result.epochs_run)
        return runner.objective(result)

    return objective


def run_optuna(study: optuna.Study, runner: TrialRunner, n_trials: int, timeout: float | None,
               progress: bool) -> None:
    """Run until the study holds ``n_trials`` finished (complete or pruned) trials.

    A failing trial is recorded FAIL and the study goes on; Ctrl-C propagates after
    Optuna has marked the running trial failed, so the storage stays consistent.
    """
    if progress:  # the bar shows trials, best value and ETA; one log line per trial would break it
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = n_trials - done
    if remaining <= 0:
        log.warning("study %s already has %d finished trials; nothing to run", study.study_name, done)
        return
    study.optimize(
        objective_fn(runner),
        n_trials=remaining,
        timeout=timeout,
        catch=(Exception,),
        callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=FINISHED)],
        show_progress_bar=progress,
        gc_after_trial=True,
    )
