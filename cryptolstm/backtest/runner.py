"""Walk-forward backtest: every fold's LSTM (several seeds) and baselines, then their metrics.

No MLflow here (see `cryptolstm.backtest.tracked`). LSTM fits are independent
jobs (fold, seed); with ``workers > 1`` they run in that many spawned
processes, each limited to ``cores // workers`` TensorFlow threads.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptolstm.backtest.folds import Fold, fold_splits, make_folds
from cryptolstm.backtest.metrics import forecast_metrics, in_sample_scale
from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.models.baselines import Arima, Drift, MovingAverage, Persistence
from cryptolstm.splits import Splits


@dataclass(frozen=True)
class BacktestOptions:
    """How to walk forward. ``seeds``: how many seeds per fold (``cfg.seed``, ``cfg.seed + 1``, ...);
    ``max_epochs``: cap on the config's epochs (None: the config's); ``ma_window``: closes in
    the moving-average baseline; ``arima``: include the ARIMA baseline."""

    start: str = "2019-01-01"
    end: str = "2023-12-31"
    fold_months: int = 3
    seeds: int = 3
    max_epochs: int | None = None
    workers: int = 1
    ma_window: int = 7
    arima: bool = True

    def __post_init__(self) -> None:
        for name in ("fold_months", "seeds", "workers", "ma_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)}.")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ConfigError(f"max_epochs must be an integer >= 1, got {self.max_epochs}.")


@dataclass
class FoldResult:
    """One fold's test days and every forecaster's USD forecasts on them.

    ``dates``, ``actual``, ``last``: (n,) target days, their USD closes, and the close of
    the day before each; ``forecasts``: baseline name -> (n,) USD; ``lstm``: seed -> (n,) USD;
    ``fit``: what each forecaster fitted or ran (``drift.mu``, ``lstm.seed202.best_epoch``...).
    """

    fold: Fold
    n_train: int
    n_val: int
    dates: np.ndarray
    actual: np.ndarray
    last: np.ndarray
    scale_usd: float
    scale_return: float
    forecasts: dict[str, np.ndarray] = field(default_factory=dict)
    lstm: dict[int, np.ndarray] = field(default_factory=dict)
    fit: dict[str, float] = field(default_factory=dict)

    def all_forecasts(self) -> dict[str, np.ndarray]:
        """``{"lstm.seed202": ..., "persistence": ...}``: every forecast of this fold, USD."""
        return {**{f"lstm.seed{s}": f for s, f in sorted(self.lstm.items())}, **self.forecasts}


@dataclass
class BacktestResult:
    config: RunConfig
    options: BacktestOptions
    folds: list[FoldResult]

    @property
    def seeds(self) -> list[int]:
        return [self.config.seed + k for k in range(self.options.seeds)]


def backtest_config(cfg: RunConfig, options: BacktestOptions) -> RunConfig:
    """The config each fold trains: next-day windows and early stopping on the fold's validation
    tail (the honest protocol, whatever the source's was), epochs capped by ``max_epochs``."""
    epochs = min(cfg.epochs, options.max_epochs) if options.max_epochs else cfg.epochs
    return cfg.replace(protocol="honest", epochs=epochs)


def baselines(options: BacktestOptions) -> list:
    """Fresh (unfitted) baselines: one set per fold, so nothing fitted crosses a fold."""
    chosen = [Persistence(), Drift(), MovingAverage(options.ma_window)]
    return chosen + ([Arima()] if options.arima else [])


def plan(cfg: RunConfig, market: Market, options: BacktestOptions) -> list[tuple[Fold, Splits]]:
    """Every fold with its samples, checked before anything is trained or logged."""
    frame = market.frame
    folds = make_folds(options.start, options.end, options.fold_months)
    if folds[-1].last > frame.index[-1]:
        raise DataError(
            f"the backtest ends {options.end} but the data ends {market.last_date}; pass an earlier end."
        )
    if folds[0].first <= frame.index[0]:
        raise DataError(
            f"the backtest starts {options.start}, not after the data's first day {market.first_date}; "
            f"a fold needs earlier days to train on."
        )
    return [(fold, fold_splits(frame, cfg, fold)) for fold in folds]


def _limit_threads(threads: int) -> None:
    """Worker initialiser: TensorFlow in this process uses ``threads`` cores."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


class Lstm:
    """The LSTM of ``cfg`` with the baselines' interface: ``fit(splits, closes)`` trains on
    ``splits.train`` with early stopping on ``splits.val``; ``predict(samples, closes)`` gives
    (n,) target returns. ``params``: best epoch, epochs run and best validation loss."""

    name = "lstm"

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.params: dict[str, float] = {}
        self.model = None

    def fit(self, splits: Splits, closes: pd.Series | None = None) -> Lstm:
        import keras

        from cryptolstm.train import fit

        keras.backend.clear_session()
        self.model, history, best = fit(self.cfg, splits)
        self.params = {"best_epoch": best + 1, "epochs_run": len(history["loss"]),
                       "val_loss": float(np.min(history["val_loss"]))}
        return self

    def predict(self, samples, closes: pd.Series | None = None) -> np.ndarray:
        from cryptolstm.train import predict

        return predict(self.model, samples.X)


def lstm_job(cfg: RunConfig, frame: pd.DataFrame, fold: Fold) -> dict:
    """Fit one LSTM on a fold's training days; its (n,) USD forecasts of the fold's test days."""
    splits = fold_splits(frame, cfg, fold)
    model = Lstm(cfg).fit(splits)
    return {"forecast": splits.test.ref_close * (1.0 + model.predict(splits.test)), **model.params}


def _run_jobs(jobs: list[tuple[RunConfig, Fold]], frame: pd.DataFrame, workers: int, done: Callable) -> None:
    """Run the LSTM jobs in sequence or in ``workers`` processes; ``done(job, output)`` as each ends."""
    if workers == 1:
        for cfg, fold in jobs:
            done((cfg, fold), lstm_job(cfg, frame.loc[: fold.last], fold))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_limit_threads,
                                     initargs=(threads,)) as pool:
        pending = {pool.submit(lstm_job, cfg, frame.loc[: fold.last], fold): (cfg, fold) for cfg, fold in jobs}
        try:
            for future in futures.as_completed(pending):
                done(pending[future], future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def run_backtest(
    cfg: RunConfig,
    market: Market,
    options: BacktestOptions,
    on_fold: Callable[[FoldResult], None] | None = None,
    progress: bool = False,
) -> BacktestResult:
    """Walk forward over ``options``' folds; ``on_fold(result)`` as soon as a fold is complete."""
    cfg = backtest_config(cfg, options)
    planned = plan(cfg, market, options)
    closes = market.frame[f"{cfg.coin}_close"]
    results: dict[int, FoldResult] = {}
    for fold, splits in planned:
        test = splits.test
        history = closes.loc[: fold.first - pd.Timedelta(days=1)]
        result = FoldResult(
            fold, len(splits.train), len(splits.val), test.dates, test.target_close, test.last_close(),
            in_sample_scale(history, "usd"), in_sample_scale(history, "return"),
        )
        for baseline in baselines(options):
            baseline.fit(splits, history)
            result.forecasts[baseline.name] = test.ref_close * (1.0 + baseline.predict(test, closes.loc[: fold.last]))
            result.fit.update({f"{baseline.name}.{k}": v for k, v in baseline.params.items()})
        results[fold.index] = result
    seeds = [cfg.seed + k for k in range(options.seeds)]
    jobs = [(cfg.replace(seed=seed), fold) for fold, _ in planned for seed in seeds]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"{cfg.coin} backtest fits", unit="fit")

    def done(job: tuple[RunConfig, Fold], output: dict) -> None:
        job_cfg, fold = job
        result = results[fold.index]
        result.lstm[job_cfg.seed] = output["forecast"]
        for key in ("best_epoch", "epochs_run", "val_loss"):
            result.fit[f"lstm.seed{job_cfg.seed}.{key}"] = output[key]
        if bar is not None:
            bar.update()
        if len(result.lstm) == len(seeds) and on_fold is not None:
            on_fold(result)

    try:
        _run_jobs(jobs, market.frame, options.workers, done)
    finally:
        if bar is not None:
            bar.close()
    return BacktestResult(cfg, options, [results[fold.index] for fold, _ in planned])


# --- metrics tables ---------------------------------------------------------------------------


def fold_metrics(result: FoldResult) -> pd.DataFrame:
    """One row per forecaster (``lstm.seed202``, ..., ``persistence``...) of one fold, metric columns."""
    rows = {
        name: forecast_metrics(result.actual, forecast, result.last, result.scale_usd, result.scale_return)
        for name, forecast in result.all_forecasts().items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("forecaster")


def with_seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (indexed by forecaster) with rows ``lstm.mean`` and ``lstm.std`` (sample sd; 0 for
    one seed) after the per-seed rows, then the baselines."""
    seeds = table.loc[table.index.str.startswith("lstm.seed")]
    spread = seeds.std(ddof=1) if len(seeds) > 1 else 0.0 * seeds.mean()
    summary = pd.DataFrame({"lstm.mean": seeds.mean(), "lstm.std": spread}).T
    return pd.concat([seeds, summary, table.drop(seeds.index)])


def pooled(result: BacktestResult) -> FoldResult:
    """All folds' test days as one (``scale_*``: the mean of the folds' in-sample scales)."""
    folds = result.folds
    merged = FoldResult(
        Fold(-1, folds[0].fold.first, folds[-1].fold.last), 0, 0,
        np.concatenate([f.dates for f in folds]), np.concatenate([f.actual for f in folds]),
        np.concatenate([f.last for f in folds]),
        float(np.mean([f.scale_usd for f in folds])), float(np.mean([f.scale_return for f in folds])),
    )
    merged.forecasts = {k: np.concatenate([f.forecasts[k] for f in folds]) for k in folds[0].forecasts}
    merged.lstm = {s: np.concatenate([f.lstm[s] for f in folds]) for s in folds[0].lstm}
    return merged


def metrics_table(result: BacktestResult) -> pd.DataFrame:
    """Long table: one row per (fold, forecaster), fold ``all`` for the pooled test days.

    Columns: fold, first, last, days, forecaster, then the metrics (see
    `metrics.forecast_metrics`). Per-seed LSTM rows are followed by ``lstm.mean``
    and ``lstm.std``: the seeds' mean and standard deviation of each metric.
    """
    frames = []
    for fold_result in [*result.folds, pooled(result)]:
        table = with_seed_summary(fold_metrics(fold_result)).reset_index(names="forecaster")
        fold = fold_result.fold
        table.insert(0, "days", len(fold_result.dates))
        table.insert(0, "last", fold.last.date().isoformat())
        table.insert(0, "first", fold.first.date().isoformat())
        table.insert(0, "fold", "all" if fold.index < 0 else str(fold.index))
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def _fmt(value: float, digits: int = 3, style: str = "f") -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}{style}}"


def summary_markdown(table: pd.DataFrame, coin: str, units: str = "usd") -> str:
    """A Markdown table, one row per fold and one for all days: the LSTM's MAE ratio to persistence
    (seeds' mean ± sd, min-max), each baseline's ratio, the LSTM's DM p-values against
    persistence (range over seeds) and its directional accuracy (seeds' mean)."""
    baselines_here = [b for b in ("drift", "moving_average", "arima") if b in set(table["forecaster"])]
    header = ["fold", "test days", "days", "LSTM MAE ratio", "beats persistence",
              *[f"{b} ratio" for b in baselines_here], "LSTM DM p", "LSTM direction"]
    lines = [f"MAE ratio to persistence in {units.upper()} ({coin}); below 1 beats persistence.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratio = f"{units}/mae_ratio"
    for fold, rows in table.groupby("fold", sort=False):
        rows = rows.set_index("forecaster")
        seeds = rows.loc[rows.index.str.startswith("lstm.seed")]
        mean, sd = rows.loc["lstm.mean", ratio], rows.loc["lstm.std", ratio]
        beats = int((seeds[ratio] < 1).sum())
        p_values = seeds[f"{units}/dm_p"]
        several = len(seeds) > 1  # one seed: its values, without a spread that is not there
        cells = [
            fold, f"{rows['first'].iloc[0]}..{rows['last'].iloc[0]}", str(rows["days"].iloc[0]),
            f"{_fmt(mean)} ± {_fmt(sd)} ({_fmt(seeds[ratio].min())}-{_fmt(seeds[ratio].max())})" if several else _fmt(mean),
            f"{beats}/{len(seeds)} seeds" if several else ("yes" if beats else "no"),
            *[_fmt(rows.loc[b, ratio]) for b in baselines_here],
            f"{_fmt(p_values.min(), 2, 'g')}-{_fmt(p_values.max(), 2, 'g')}" if several else _fmt(p_values.iloc[0], 2, "g"),
            _fmt(rows.loc["lstm.mean", "direction"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
