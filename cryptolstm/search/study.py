"""A search end to end, with no MLflow in it: one parent per study, a child per trial (`SearchTracker`);
the last worker out re-trains the chosen config, scores the test days once and ends the parent."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryptolstm.data import Market
from cryptolstm.errors import ConfigError, error_tag
from cryptolstm.options import SearchOptions
from cryptolstm.search.engine import SearchEngine
from cryptolstm.search.tracker import SearchTracker
from cryptolstm.search.keras_tuner_engine import KerasTunerEngine
from cryptolstm.search.optuna_engine import OptunaEngine
from cryptolstm.search.space import SearchSpace
from cryptolstm.search.storage import is_parallel_safe, masked
from cryptolstm.search.trials import TrialRunner
from cryptolstm.snooping import SuperiorAbility, superior_ability
from cryptolstm.render import spa_markdown
from cryptolstm.train import TrainResult

log = logging.getLogger(__name__)

ENGINES = {engine.name: engine for engine in (OptunaEngine, KerasTunerEngine)}


@dataclass
class SearchResult:
    parent_run_id: str
    study_name: str
    best_values: dict
    best: TrainResult | None  # None in a worker that was not the last one out
    trials: pd.DataFrame
    best_value: float | None = None
    objective: str = ""
    spa: SuperiorAbility | None = None  # Hansen's SPA test over every finished trial (optuna)
    done_before: bool = False  # the study was finished by an earlier command: nothing was run or changed


def run_search(space: SearchSpace, market: Market, options: SearchOptions, tracker: SearchTracker,
               progress: bool = False) -> SearchResult:
    """Search ``space`` on ``market``; the chosen config re-trained and tested (see module docstring).
    An engine, algorithm or worker count the search cannot run is refused in one sentence."""
    if options.engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}; got {options.engine!r}.")
    allowed = ENGINES[options.engine].algorithms
    if options.algorithm is not None and options.algorithm not in allowed:
        raise ConfigError(f"algorithm for {options.engine} must be one of {', '.join(allowed)}; "
                          f"got {options.algorithm!r}.")
    if options.n_workers > 1 and options.engine != OptunaEngine.name:
        raise ConfigError("n_workers > 1 needs the optuna engine; keras-tuner runs one process.")
    if options.n_workers > 1 and not is_parallel_safe(options.storage_url):
        raise ConfigError(f"n_workers={options.n_workers} cannot share {masked(options.storage_url)}: SQLite locks "
                          f"under parallel writers; use storage journal:optuna.journal (one machine) or "
                          f"postgresql://... (many).")
    if options.seed is not None:  # the sampler's and every trial's seed
        space = dataclasses.replace(space, base=space.base.replace(seed=options.seed))
    # <coin>-<engine>-<space>, and -sealed-<date> under a seal: a sealed search never resumes an unsealed study
    sealed = f"-sealed-{space.base.sealed_from}" if space.base.sealed_from else ""
    name = options.study_name or f"{space.base.coin.lower()}-{options.engine}-{Path(space.path).stem}{sealed}"
    max_epochs = options.max_epochs or space.base.epochs
    # The engine's state is opened (and checked to belong to this coin and space, and not to be
    # another command's) before any run is touched, so a refused study leaves nothing behind.
    engine: SearchEngine = ENGINES[options.engine].open(space, name, options, max_epochs)
    try:
        return _search(space, market, options, tracker, engine, name, max_epochs, progress)
    finally:
        engine.release()


def _search(space: SearchSpace, market: Market, options: SearchOptions, tracker: SearchTracker,
            engine: SearchEngine, name: str, max_epochs: int, progress: bool) -> SearchResult:
    """`run_search` on the opened ``engine``: the parent run, the trials, and the finish if last out."""
    earlier = engine.finished_parent()  # the parent of a study whose trials are all done, if any
    status = tracker.status(earlier) if earlier is not None else None
    if status == "FINISHED":  # nothing to run: the result stands, and no run is touched
        return SearchResult(earlier, name, space.rounded(engine.best_values()), None, engine.trials(),
                            engine.summary().get("search/best_value"), space.objective, done_before=True)
    if status == "RUNNING":
        log.info("another worker of study %s re-trains the chosen config (parent run %s)", name, earlier)
        return SearchResult(earlier, name, {}, None, engine.trials())
    tags = {"coin": space.base.coin, "engine": options.engine, "study_name": name, "space_file": space.path,
            "protocol": space.base.protocol, "objective": space.objective, "cryptolstm.entry": "search",
            "search.n_trials": str(options.n_trials), "search.max_epochs": str(max_epochs),
            "search.seed": str(space.base.seed), "search.algorithm": options.algorithm or "default",
            "search.storage": masked(options.storage_url)}
    parent_id, leader = engine.parent_run_id(lambda: tracker.parent(name, tags))
    if not leader:
        tracker.parent(name, tags, run_id=parent_id)
    runner = TrialRunner(space, market, max_epochs, options.engine, tracker, parent_id, progress=progress)
    try:
        tracker.started(parent_id, space.path, tags, leader)
        if earlier is None:
            engine.optimise(runner, progress)
    except BaseException as exc:
        engine.close(failed=True)
        if engine.alone():  # no other worker is logging to the parent: it ends with this one
            _end(tracker, runner.parent_id, exc)
        raise
    engine.close(failed=False)
    if earlier is not None:  # its trials are done but the command that finished it was cut short
        log.info("study %s's trials are done but its result was cut short; re-training the chosen config", name)
    elif not engine.claim_finish():
        others = "other workers of study %s are still running; the last one" if not engine.alone() else \
            "another worker of study %s finished its last trial and"
        log.info(others + " re-trains the chosen config", name)
        return SearchResult(runner.parent_id, name, {}, None, engine.trials())
    return _finish(name, runner, engine, tracker)


def _end(tracker: SearchTracker, parent_id: str, exc: BaseException) -> None:
    """End the parent KILLED for Ctrl-C, else FAILED with the sentence the user saw as its ``error`` tag."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    tracker.ended(parent_id, "KILLED" if interrupted else "FAILED", None if interrupted else error_tag(exc))


def _finish(name: str, runner: TrialRunner, engine: SearchEngine, tracker: SearchTracker) -> SearchResult:
    """The last worker out: re-train the chosen config, score the test days once, record it all and
    end the parent (FAILED if any of it fails)."""
    try:
        best_values, summary, trials = runner.space.rounded(engine.best_values()), engine.summary(), engine.trials()
        # Hansen's SPA test of "the best trial beats the benchmark" (`TrialRunner.benchmark`) on the validation
        # days the search selected on; none when the engine keeps no per-day losses
        spa = None
        if (recorded := engine.daily_losses()) is not None:
            spa = superior_ability(recorded[1].rename(runner.benchmark()[1]), recorded[0])
            summary |= {"search/spa_p": spa.pvalue, "search/spa_trials": spa.models, "search/spa_days": spa.days,
                        "search/spa_block_days": spa.block, "search/spa_best_ratio": spa.best_ratio}
        best = runner.retrain(best_values)
        tracker.finished(runner.parent_id, best, best_values, trials, summary, engine.figures(),
                         {"spa.md": spa_markdown(spa, runner.space.objective)} if spa is not None else {})
    except BaseException as exc:
        _end(tracker, runner.parent_id, exc)
        raise
    value = summary.get("search/best_value", best.metrics.get(runner.space.objective))
    return SearchResult(runner.parent_id, name, best_values, best, trials, value, runner.space.objective, spa=spa)
