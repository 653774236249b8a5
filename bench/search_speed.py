"""Search speed with and without pruning, and memory over many trials.

Runs the same Optuna budget (20 trials of the default space on BTC, TPE seeded) twice,
with median pruning and without, and prints wall time, epochs trained and the best
validation MAE ratio of each. Then runs 20 tiny trials and prints the process's resident
memory after trials 1, 5, 10 and 20, and the peak (clear_session() runs before every trial).

    python bench/search_speed.py [--data-dir ../shared/data] [--trials 20] [--max-epochs 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow
import optuna

from cryptolstm.data import load_market
from cryptolstm.search.space import load_space
from cryptolstm.options import SearchOptions
from cryptolstm.search.study import run_search
from cryptolstm.tracking.search import MlflowSearchTracker

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Current resident set size of this process, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed_search(space, market, tmp: Path, name: str, trials: int, max_epochs: int, prune: bool):
    options = SearchOptions(study_name=name, storage=f"sqlite:///{tmp / 'optuna.db'}", n_trials=trials,
                            max_epochs=max_epochs, prune=prune, seed=202)
    start = time.perf_counter()
    result = run_search(space, market, options, MlflowSearchTracker(market, space.base, "bench"))
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=options.storage)
    epochs = sum(t.user_attrs.get("epochs_run", 0) for t in study.trials)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return wall, epochs, pruned, result.best.metrics["val/mae_ratio"]


def memory_over_trials(space, market, tmp: Path, trials: int) -> list[tuple[int, float]]:
    """RSS after selected trials of a tiny study (1 layer of 4 units, 2 epochs)."""
    tiny = space.__class__(space.path, space.base.replace(layers=1, neurons=4), space.objective,
                           tuple(d for d in space.dimensions if d.name not in ("neurons", "layers")))
    marks = []

    def record(study, trial):
        if trial.number + 1 in (1, 5, 10, 20, trials):
            marks.append((trial.number + 1, rss_mib()))

    from cryptolstm.search import optuna_study

    original = optuna_study.run_optuna

    def with_marks(handle, runner, n_trials, timeout, progress):
        handle.study.optimize(optuna_study.objective_fn(runner), n_trials=n_trials, callbacks=[record],
                              gc_after_trial=True)

    optuna_study.run_optuna = with_marks
    try:
        options = SearchOptions(study_name="memory", storage=f"sqlite:///{tmp / 'optuna.db'}", n_trials=trials,
                                max_epochs=2, prune=False)
        run_search(tiny, market, options, MlflowSearchTracker(market, tiny.base, "bench"))
    finally:
        optuna_study.run_optuna = original
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--merge-date", default="2021-01-01")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-epochs", type=int, default=8)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        os.chdir(tmp)
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        space = load_space(ROOT / "experiments" / "search-default.yaml", data_dir=args.data_dir,
                           merge_date=args.merge_date)
        market = load_market(args.data_dir, args.merge_date)
        print(f"BTC, default space, {args.trials} trials, <= {args.max_epochs} epochs each, "
              f"data {market.first_date}..{market.last_date}")
        print(f"{'pruning':>8} {'wall s':>8} {'epochs':>7} {'pruned':>7} {'best val MAE ratio':>19}")
        for prune in (False, True):
            wall, epochs, pruned, best = timed_search(space, market, tmp, f"prune-{prune}", args.trials,
                                                      args.max_epochs, prune)
            print(f"{str(prune):>8} {wall:>8.1f} {epochs:>7} {pruned:>7} {best:>19.4f}")
        marks = memory_over_trials(space, market, tmp, args.trials)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RSS after tiny trial n: " + ", ".join(f"{n}: {mib:.0f} MiB" for n, mib in marks)
              + f"; peak RSS of the whole benchmark {peak:.0f} MiB")


if __name__ == "__main__":
    main()
