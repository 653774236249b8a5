"""Walk-forward backtest: every forecaster (the LSTM per seed and each baseline), fitted per fold.

No MLflow here (`cryptolstm.tracking.backtest` attaches through ``on_fold``). Every
(forecaster, fold) pair is one independent job through the same interface; with
``workers > 1`` the jobs run in that many spawned processes, each limited to
``cores // workers`` TensorFlow threads.
"""

from __future__ import annotations

import concurrent.futures as futures
import functools
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptolstm.backtest.folds import Fold, fold_splits, make_folds
from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.errors import DataError
from cryptolstm.forecast import Forecast
from cryptolstm.metrics import UNITS, in_sample_scale
from cryptolstm.models.base import Forecaster
from cryptolstm.models.baselines import Arima, Drift, MovingAverage, Persistence
from cryptolstm.models.interval_baselines import interval_baselines
from cryptolstm.models.lstm import Lstm
from cryptolstm.options import BacktestOptions
from cryptolstm.protocols import HONEST
from cryptolstm.splits import Splits


@dataclass
class FoldResult:
    """One fold's test days and every forecaster's `Forecast` of them.

    ``dates``: (n,) first target day of each origin; ``targets``: (n, H) USD closes of its H
    target days (``actual``: horizon 1's, (n,)); ``scales``: the in-sample
    scale per units (MASE); ``forecasts``: label -> `Forecast` (``lstm.seed202``,
    ``persistence``...); ``fit``: what each fitted (``drift.mu``, ``lstm.seed202.best_epoch``...).
    """

    fold: Fold
    n_train: int
    n_val: int
    dates: np.ndarray
    targets: np.ndarray
    scales: dict[str, float]
    forecasts: dict[str, Forecast] = field(default_factory=dict)
    fit: dict[str, float] = field(default_factory=dict)

    @property
    def actual(self) -> np.ndarray:
        """(n,) USD closes of the first target day (horizon 1)."""
        return self.targets[:, 0]

    @property
    def horizon(self) -> int:
        return self.targets.shape[1]

    @property
    def last(self) -> np.ndarray:
        """(n,) the close of the day before each target day (persistence's forecast), USD."""
        return next(iter(self.forecasts.values())).last_close

    def closes(self) -> dict[str, np.ndarray]:
        """label -> (n,) USD forecast closes, in the order the forecasters were listed."""
        return {label: forecast.close() for label, forecast in self.forecasts.items()}


@dataclass
class BacktestResult:
    config: RunConfig
    options: BacktestOptions
    folds: list[FoldResult]


def backtest_config(cfg: RunConfig, options: BacktestOptions) -> RunConfig:
    """The config each fold trains: next-day windows and early stopping on the fold's validation
    tail (the honest protocol, whatever the source's was), epochs capped by ``max_epochs``."""
    epochs = min(cfg.epochs, options.max_epochs) if options.max_epochs else cfg.epochs
    return cfg.replace(protocol=HONEST.name, epochs=epochs)


def forecasters(cfg: RunConfig, options: BacktestOptions) -> dict[str, Callable[[], Forecaster]]:
    """label -> a maker of a fresh (unfitted) forecaster, so nothing fitted crosses a fold: the
    LSTM once per seed (``cfg.seed``, ``cfg.seed + 1``...), then the baselines, and under a
    distribution head the interval baselines (refitted per fold like every other)."""
    makers: dict[str, Callable[[], Forecaster]] = {
        f"lstm.seed{cfg.seed + k}": functools.partial(Lstm, cfg.replace(seed=cfg.seed + k))
        for k in range(options.seeds)
    }
    makers |= {"persistence": Persistence, "drift": Drift,
               "moving_average": functools.partial(MovingAverage, options.ma_window)}
    makers |= {"arima": Arima} if options.arima else {}
    return makers | (interval_baselines() if cfg.head != "point" else {})


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
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def fit_and_forecast(make: Callable[[], Forecaster], cfg: RunConfig, frame: pd.DataFrame,
                     fold: Fold) -> tuple[Forecast, dict[str, float]]:
    """Fit a fresh forecaster on the days before ``fold`` and forecast the fold's test days.

    ``frame`` may run past the fold: only its rows up to ``fold.last`` are read, and
    every forecast of a day uses closes before that day. Returns (forecast, fitted params).
    """
    import keras

    keras.backend.clear_session()  # nothing of an earlier fit's Keras state carries into this one
    visible = frame.loc[: fold.last]
    splits = fold_splits(visible, cfg, fold)
    closes = visible[f"{cfg.coin}_close"]
    model = make().fit(splits, closes.loc[: fold.first - pd.Timedelta(days=1)])
    return model.predict(splits.test, closes), dict(model.params)


Job = tuple[str, Fold]  # (forecaster label, fold)


def _run_jobs(makers: dict, cfg: RunConfig, frame: pd.DataFrame, jobs: list[Job], workers: int,
              done: Callable[[Job, tuple], None]) -> None:
    """Every (forecaster, fold) job, in sequence or in ``workers`` processes; ``done(job, output)``."""
    if workers == 1:
        for label, fold in jobs:
            done((label, fold), fit_and_forecast(makers[label], cfg, frame, fold))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_limit_threads,
                                     initargs=(threads,)) as pool:
        pending = {pool.submit(fit_and_forecast, makers[label], cfg, frame.loc[: fold.last], fold): (label, fold)
                   for label, fold in jobs}
        try:
            for future in futures.as_completed(pending):
                done(pending[future], future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _empty_result(fold: Fold, splits: Splits, closes: pd.Series) -> FoldResult:
    history = closes.loc[: fold.first - pd.Timedelta(days=1)]
    scales = {units: in_sample_scale(history, units) for units in UNITS}
    return FoldResult(fold, len(splits.train), len(splits.val), splits.test.dates, splits.test.target_close, scales)


def run_backtest(cfg: RunConfig, market: Market, options: BacktestOptions,
                 on_fold: Callable[[FoldResult], None] | None = None, on_job: Callable[[], None] | None = None,
                 planned: list[tuple[Fold, Splits]] | None = None) -> BacktestResult:
    """Walk forward over ``options``' folds (``planned`` if the caller planned them already):
    every forecaster fitted on each fold's past and forecasting its test days. ``on_job()``
    after each fit, ``on_fold(result)`` as soon as a fold is complete."""
    cfg = backtest_config(cfg, options)
    planned = planned if planned is not None else plan(cfg, market, options)
    makers = forecasters(cfg, options)
    closes = market.frame[f"{cfg.coin}_close"]
    results = {fold.index: _empty_result(fold, splits, closes) for fold, splits in planned}
    received: dict[int, dict] = {fold.index: {} for fold, _ in planned}

    def done(job: Job, output: tuple[Forecast, dict[str, float]]) -> None:
        (label, fold), (forecast, params) = job, output
        received[fold.index][label] = (forecast, params)
        if on_job is not None:
            on_job()
        if len(received[fold.index]) == len(makers):
            result = results[fold.index]
            for name in makers:  # in the listed order, whatever order the jobs ended in
                result.forecasts[name], fitted = received[fold.index][name]
                result.fit.update({f"{name}.{k}": v for k, v in fitted.items()})
            if on_fold is not None:
                on_fold(result)

    jobs = [(label, fold) for fold, _ in planned for label in makers]
    _run_jobs(makers, cfg, market.frame, jobs, options.workers, done)
    return BacktestResult(cfg, options, [results[fold.index] for fold, _ in planned])
