"""An Optuna study (seeded sampler, median pruning, resumable storage) and the coordination of
several workers on it; `cryptolstm.search.optuna_engine` wraps it as a `SearchEngine`."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import socket
import subprocess
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.trial import TrialState
from tqdm import tqdm

from cryptolstm.errors import ConfigError
from cryptolstm.search.owner import StudyOwner, own_study
from cryptolstm.search.trial_log import TrialFailures
from cryptolstm.search.storage import JOURNAL, masked, open_storage
from cryptolstm.search.storage import is_parallel_safe as is_parallel
from cryptolstm.search.space import SearchSpace
from cryptolstm.processes import process_alive
from cryptolstm.search.trials import TrialRunner, worker_id

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Seeded samplers: ``tpe`` (default), ``random`` or ``qmc`` (quasi-random exploration). constant_liar: while
# other workers' trials run, TPE treats them as bad results, so parallel workers do not all sample around the
# same point (no effect with one worker).
SAMPLERS = {"tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
            "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
            "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)}


def prune_on_val_loss(trial: optuna.Trial):
    """An ``on_epoch`` hook: report ``val_loss`` after each epoch, stop the trial when the pruner says so."""

    def on_epoch(epoch: int, logs: dict) -> None:
        if logs.get("member"):  # an ensemble is pruned on its first member's curve
            return
        trial.report(float(logs["val_loss"]), epoch)
        trial.set_user_attr("epochs_run", epoch + 1)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

    return on_epoch


PARENT_ATTR = "mlflow_parent_run_id"  # study user attr: the MLflow parent run all workers log under
RUN_ATTR = "mlflow_run_id"  # trial user attr: the trial's MLflow child run
FINISH_ATTR = "finished_at"  # study user attr: finished-trial count when a worker claimed the final step
LOSSES_ATTR = "val_losses"  # trial user attr: per-day validation losses, its and its benchmark's


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


@dataclass
class StudyHandle:
    """An opened study and what this worker knows of it: its storage, heartbeat and local workers."""

    study: optuna.Study
    created: bool
    url: str
    storage: object
    heartbeat: int | None
    follower: bool = False
    children: list = field(default_factory=list)
    owner: StudyOwner | None = None  # this command's hold on a study kept in a file

    def release(self) -> None:
        """Let another command have the study (see `open_study`)."""
        if self.owner is not None:
            self.owner.release()

    def live_running(self) -> list:
        """RUNNING trials that may still be alive: after the heartbeat check on an RDB storage with
        a heartbeat; those of a live local worker process on a journal; none otherwise."""
        if self.heartbeat:
            with warnings.catch_warnings(action="ignore", category=optuna.exceptions.ExperimentalWarning):
                optuna.storages.fail_stale_trials(self.study)
            self._fail_orphans()
        elif self.children:
            self.reap_children()
        elif not self.follower:  # a lone process: a RUNNING trial is left over from a crash
            return []
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def _fail_orphans(self) -> None:
        """Fail RUNNING trials no worker ever started (a retried creation that had in fact been
        committed): they have no heartbeat for Optuna's stale check, and no ``worker`` attribute."""
        limit = dt.datetime.now() - dt.timedelta(seconds=4 * self.heartbeat)
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "worker" not in trial.user_attrs and trial.datetime_start and trial.datetime_start < limit:
                self.study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                log.warning("trial %d was created but never started by any worker; marked failed", trial.number)

    def start_workers(self, argv: list[str], count: int) -> None:
        """Start ``count`` local workers running ``argv``, each in its own session: a terminal's
        Ctrl-C reaches this process alone, which stops them (SIGTERM)."""
        self.children = [subprocess.Popen(argv, start_new_session=True) for _ in range(count)]
        log.info("started %d more worker process(es): %s", count, ", ".join(str(p.pid) for p in self.children))

    def reap_children(self) -> None:
        """Fail and queue again the RUNNING trials of local worker processes that have died."""
        alive = {f"{socket.gethostname()}:{p.pid}" for p in self.children if p.poll() is None} | {worker_id()}
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get("worker") not in alive:
                self.study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                optuna.storages.RetryFailedTrialCallback(max_retry=3)(self.study, trial)
                log.warning("trial %d of a dead worker process was failed and queued again", trial.number)

    @contextlib.contextmanager
    def lock(self):
        """A lock all the study's workers share: a PostgreSQL advisory lock, else a file lock."""
        if self.url.startswith("postgresql"):
            from sqlalchemy import text

            with self.storage.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": self.study.study_name})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": self.study.study_name})
            return
        key = hashlib.sha1(f"{self.url}|{self.study.study_name}".encode()).hexdigest()[:16]
        with FileLock(Path(tempfile.gettempdir()) / f"cryptolstm-study-{key}.lock"):
            yield

    def finished_parent(self, n_trials: int) -> str | None:
        """The parent run of a study an earlier command finished (its finish claimed at the
        current count of at least ``n_trials``, none running); else None."""
        done = finished(self.study)
        attrs = self.study.user_attrs
        if self.follower or done < n_trials or attrs.get(FINISH_ATTR) != done or self.live_running():
            return None
        return attrs.get(PARENT_ATTR)

    def claim_finish(self) -> bool:
        """True for exactly one non-follower worker once no trial can still be running."""
        if self.follower:
            return False
        with self.lock():
            if self.live_running():
                return False
            done = finished(self.study)
            if self.study.user_attrs.get(FINISH_ATTR) == done:
                return False
            self.study.set_user_attr(FINISH_ATTR, done)
            return True


def _wait_for_attrs(study: optuna.Study, keys: tuple[str, ...], seconds: float = 60.0) -> dict:
    """The study's user attrs once ``keys`` are all set by the worker that created it."""
    deadline = time.monotonic() + seconds
    while True:
        attrs = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs
        if all(k in attrs for k in keys) or time.monotonic() > deadline:
            return attrs
        time.sleep(0.5)


def open_study(name: str, storage: str, space: SearchSpace, algorithm: str, seed: int, prune: bool,
               max_epochs: int, heartbeat: int | None = None, follower: bool = False) -> StudyHandle:
    """Create the study, or load it to resume or join it; refuse one made for another coin or space. Only its
    creator writes its identity and queues the base config. A study kept in a file is first held by this command
    (`own_study`; its ``follower`` workers run under that hold) until `StudyHandle.release`."""
    owner = None if follower else own_study(storage, name)
    try:
        backend = open_storage(storage, heartbeat)
        # Median pruning on val_loss (Hyperband's brackets need far more than a 20-trial budget); the first
        # 5 trials and the first third of the epochs are never pruned, so slow starters get a chance.
        pruner = optuna.pruners.NopPruner()
        if prune:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, max_epochs // 3))
        parallel = is_parallel(storage)
        study, created = _create_or_load(name, backend, SAMPLERS[algorithm], seed, pruner, parallel)
        _check_identity(study, space, created, storage)
        if study.metric_names is None:  # named after its metric for optuna-dashboard and Optuna's plots
            with warnings.catch_warnings(action="ignore", category=optuna.exceptions.ExperimentalWarning):
                study.set_metric_names([space.objective])
        if not created:
            fail_dead_trials(study, lone=not parallel)
        if created or not parallel:
            _enqueue_base(study, space)
    except BaseException:
        if owner is not None:
            owner.release()
        raise
    return StudyHandle(study, created, storage, backend, heartbeat if not storage.startswith(JOURNAL) else None,
                       follower, owner=owner)



def _create_or_load(name: str, backend, sampler, seed: int, pruner, parallel: bool) -> tuple[optuna.Study, bool]:
    """(the study, whether this call created it). A loaded study's sampler continues past its stored trials; a
    parallel worker's must not draw another's numbers either, so parallel studies are not reproducible."""
    try:
        return optuna.create_study(study_name=name, storage=backend, direction="minimize", sampler=sampler(seed),
                                   pruner=pruner), True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=backend, pruner=pruner)
    offset = len(study.get_trials(deepcopy=False))
    if parallel:
        offset += 1 + zlib.crc32(worker_id().encode()) % 100_000
    study.sampler = sampler(seed + offset)
    return study, False


def _check_identity(study: optuna.Study, space: SearchSpace, created: bool, storage: str) -> None:
    """Record (creator) or check (everyone else) the coin, space and protocol the study is for."""
    identity = {"coin": space.base.coin, "space_digest": space.digest(), "protocol": space.base.protocol}
    if created:
        for key, value in identity.items():
            study.set_user_attr(key, value)
        return
    # The creator writes the identity one key at a time: wait for all of it, not the first key.
    attrs = _wait_for_attrs(study, tuple(identity))
    existing = {k: attrs.get(k) for k in identity}
    if existing != identity:
        raise ConfigError(f"study {study.study_name!r} in {masked(storage)} was made for {existing}, "
                          f"not {identity}; choose another study_name.")


def fail_dead_trials(study: optuna.Study, lone: bool) -> None:
    """Fail the RUNNING trials no live process runs: all of them on a storage this command holds
    alone (``lone``: SQLite), else those of a dead process on this host; a queued one is queued again."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = (trial.user_attrs.get("worker") or ":").rpartition(":")  # host:pid, one elsewhere may run
        if lone or (host == socket.gethostname() and not (pid.isdigit() and process_alive(int(pid)))):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            if "fixed_params" in trial.system_attrs:
                optuna.storages.RetryFailedTrialCallback(max_retry=3)(study, trial)
            log.warning("trial %d was left running by a process that is gone; marked failed", trial.number)


def parent_run_id(handle: StudyHandle, create) -> tuple[str, bool]:
    """The study's MLflow parent run and whether this worker made it (``create()``, recorded in the
    study by its creator, or the first worker on an older study); the others read it there."""
    known = handle.study.user_attrs.get(PARENT_ATTR)
    if known is None and not handle.created:
        known = _wait_for_attrs(handle.study, (PARENT_ATTR,), 60.0 if is_parallel(handle.url) else 0.0).get(PARENT_ATTR)
    if known is not None:
        return known, False
    run_id = create()
    handle.study.set_user_attr(PARENT_ATTR, run_id)
    return run_id, True


def _enqueue_base(study: optuna.Study, space: SearchSpace) -> None:
    """Queue the base config (the 2018 model) first, so the gain over it is measured; again on
    resume if its trial failed or was interrupted, never twice."""
    base = space.base_values()
    if not all(d.contains(base[d.name]) for d in space.dimensions):
        log.warning("the base config lies outside the space; it is not enqueued")
        return
    if not any(t.params == base or t.system_attrs.get("fixed_params") == base
               for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.WAITING, TrialState.RUNNING))):
        study.enqueue_trial(base)


def objective_fn(runner: TrialRunner):
    """The Optuna objective: validation metric of one trial, logged as a child run."""

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_id())
        values = {d.name: d.optuna(trial) for d in runner.space.dimensions}
        done = next((t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.params == values), None)
        if done is not None:  # the sampler drew values already trained: reuse, never train twice
            trial.set_user_attr("duplicate_of", done.number)
            return float(done.value)
        result = runner.run(values, f"trial-{trial.number}", [prune_on_val_loss(trial)],
                            on_run=lambda run_id: trial.set_user_attr(RUN_ATTR, run_id))
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr(LOSSES_ATTR, runner.daily_losses(result))
        return runner.objective(result)

    return objective


def run_optuna(handle: StudyHandle, runner: TrialRunner, n_trials: int, timeout: float | None, progress: bool) -> None:
    """Run trials until the study holds ``n_trials`` finished (complete or pruned) ones, every
    worker's counted; then wait while other workers' trials may run, and run the retries of dead
    workers' trials if the count is not reached. A failing trial is recorded FAIL and the study goes
    on (`TrialFailures` words it); Ctrl-C propagates once Optuna has marked the trial failed."""
    study = handle.study
    deadline = time.monotonic() + timeout if timeout else None
    if finished(study) >= n_trials:
        log.warning("study %s already has %d finished trials; nothing to run", study.study_name, finished(study))
    with _trial_bar(study, n_trials, progress) as on_trial, TrialFailures.applied():
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            remaining = n_trials - finished(study)
            if remaining > 0 and (left is None or left > 0):
                # n_trials leaves room for failures; MaxTrialsCallback ends it at the count
                study.optimize(objective_fn(runner), n_trials=remaining + n_trials, timeout=left, catch=(Exception,),
                               gc_after_trial=True,
                               callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=FINISHED), *on_trial])
            timed_out = left is not None and left <= 0 and not handle.heartbeat
            if not handle.live_running() or handle.follower or timed_out:
                return
            time.sleep(2.0)


@contextlib.contextmanager
def _trial_bar(study: optuna.Study, n_trials: int, progress: bool):
    """Yields the Optuna callbacks moving a bar of finished trials (every worker's) with the best value;
    none without ``progress``: a quiet worker asks the storage nothing more after each trial."""
    if not progress:
        yield []
        return
    with tqdm(total=n_trials, initial=min(finished(study), n_trials), desc=f"{study.study_name} trials",
              unit="trial") as bar:

        def moved(study: optuna.Study, trial) -> None:
            bar.update(min(finished(study), n_trials) - bar.n)
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if complete:
                bar.set_postfix_str(f"best {min(t.value for t in complete):.4f}")

        yield [moved]
