"""The one forecasting loop, `historical_forecasts`: fits as `Retrain` says on the rows before a period only (no
leak), forecasts it, and returns one long table (`Forecasts`); independent chains may run on a Dask cluster."""

from __future__ import annotations

import concurrent.futures as futures
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError
from cryptolstm.forecast import Forecast
from cryptolstm.intervals import LEVELS
from cryptolstm.models.base import Forecaster, History
from cryptolstm.options import RETRAIN, SCRATCH, WARM
from cryptolstm.splits import Period
from cryptolstm.windowing import Samples, samples

Maker = Callable[[Forecaster | None], Forecaster]  # (the last fit, or None) -> the forecaster to fit next
FitPlan = Callable[[pd.DataFrame, Period], tuple[Period | None, Period | None]]  # frame, period -> (train, val)


def quantile_column(level: float) -> str:
    """The table's column of the quantile at ``level``: ``q0.025``."""
    return f"q{level:g}"


QUANTILE_COLUMNS = [quantile_column(q) for q in LEVELS]


@dataclass(frozen=True)
class Retrain:
    """When the loop fits, on every ``every``-th period: ``mode`` scratch (a fresh forecaster), warm (from the
    last fit's weights, at most ``warm_epochs`` epochs; None: the config's) or never (fitted already)."""

    mode: str = SCRATCH
    every: int = 1
    warm_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in (*RETRAIN, "never"):
            raise ConfigError(f"retrain must be one of {', '.join(RETRAIN)}; got {self.mode!r}.")
        if self.every < 1:
            raise ConfigError(f"retrain_every must be an integer >= 1, got {self.every}.")

    def due(self, k: int) -> bool:
        """Whether the loop fits before the ``k``-th period (0-based)."""
        return self.mode != "never" and k % self.every == 0

    def chains(self, periods: Sequence[Period], warm_starts: bool = True) -> list[list[tuple[int, Period]]]:
        """The periods in runs that must go in order: one, for a fitted or warm-started forecaster, or one per fit."""
        indexed = list(enumerate(periods))
        if self.mode == "never" or self.mode == WARM and warm_starts:
            return [indexed]
        return [indexed[k:k + self.every] for k in range(0, len(indexed), self.every)]


NEVER = Retrain("never")


def once(periods: Sequence[Period]) -> Retrain:
    """Fit before the first of ``periods`` only, and forecast them all with that fit."""
    return Retrain(SCRATCH, every=max(len(periods), 1))


@dataclass(frozen=True)
class Fit:
    """One fit: of ``forecaster`` before ``period``, from the weights of the fit before ``init`` (or scratch)."""

    forecaster: str
    period: str
    init: str
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """The forecast of one period by one forecaster, with its samples."""

    forecaster: str
    period: Period
    samples: Samples
    forecast: Forecast
    fitted_at: str = ""  # the period before which the forecasting model was fitted ("" : fitted before the loop)


def forecast_chain(label: str, make: Maker, frame: pd.DataFrame, cfg: RunConfig, chain: list[tuple[int, Period]],
                   retrain: Retrain, plan: FitPlan | None = None, horizon: int | None = None) -> tuple[list[Chunk], list[Fit]]:
    """Walk ``chain`` ((index, period) pairs) with forecaster ``label``: fit where ``retrain`` is due, on the rows
    before the period, then forecast its samples ``horizon`` days ahead. Returns the forecasts and the fits."""
    model, fitted_at, chunks, fits = None, None, [], []
    scored = cfg if horizon is None or horizon == cfg.horizon else cfg.replace(horizon=horizon)
    for k, period in chain:
        if retrain.due(k) or model is None and retrain.mode != "never":
            train, val = plan(frame, period) if plan else (None, None)
            start = model if retrain.mode == WARM and getattr(make, "warm_starts", True) else None
            model = make(start).fit(History(frame.loc[: period.before], cfg.coin, train, val))
            fits.append(Fit(label, period.name, fitted_at if start is not None else SCRATCH, dict(model.params)))
            fitted_at = period.name
        elif model is None:
            model = make(None)  # never: the forecaster handed in is fitted already
        visible = frame.loc[: period.last]
        made = samples(visible, scored, period)
        forecast = model.predict(made, History(visible, cfg.coin)).first(scored.horizon)
        chunks.append(Chunk(label, period, made, forecast, fitted_at or ""))
    return chunks, fits


Job = tuple[str, list[tuple[int, Period]]]  # (forecaster label, its chain)
Done = Callable[[Job, list[Chunk], list[Fit]], None]


def run_order(jobs: list[Job], latest_first: bool = False) -> list[int]:
    """The indices of ``jobs`` in run order: period by period (folds complete in turn), or ``latest_first``."""
    return sorted(range(len(jobs)), key=lambda i: jobs[i][1][0][0], reverse=latest_first)


def historical_forecasts(makers: dict[str, Maker], frame: pd.DataFrame, cfg: RunConfig, periods: Sequence[Period],
                         retrain: Retrain = Retrain(), plan: FitPlan | None = None, horizon: int | None = None,
                         executor: futures.Executor | None = None, done: Done | None = None) -> Forecasts:
    """The long table of the forecasts of every period by every forecaster of ``makers`` (label -> `Maker`), ``horizon``
    days ahead (default: the config's); ``plan(frame, period)``: a fit's train and validation periods. Chains run here
    (``executor`` None) or on ``executor`` given only the rows they may read; ``done(job, chunks, fits)`` per chain."""
    jobs = [(label, chain) for label, make in makers.items()
            for chain in retrain.chains(periods, getattr(make, "warm_starts", True))]
    results: dict[int, tuple[list[Chunk], list[Fit]]] = {}

    def finish(i: int, output) -> None:
        results[i] = output
        if done is not None:
            done(jobs[i], *output)

    if executor is None:
        for i in run_order(jobs):
            label, chain = jobs[i]
            finish(i, forecast_chain(label, makers[label], frame, cfg, chain, retrain, plan, horizon))
    else:
        pending = {}
        for i in run_order(jobs, latest_first=True):
            label, chain = jobs[i]
            pending[executor.submit(forecast_chain, label, makers[label], frame.loc[: chain[-1][1].last], cfg, chain,
                                    retrain, plan, horizon)] = i
        try:
            for future in futures.as_completed(pending):
                finish(pending[future], future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    made = [results[i] for i in range(len(jobs))]  # in the order of jobs, whatever the finish order
    return Forecasts.of([c for chunks, _ in made for c in chunks], [f for _, fits in made for f in fits])


class _Fresh:
    """The picklable `Maker` of a forecaster always fitted from scratch (a baseline): it ignores the last fit."""

    warm_starts = False  # a warm policy fits it from scratch all the same, period by period

    def __init__(self, factory: Callable[[], Forecaster]) -> None:
        self.factory = factory

    def __call__(self, last: Forecaster | None) -> Forecaster:
        return self.factory()


fresh = _Fresh


def fitted(forecaster: Forecaster) -> Maker:
    """The `Maker` of a forecaster that is fitted already (for `NEVER`)."""
    return lambda last: forecaster


def _block(chunk: Chunk) -> pd.DataFrame:
    """The rows of one chunk: one per origin and horizon."""
    s, f = chunk.samples, chunk.forecast
    n, h = len(s), s.horizon
    origins = np.repeat(s.origins.astype("datetime64[D]"), h)
    horizon = np.tile(np.arange(1, h + 1), n)
    block = pd.DataFrame({
        "forecaster": chunk.forecaster, "period": chunk.period.name, "fit": chunk.fitted_at, "origin": origins,
        "date": origins + horizon.astype("timedelta64[D]"), "horizon": horizon,
        "reference": np.repeat(f.reference, h), "last_close": np.repeat(f.last_close, h),
        "actual": s.target_close.reshape(-1), "forecast": f.returns.reshape(-1)})
    if f.quantiles is not None:
        block = pd.concat([block, pd.DataFrame(f.quantiles.reshape(n * h, -1), columns=QUANTILE_COLUMNS)], axis=1)
    return block


@dataclass
class Forecasts:
    """One row per forecaster, period, origin and horizon: ``fit`` (the period its model was fitted before), USD
    ``reference``, ``last_close``, ``actual`` (NaN if unknown), and ``forecast`` and quantiles as returns."""

    table: pd.DataFrame
    fits: list[Fit] = field(default_factory=list)
    periods: dict[str, Period] = field(default_factory=dict)

    @classmethod
    def of(cls, chunks: Iterable[Chunk], fits: list[Fit] | None = None) -> Forecasts:
        chunks = list(chunks)
        blocks = [_block(c) for c in chunks]
        table = pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=["forecaster", "period"])
        return cls(table, list(fits or []), {c.period.name: c.period for c in chunks})

    def __add__(self, other: Forecasts) -> Forecasts:
        return Forecasts(pd.concat([self.table, other.table], ignore_index=True), self.fits + other.fits,
                         {**self.periods, **other.periods})

    @property
    def forecasters(self) -> list[str]:
        return list(dict.fromkeys(self.table["forecaster"]))

    @property
    def period_names(self) -> list[str]:
        return list(dict.fromkeys(self.table["period"]))

    def rows(self, forecaster: str, periods: Sequence[str] | str) -> pd.DataFrame:
        """The rows of ``forecaster`` in ``periods`` (in the order given), sorted by origin and horizon."""
        names = [periods] if isinstance(periods, str) else list(periods)
        rows = self.table[(self.table["forecaster"] == forecaster) & self.table["period"].isin(names)]
        order = rows["period"].map({name: i for i, name in enumerate(names)})
        return rows.assign(_order=order).sort_values(["_order", "origin", "horizon"], kind="stable").drop(columns="_order")

    def forecast(self, forecaster: str, periods: Sequence[str] | str) -> tuple[Forecast, np.ndarray]:
        """(the `Forecast` of ``forecaster`` over ``periods``, the (n, H) actual USD closes)."""
        rows = self.rows(forecaster, periods)
        h = int(rows["horizon"].max()) if len(rows) else 1
        n = len(rows) // h
        first = rows.iloc[::h]
        forecast = Forecast((first["origin"].to_numpy() + np.timedelta64(1, "D")).astype("datetime64[ns]"),
                            first["reference"].to_numpy(np.float64), first["last_close"].to_numpy(np.float64),
                            rows["forecast"].to_numpy(np.float64).reshape(n, h))
        if QUANTILE_COLUMNS[0] in rows and rows[QUANTILE_COLUMNS[0]].notna().all() and len(rows):
            forecast = forecast.with_quantiles(rows[QUANTILE_COLUMNS].to_numpy(np.float64).reshape(n, h, -1), LEVELS)
        return forecast, rows["actual"].to_numpy(np.float64).reshape(n, h)
