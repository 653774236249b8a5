"""Walk-forward backtest: every forecaster (the LSTM per seed, each baseline) fitted on the days before
each fold as the `Retrain` policy says and forecasting its test days, through the one forecasting loop
(`cryptolstm.forecasting.historical_forecasts`). No MLflow here: tracking attaches through ``on_fold``."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptolstm.backtest.cluster import executor_for
from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.errors import DataError
from cryptolstm.features import closes
from cryptolstm.forecast import RETURN
from cryptolstm.forecasting import Fit, Forecasts, Maker, Retrain, fresh, historical_forecasts
from cryptolstm.models.network import is_network, seed_label
from cryptolstm.models.baselines import POINT, Arima, MovingAverage, Persistence
from cryptolstm.models.interval_baselines import INTERVAL
from cryptolstm.models.lstm import Ensemble, EpochHook, Lstm, make_forecaster
from cryptolstm.options import BacktestOptions
from cryptolstm.protocols import HONEST
from cryptolstm.scoring import Scores, scales_before, score
from cryptolstm.splits import DAY, Period, folds, pooled
from cryptolstm.windowing import samples

UNITS = RETURN  # a backtest's interval metrics are in returns (comparable across years)


@dataclass
class FoldResult:
    """One fold: its test ``period``, every forecaster's forecasts and ``scores`` of it, the ``fits`` made
    for it and the sizes of the network's training and validation samples."""

    period: Period
    forecasts: Forecasts
    scores: Scores
    fits: list[Fit]
    n_train: int
    n_val: int

    @property
    def days(self) -> int:
        return self.scores.days[self.period.name]


@dataclass
class BacktestResult:
    """The whole walk forward: the fold config, the options, the folds, every forecast, the scores per
    fold and pooled (``all``) and the wall time of the fits and forecasts (``seconds``)."""

    config: RunConfig
    options: BacktestOptions
    folds: list[FoldResult]
    forecasts: Forecasts
    scores: Scores = field(repr=False, default=None)
    seconds: float = 0.0

    def epochs_trained(self) -> dict[str, int]:
        """Epochs each LSTM seed trained over all its fits (an ensemble's members added up)."""
        epochs: Counter[str] = Counter()
        for fit in (f for fold in self.folds for f in fold.fits if is_network(f.forecaster)):
            epochs[fit.forecaster] += sum(int(v) for k, v in fit.params.items() if k.endswith("epochs_run"))
        return dict(epochs)


def backtest_config(cfg: RunConfig, options: BacktestOptions) -> RunConfig:
    """The config each fold trains: the honest protocol, whatever the source's, epochs capped by ``max_epochs``."""
    epochs = min(cfg.epochs, options.max_epochs) if options.max_epochs else cfg.epochs
    return cfg.replace(protocol=HONEST.name, epochs=epochs)


def sealed_options(cfg: RunConfig, options: BacktestOptions) -> BacktestOptions:
    """``options`` with the last test day moved before ``cfg``'s seal (the data holds no sealed day)."""
    if cfg.sealed_from is None or options.end < cfg.sealed_from:
        return options
    return dataclasses.replace(options, end=(pd.Timestamp(cfg.sealed_from) - DAY).date().isoformat())


def retrain_policy(cfg: RunConfig, options: BacktestOptions) -> Retrain:
    """The options' `Retrain`; a warm fit trains at most ``warm_epochs`` epochs (default: the config's)."""
    return Retrain(options.retrain, options.retrain_every, options.warm_epochs or cfg.epochs)


class NetworkMaker:
    """The `Maker` of the LSTM of ``cfg``: a fresh one (Keras' global state cleared), or the last one continued."""

    def __init__(self, cfg: RunConfig, warm_epochs: int | None = None, on_epoch: Sequence[EpochHook] = (),
                 warm_patience: int | None = None) -> None:
        self.cfg, self.warm_epochs, self.on_epoch, self.warm_patience = cfg, warm_epochs, list(on_epoch), warm_patience

    def __call__(self, last: Lstm | Ensemble | None) -> Lstm | Ensemble:
        if last is not None:
            return last.continued(self.warm_epochs or self.cfg.epochs, self.on_epoch, self.warm_patience)
        import keras

        keras.backend.clear_session()
        return make_forecaster(self.cfg, self.on_epoch)  # one network, or the config's ensemble of them


def forecasters(cfg: RunConfig, options: BacktestOptions, on_epoch: Sequence[EpochHook] = ()) -> dict[str, Maker]:
    """label -> `Maker`: the LSTM once per seed (an ensemble of N is one forecaster, its k-th copy on the
    N seeds from ``cfg.seed + k * N``: no two copies share a member), the baselines, and under a
    distribution head the interval baselines."""
    seeds = [cfg.seed + k * cfg.ensemble for k in range(options.seeds)]
    warm_epochs = retrain_policy(cfg, options).warm_epochs
    makers: dict[str, Maker] = {seed_label(seed): NetworkMaker(cfg.replace(seed=seed), warm_epochs, on_epoch,
                                                                options.warm_patience) for seed in seeds}
    arguments = {MovingAverage: (options.ma_window,)}
    makers[Persistence.name] = fresh(Persistence)
    makers |= {b.name: fresh(functools.partial(b, *arguments.get(b, ()))) for b in POINT if options.arima or b is not Arima}
    if cfg.head_spec.distribution:
        makers |= {b.name: fresh(b) for b in INTERVAL}
    return makers


def fit_periods(cfg: RunConfig, frame: pd.DataFrame, fold: Period) -> tuple[Period, Period]:
    """The network's training period and validation tail before ``fold``: the last ``val_frac / (train_frac
    + val_frac)`` of the samples before it validate; the H-1 windows between the two belong to neither."""
    before = samples(frame, cfg, Period("before", frame.index[0], fold.before))
    n_train = int(round(len(before) * (1.0 - cfg.val_frac / (cfg.train_frac + cfg.val_frac))))
    last_train = pd.Timestamp(before.dates[max(n_train, 1) - 1]) + (cfg.horizon - 1) * DAY if len(before) else fold.before
    return Period("train", frame.index[0], last_train), Period("val", last_train + DAY, fold.before)


def _check_fold(cfg: RunConfig, frame: pd.DataFrame, fold: Period) -> tuple[int, int]:
    """(training, validation) sample counts of ``fold``; one sentence when any part is empty."""
    train, val = fit_periods(cfg, frame, fold)
    n = [len(samples(frame.loc[: fold.last], cfg, p)) for p in (train, val, fold)]
    if min(n) < 1:
        raise DataError(f"fold {fold.label} has {n[0]} training, {n[1]} validation and {n[2]} test sample(s) with "
                        f"window_len {cfg.window_len} and horizon {cfg.horizon}; it needs at least one of each: start "
                        f"the backtest later or the data (merge_date) earlier.")
    return n[0], n[1]


@dataclass(frozen=True)
class Plan:
    """A backtest before anything is trained or logged: the ``source`` config, the ``config`` every fold
    trains, the options (ending before the seal), the market and the folds, each checked to have samples."""

    source: RunConfig
    config: RunConfig
    options: BacktestOptions
    market: Market
    folds: list[Period]


def plan(source: RunConfig, market: Market, options: BacktestOptions) -> Plan:
    """The `Plan` of a backtest of ``source``; one sentence for a fold the data cannot fill."""
    options = sealed_options(source, options)  # the folds end before the config's seal
    cfg, frame = backtest_config(source, options), market.frame
    made = folds(options.start, options.end, options.fold_months)
    if made[-1].last > frame.index[-1]:
        raise DataError(f"the backtest ends {options.end} but the data ends {market.last_date}; pass an earlier end.")
    if made[0].first <= frame.index[0]:
        raise DataError(f"the backtest starts {options.start}, not after the data's first day {market.first_date}; "
                        f"a fold needs earlier days to train on.")
    for fold in made:
        _check_fold(cfg, frame, fold)
    return Plan(source, cfg, options, market, made)


class _Folds:
    """Collects the loop's finished jobs into folds, calling ``on_fold`` as soon as one is complete."""

    def __init__(self, cfg: RunConfig, frame: pd.DataFrame, makers: dict, planned: list[Period],
                 on_fold: Callable[[FoldResult], None] | None) -> None:
        self.cfg, self.frame, self.makers, self.on_fold = cfg, frame, makers, on_fold
        self.chunks, self.fits = defaultdict(list), defaultdict(list)  # fold name -> its finished chunks, fits
        self.periods = {fold.name: fold for fold in planned}
        self.results: dict[str, FoldResult] = {}

    def done(self, job, chunks, fits) -> None:
        for chunk in chunks:
            self.chunks[chunk.period.name].append(chunk)
        for fit in fits:
            self.fits[fit.period].append(fit)
        for name, fold in self.periods.items():  # in the plan's order, whatever the finish order
            got = self.chunks[name]
            if name not in self.results and len(got) == len(self.makers):
                listed = list(self.makers)  # the listed order of forecasters, whatever the finish order
                made = Forecasts.of(sorted(got, key=lambda c: listed.index(c.forecaster)), self.fits[name])
                scales = {name: scales_before(closes(self.frame, self.cfg.coin), fold.first)}
                self.results[name] = FoldResult(fold, made, score(made, UNITS, {name: [name]}, scales), made.fits,
                                                *_check_fold(self.cfg, self.frame, fold))
                if self.on_fold is not None:
                    self.on_fold(self.results[name])


def run_backtest(plan: Plan, on_fold: Callable[[FoldResult], None] | None = None,
                 on_epoch: Sequence[EpochHook] = ()) -> BacktestResult:
    """Walk forward over the ``plan``'s folds; ``on_fold(result)`` once a fold is complete, ``on_epoch`` in
    fits made in this process."""
    cfg, options, market = plan.config, plan.options, plan.market
    makers = forecasters(cfg, options, on_epoch if options.workers == 1 and not options.cluster else ())
    collected = _Folds(cfg, market.frame, makers, plan.folds, on_fold)
    plan_fit = functools.partial(fit_periods, cfg)
    started = time.monotonic()
    with executor_for(options) as pool:
        forecasts = historical_forecasts(makers, market.frame, cfg, plan.folds, retrain_policy(cfg, options), plan_fit,
                                         executor=pool, done=collected.done)
    folds_done = [collected.results[fold.name] for fold in plan.folds]
    result = BacktestResult(cfg, options, folds_done, forecasts, seconds=time.monotonic() - started)
    result.scores = backtest_scores(result, market)
    return result


def backtest_scores(result: BacktestResult, market: Market) -> Scores:
    """Every fold's scores and the pooled ones (``all``: MASE scaled by the mean of the folds' scales)."""
    names = [f.period.name for f in result.folds]
    history = closes(market.frame, result.config.coin)
    scales = [scales_before(history, f.period.first) for f in result.folds]
    mean = {units: float(np.mean([s[units] for s in scales])) for units in scales[0]}
    pooled_scores = score(result.forecasts, UNITS, {"all": names}, {"all": mean})
    rows = {key: row for f in result.folds for key, row in f.scores.rows.items()} | pooled_scores.rows
    days = {**{f.period.name: f.days for f in result.folds}, **pooled_scores.days}
    return Scores(rows, UNITS, days, {**{name: [name] for name in names}, "all": names})


def pooled_period(result: BacktestResult) -> Period:
    """The period of every test day of the backtest."""
    return pooled([f.period for f in result.folds])
