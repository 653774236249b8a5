"""The one forecasting loop (`cryptolstm.forecasting.historical_forecasts`): when it fits, on which
rows, which fit forecasts which period, and the long table it returns.

The quick tests use the drift baseline and `Probe`, a small forecaster written here that follows
the forecaster protocol (`cryptolstm.models.base`) and writes down what the loop hands it; the
slow ones train tiny real networks (a warm chain, an ensemble)."""

from __future__ import annotations

import concurrent.futures as futures
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError
from cryptolstm.forecast import Forecast
from cryptolstm.forecasting import (NEVER, Chunk, Forecasts, Retrain, fitted, fresh, historical_forecasts, once,
                                    quantile_column)
from cryptolstm.intervals import LEVELS
from cryptolstm.models.base import History
from cryptolstm.models.baselines import Drift
from cryptolstm.scoring import score
from cryptolstm.splits import DAY, folds
from cryptolstm.windowing import Samples, samples
from tests.conftest import synthetic_frame

FRAME = synthetic_frame(400)  # 2020-01-01..2021-02-03
CFG = RunConfig(window_len=5)
PERIODS = folds("2020-07-01", "2020-11-30", 1)  # five monthly periods, named "0".."4"
CLOSES = FRAME["BTC_close"]


@dataclass
class Seen:
    """One call the loop made on a `Probe`: ``kind`` fit or predict, by which probe (its number),
    the last row of the History it was given and, for a forecast, what it forecast and the last
    day of the fit that made it."""

    kind: str
    probe: int
    last_day: pd.Timestamp
    fitted_through: pd.Timestamp | None = None
    origins: np.ndarray | None = None
    forecast: Forecast | None = None


class Probe:
    """A forecaster that journals what the loop gives it. Fitted, it forecasts drift (day t + k =
    close[t] * exp(k mu), mu the mean daily log return of the closes it was fitted on); unfitted,
    persistence. ``horizon``: forecast that many days whatever the samples ask (a model of H
    days), else the samples' H. ``parent``: the probe it continues from (a warm start)."""

    name = "probe"

    def __init__(self, journal: list[Seen], horizon: int | None = None, parent: Probe | None = None) -> None:
        self.journal, self.horizon, self.parent = journal, horizon, parent
        self.number = sum(s.kind == "made" for s in journal)
        journal.append(Seen("made", self.number, pd.NaT))
        self.params: dict[str, float] = {}
        self.fitted_through = None

    def fit(self, history: History) -> Probe:
        closes = history.closes
        self.fitted_through = history.frame.index[-1]
        self.params = {"days": float(len(closes)), "mu": float(np.mean(np.diff(np.log(closes.to_numpy()))))}
        self.journal.append(Seen("fit", self.number, self.fitted_through))
        return self

    def predict(self, made: Samples, history: History) -> Forecast:
        steps = np.arange(1, (self.horizon or made.horizon) + 1)
        growth = np.exp(self.params.get("mu", 0.0) * steps)[None, :]
        forecast = Forecast.of_closes(made, made.last_close()[:, None] * growth)
        self.journal.append(Seen("predict", self.number, history.frame.index[-1], self.fitted_through,
                                 made.origins, forecast))
        return forecast


def calls(journal: list[Seen], kind: str) -> list[Seen]:
    return [s for s in journal if s.kind == kind]


def mean_log_return(closes: pd.Series) -> float:
    return float(np.mean(np.diff(np.log(closes.to_numpy()))))


# --- when the loop fits, and on which rows ----------------------------------------------------


def test_scratch_fits_a_fresh_forecaster_before_each_period_on_the_rows_before_it_only():
    journal: list[Seen] = []
    made = historical_forecasts({"probe": fresh(lambda: Probe(journal)), "drift": fresh(Drift)}, FRAME, CFG, PERIODS)
    fits, predicts = calls(journal, "fit"), calls(journal, "predict")
    # One new probe per period, fitted on the rows up to the day before the period and nothing later.
    assert [s.probe for s in fits] == [0, 1, 2, 3, 4] and len(calls(journal, "made")) == 5
    assert [s.last_day for s in fits] == [p.before for p in PERIODS]
    for period, fit, predict in zip(PERIODS, fits, predicts):
        assert predict.probe == fit.probe and predict.fitted_through == period.before
        # Its origins: the day before the period's first day to the day before its last; the
        # rows it may read end with the period.
        assert pd.Timestamp(predict.origins.min()) == period.before
        assert pd.Timestamp(predict.origins.max()) == period.last - DAY
        assert predict.last_day == period.last
    assert (made.table["fit"] == made.table["period"]).all()
    assert [(f.forecaster, f.period, f.init) for f in made.fits] == (
        [("probe", p.name, "scratch") for p in PERIODS] + [("drift", p.name, "scratch") for p in PERIODS])
    # Each fit's values are those of the closes before its period, and its period's forecasts use them.
    for period, fit in zip(PERIODS, made.fits[5:]):
        assert fit.params["mu"] == pytest.approx(mean_log_return(CLOSES.loc[: period.before]), rel=1e-12)
        np.testing.assert_allclose(made.rows("drift", period.name)["forecast"], np.exp(fit.params["mu"]) - 1.0)
    assert [f.params["days"] for f in made.fits[:5]] == [float(len(CLOSES.loc[: p.before])) for p in PERIODS]


def test_a_fit_does_not_change_when_the_prices_of_its_period_and_later_do():
    changed = FRAME.copy()
    changed.loc[PERIODS[2].first:] *= 3.0
    a = historical_forecasts({"drift": fresh(Drift)}, FRAME, CFG, PERIODS)
    b = historical_forecasts({"drift": fresh(Drift)}, changed, CFG, PERIODS)
    assert [f.params for f in a.fits[:3]] == [f.params for f in b.fits[:3]]
    assert a.fits[3].params != b.fits[3].params  # the days of period 2 are before period 3
    pd.testing.assert_frame_equal(a.rows("drift", ["0", "1"]), b.rows("drift", ["0", "1"]))


def test_every_k_fits_on_every_kth_period_and_forecasts_those_between_with_the_last_fit():
    journal: list[Seen] = []
    retrain = Retrain(every=2)
    assert [[p.name for _, p in chain] for chain in retrain.chains(PERIODS)] == [["0", "1"], ["2", "3"], ["4"]]
    made = historical_forecasts({"probe": fresh(lambda: Probe(journal))}, FRAME, CFG, PERIODS, retrain)
    assert [(f.period, f.init) for f in made.fits] == [("0", "scratch"), ("2", "scratch"), ("4", "scratch")]
    assert made.table.groupby("period")["fit"].unique().map(list).to_dict() == {
        "0": ["0"], "1": ["0"], "2": ["2"], "3": ["2"], "4": ["4"]}
    assert [s.last_day for s in calls(journal, "fit")] == [PERIODS[k].before for k in (0, 2, 4)]
    assert [s.fitted_through for s in calls(journal, "predict")] == [PERIODS[k].before for k in (0, 0, 2, 2, 4)]
    # Period 1 is forecast with the fit before period 0: its mu, not one of period 0's days.
    mu = made.fits[0].params["mu"]
    assert mu == pytest.approx(mean_log_return(CLOSES.loc[: PERIODS[0].before]))
    np.testing.assert_allclose(made.rows("probe", "1")["forecast"], np.exp(mu) - 1.0)
    assert mu != pytest.approx(mean_log_return(CLOSES.loc[: PERIODS[1].before]))
    # once(): one fit, before the first period, forecasts them all.
    single = historical_forecasts({"probe": fresh(lambda: Probe([]))}, FRAME, CFG, PERIODS, once(PERIODS))
    assert [f.period for f in single.fits] == ["0"] and set(single.table["fit"]) == {"0"}
    np.testing.assert_allclose(single.table["forecast"], np.exp(mu) - 1.0)


def test_warm_starts_each_fit_from_the_last_fit_and_says_so():
    journal: list[Seen] = []
    handed: list[Probe | None] = []

    def make(last: Probe | None) -> Probe:
        handed.append(last)
        return Probe(journal, parent=last)

    made = historical_forecasts({"probe": make}, FRAME, CFG, PERIODS, Retrain("warm"))
    assert [f.init for f in made.fits] == ["scratch", "0", "1", "2", "3"]
    assert handed[0] is None
    # The maker is handed the forecaster fitted before the previous period, and only that one.
    assert [h.fitted_through for h in handed[1:]] == [p.before for p in PERIODS[:-1]]
    assert [h.number for h in handed[1:]] == [0, 1, 2, 3]
    assert (made.table["fit"] == made.table["period"]).all()
    # A warm chain depends on its order: one chain, however often it fits.
    assert len(Retrain("warm", every=2).chains(PERIODS)) == 1
    warm_every = historical_forecasts({"probe": lambda last: Probe([], parent=last)}, FRAME, CFG, PERIODS,
                                      Retrain("warm", every=2))
    assert [(f.period, f.init) for f in warm_every.fits] == [("0", "scratch"), ("2", "0"), ("4", "2")]


def test_a_fresh_forecaster_under_a_warm_policy_is_fitted_from_scratch_and_says_so():
    made = historical_forecasts({"drift": fresh(Drift)}, FRAME, CFG, PERIODS, Retrain("warm"))
    for period, fit in zip(PERIODS, made.fits):  # each fit is a fresh one on the closes before its period
        assert fit.params["mu"] == pytest.approx(mean_log_return(CLOSES.loc[: period.before]), rel=1e-12)
    assert [f.init for f in made.fits] == ["scratch"] * len(PERIODS)


def test_never_forecasts_with_the_fitted_forecaster_and_fits_nothing():
    history = History(FRAME.loc[:"2020-06-30"], "BTC")
    drift = Drift().fit(history)
    journal: list[Seen] = []
    probe = Probe(journal).fit(history)
    before = dict(drift.params)
    made = historical_forecasts({"drift": fitted(drift), "probe": fitted(probe)}, FRAME, CFG, PERIODS, NEVER)
    assert made.fits == [] and set(made.table["fit"]) == {""}
    assert len(calls(journal, "fit")) == 1 and len(calls(journal, "made")) == 1  # the fit made here, before the loop
    assert [s.fitted_through for s in calls(journal, "predict")] == [pd.Timestamp("2020-06-30")] * 5
    assert drift.params == before
    np.testing.assert_allclose(made.rows("drift", [p.name for p in PERIODS])["forecast"], np.exp(before["mu"]) - 1.0)
    assert len(made.table) == 2 * len(pd.date_range("2020-07-01", "2020-11-30"))  # every day, by each forecaster


def test_a_bad_retrain_is_one_sentence():
    with pytest.raises(ConfigError, match=r"^retrain must be one of scratch, warm; got 'cold'\.$"):
        Retrain("cold")
    with pytest.raises(ConfigError, match=r"^retrain_every must be an integer >= 1, got 0\.$"):
        Retrain(every=0)
    assert [Retrain(every=3).due(k) for k in range(5)] == [True, False, False, True, False]
    assert not any(NEVER.due(k) for k in range(5))


# --- horizons -----------------------------------------------------------------------------------


def test_horizon_one_scores_a_model_of_three_days_one_day_ahead_on_every_day():
    cfg = CFG.replace(horizon=3)
    period = PERIODS[1]  # August: 31 days
    makers = {"probe": fresh(lambda: Probe([], horizon=3))}
    three = historical_forecasts(makers, FRAME, cfg, [period])
    one = historical_forecasts(makers, FRAME, cfg, [period], horizon=1)
    # H days: only the origins whose three target days are all in the period (29), three rows each.
    assert len(three.table) == 29 * 3 and sorted(three.table["horizon"].unique()) == [1, 2, 3]
    # One day ahead: every day of the period is a target day, once.
    assert (one.table["horizon"] == 1).all()
    assert list(pd.to_datetime(one.table["date"])) == list(pd.date_range(period.first, period.last))
    np.testing.assert_array_equal(one.table["actual"], CLOSES.loc[period.first: period.last])
    # The same fit forecasts the same first day from the same origin.
    first = three.table[three.table["horizon"] == 1].set_index("origin")["forecast"]
    np.testing.assert_allclose(one.table.set_index("origin")["forecast"].loc[first.index], first, rtol=1e-12)
    mu = one.fits[0].params["mu"]
    np.testing.assert_allclose(three.rows("probe", "1")["forecast"], np.tile(np.exp(mu * np.arange(1, 4)) - 1, 29))
    scores = score(one, "usd")
    assert scores.days["1"] == 31 and scores.horizons("1", "probe") == [1]
    errors = (1.0 + one.table["forecast"]) * one.table["reference"] - one.table["actual"]
    assert scores.row("1", "probe")["usd/mae"] == pytest.approx(np.mean(np.abs(errors)))


# --- the table --------------------------------------------------------------------------------


def test_the_table_gives_back_the_forecast_that_was_put_in():
    cfg = CFG.replace(horizon=2)
    period = PERIODS[1]
    made = samples(FRAME.loc[: period.last], cfg, period)
    rng = np.random.default_rng(0)
    point = rng.normal(0, 0.02, (len(made), 2))
    quantiles = point[:, :, None] + np.sort(rng.normal(0, 0.03, (len(made), 2, len(LEVELS))), axis=2)
    forecast = Forecast.of_samples(made, point).with_quantiles(quantiles, LEVELS)
    table = Forecasts.of([Chunk("model", period, made, forecast, "1")])
    assert list(table.table.columns) == ["forecaster", "period", "fit", "origin", "date", "horizon", "reference",
                                         "last_close", "actual", "forecast", *map(quantile_column, LEVELS)]
    assert len(table.table) == 2 * len(made) and table.periods == {"1": period}
    back, actual = table.forecast("model", "1")
    np.testing.assert_array_equal(back.dates, forecast.dates)
    for name in ("reference", "last_close", "returns", "quantiles"):
        np.testing.assert_array_equal(getattr(back, name), getattr(forecast, name), err_msg=name)
    assert back.levels == LEVELS and back.has_intervals
    np.testing.assert_array_equal(actual, made.target_close)


def test_the_loop_puts_each_forecast_in_the_table_as_the_forecaster_made_it():
    journal: list[Seen] = []
    made = historical_forecasts({"probe": fresh(lambda: Probe(journal))}, FRAME, CFG.replace(horizon=2), PERIODS,
                                Retrain(every=2))
    given = [s.forecast for s in calls(journal, "predict")]
    for period, put in zip(PERIODS, given):
        back, _ = made.forecast("probe", period.name)
        np.testing.assert_array_equal(back.returns, put.returns)
        np.testing.assert_array_equal(back.dates, put.dates)
        np.testing.assert_array_equal(back.reference, put.reference)
    # Several periods come back in the order asked for.
    both, actual = made.forecast("probe", ["3", "1"])
    np.testing.assert_array_equal(both.returns, np.concatenate([given[3].returns, given[1].returns]))
    assert actual.shape == (len(both), 2) and not both.has_intervals


def test_an_executor_gives_the_same_table_and_reports_each_chain_once():
    finished = []
    makers = {"drift": fresh(Drift), "probe": fresh(lambda: Probe([]))}
    here = historical_forecasts(makers, FRAME, CFG, PERIODS, Retrain(every=2))
    with futures.ThreadPoolExecutor(2) as pool:
        there = historical_forecasts(makers, FRAME, CFG, PERIODS, Retrain(every=2), executor=pool,
                                     done=lambda job, chunks, fits: finished.append((job[0], len(chunks), len(fits))))
    pd.testing.assert_frame_equal(here.table, there.table)
    assert here.fits == there.fits
    assert sorted(finished) == sorted([(label, n, 1) for label in makers for n in (2, 2, 1)])


def test_periods_complete_one_after_another_and_several_processes_start_with_the_latest():
    makers = {"probe": fresh(lambda: Probe([])), "drift": fresh(Drift)}

    def run(executor: futures.Executor | None = None) -> tuple[Forecasts, list[tuple[str, str]]]:
        finished = []
        made = historical_forecasts(makers, FRAME, CFG, PERIODS, executor=executor,
                                    done=lambda job, chunks, fits: finished.append((chunks[0].period.name, job[0])))
        return made, finished

    here, order_here = run()
    with futures.ThreadPoolExecutor(1) as pool:  # one thread runs the jobs in the order they were submitted
        there, order_there = run(pool)
    assert order_here == [(p.name, label) for p in PERIODS for label in makers]
    assert order_there == [(p.name, label) for p in PERIODS[::-1] for label in makers]
    # The fits and the table keep the order of the forecasters, whatever order they ran in.
    for made in (here, there):
        assert [(f.forecaster, f.period) for f in made.fits] == [(label, p.name) for label in makers for p in PERIODS]
    pd.testing.assert_frame_equal(here.table, there.table)


# --- tiny real networks -----------------------------------------------------------------------


def tiny(**changes) -> RunConfig:
    return RunConfig(**{**dict(window_len=5, layers=1, neurons=4, epochs=2, batch_size=64, seed=7, patience=1),
                        **changes})


@pytest.mark.slow
def test_a_warm_lstm_chain_starts_each_fold_from_the_last_folds_weights_and_never_from_its_own_days():
    from cryptolstm.backtest.runner import NetworkMaker, fit_periods
    from cryptolstm.models.lstm import Lstm

    class RecordingLstm(Lstm):
        """The real network, writing down its weights as a fit starts and ends and the last row it fitted on."""

        def fit(self, history: History) -> RecordingLstm:
            self.start = None if self.model is None else [w.copy() for w in self.model.get_weights()]
            self.fitted_through = history.frame.index[-1]
            super().fit(history)
            self.end = [w.copy() for w in self.model.get_weights()]
            return self

        def continued(self, epochs: int, on_epoch=(), patience: int | None = None) -> RecordingLstm:
            return RecordingLstm(self.cfg.replace(epochs=epochs), model=self.model, warm=True)

    cfg = tiny()
    frame = synthetic_frame(300)  # 2020-01-01..2020-10-26
    periods = folds("2020-07-01", "2020-09-30", 1)
    chain: list[RecordingLstm] = []

    def make(last: RecordingLstm | None) -> RecordingLstm:
        chain.append(RecordingLstm(cfg) if last is None else NetworkMaker(cfg, warm_epochs=2)(last))
        return chain[-1]

    made = historical_forecasts({"lstm": make}, frame, cfg, periods, Retrain("warm"),
                                functools.partial(fit_periods, cfg))
    assert [(f.period, f.init) for f in made.fits] == [("0", "scratch"), ("1", "0"), ("2", "1")]
    assert chain[0].start is None and all(isinstance(m, RecordingLstm) for m in chain)
    for k, (period, fit) in enumerate(zip(periods, chain)):
        assert fit.fitted_through == period.before
        assert pd.Timestamp(fit.splits.val.dates.max()) < period.first  # every target it trained on is before the fold
        if k:  # the weights it starts from are exactly those the last fold's fit ended with
            assert all(np.array_equal(a, b) for a, b in zip(fit.start, chain[k - 1].end))
    # Each fold was forecast with the weights fitted before it, before the next fit moved them on.
    model = chain[-1].model
    for period, fit in zip(periods, chain):
        model.set_weights(fit.end)
        visible = frame.loc[: period.last]
        again = fit.predict(samples(visible, cfg, period), History(visible, "BTC"))
        np.testing.assert_allclose(made.forecast("lstm", period.name)[0].returns, again.returns, rtol=1e-5)
    # The weights moved on between folds (a forecast made after a later fit would have differed), unless
    # a warm fit found no epoch better than where it started and kept those weights.
    assert all(b.best_epoch == -1 or not np.allclose(a.end[0], b.end[0]) for a, b in zip(chain, chain[1:]))


@pytest.mark.slow
def test_a_warm_fit_keeps_the_weights_it_started_from_when_no_epoch_beats_them():
    from cryptolstm.models.lstm import Lstm

    cfg = tiny(epochs=3, patience=2)
    frame = synthetic_frame(300)
    periods = cfg.rules.periods(frame.index, cfg.train_frac, cfg.val_frac)
    history = History(frame.loc[: periods["val"].last], "BTC", periods["train"], periods["val"])
    first = Lstm(cfg).fit(history)
    start = [w.copy() for w in first.model.get_weights()]
    first.model.optimizer.learning_rate.assign(50.0)  # every further epoch now makes it worse
    warm = first.continued(epochs=3)
    warm.fit(history)
    assert warm.best_epoch == -1 and warm.params["best_epoch"] == 0 and warm.epochs_run >= 1
    assert all(np.array_equal(a, b) for a, b in zip(warm.model.get_weights(), start))
    assert warm.params["val_loss"] <= min(warm.history["val_loss"])
    assert warm.cfg.patience == 2  # at most the config's patience (WARM_PATIENCE is 3)


@pytest.mark.slow
def test_the_ensemble_forecasts_the_combination_of_its_members():
    from cryptolstm.models.lstm import Ensemble, make_forecaster

    cfg = tiny(ensemble=2, head="gaussian", epochs=2)
    frame = synthetic_frame(300)
    periods = cfg.rules.periods(frame.index, cfg.train_frac, cfg.val_frac)
    ensemble = make_forecaster(cfg)
    assert isinstance(ensemble, Ensemble) and [m.cfg.seed for m in ensemble.members] == [7, 8]
    ensemble.fit(History(frame.loc[: periods["val"].last], "BTC", periods["train"], periods["val"]))
    test = samples(frame, cfg, periods["test"])
    history = History(frame, "BTC")
    members = [m.predict(test, history, calibrated=False) for m in ensemble.members]
    assert not np.allclose(members[0].returns, members[1].returns)  # two seeds, two networks
    combined = Forecast.mean_of(members)
    np.testing.assert_allclose(combined.returns, (members[0].returns + members[1].returns) / 2)
    np.testing.assert_allclose(combined.quantiles, (members[0].quantiles + members[1].quantiles) / 2)
    raw = ensemble.predict(test, history, calibrated=False)
    np.testing.assert_allclose(raw.returns, combined.returns, rtol=1e-6)
    np.testing.assert_allclose(raw.quantiles, combined.quantiles, rtol=1e-6)
    # Through the loop: the point forecast is the members' mean; the quantiles their mean, calibrated
    # as one model on the validation days.
    table = historical_forecasts({"ensemble": fitted(ensemble)}, frame, cfg, [periods["test"]], NEVER)
    forecast, _ = table.forecast("ensemble", "test")
    np.testing.assert_allclose(forecast.returns, combined.returns, rtol=1e-6)
    np.testing.assert_allclose(forecast.quantiles, ensemble.calibration.apply(combined.quantiles), rtol=1e-6)
    assert set(ensemble.params) == {f"member{k}.{p}" for k in (0, 1) for p in ("best_epoch", "epochs_run", "val_loss")}


@pytest.mark.slow
def test_a_backtest_of_an_ensemble_fits_the_whole_ensemble_per_fold_and_warm_starts_every_member():
    """An ensemble config is backtested as the ensemble it is (not as its first member), each backtest
    seed's copy on its own seeds, and a warm fold continues every member from that member's weights."""
    from cryptolstm.backtest.runner import fit_periods, forecasters
    from cryptolstm.models.lstm import Ensemble
    from cryptolstm.options import BacktestOptions

    cfg = tiny(ensemble=2, head="gaussian")
    makers = forecasters(cfg, BacktestOptions(seeds=2, retrain="warm", arima=False))
    assert [label for label in makers if label.startswith("lstm.")] == ["lstm.seed7", "lstm.seed9"]
    copies = [makers[label](None) for label in ("lstm.seed7", "lstm.seed9")]
    assert all(isinstance(c, Ensemble) for c in copies)
    assert [[m.cfg.seed for m in c.members] for c in copies] == [[7, 8], [9, 10]]  # no member shared
    frame = synthetic_frame(300)
    periods = folds("2020-08-01", "2020-09-30", 1)
    chain: list[Ensemble] = []

    def make(last):
        chain.append(makers["lstm.seed7"](last))
        return chain[-1]

    made = historical_forecasts({"lstm": make}, frame, cfg, periods, Retrain("warm"), functools.partial(fit_periods, cfg))
    assert [(f.period, f.init) for f in made.fits] == [("0", "scratch"), ("1", "0")]
    assert isinstance(chain[1], Ensemble) and all(m.warm for m in chain[1].members)
    assert [m.model for m in chain[1].members] == [m.model for m in chain[0].members]  # each from its own weights
    assert set(made.fits[1].params) == {f"member{k}.{p}" for k in (0, 1) for p in ("best_epoch", "epochs_run", "val_loss")}
    # The fold's forecast is the ensemble's: the mean of its members' point forecasts.
    visible = frame.loc[: periods[1].last]
    test = samples(visible, cfg, periods[1])
    members = [m.predict(test, History(visible, "BTC"), calibrated=False) for m in chain[1].members]
    np.testing.assert_allclose(made.forecast("lstm", "1")[0].returns, (members[0].returns + members[1].returns) / 2,
                               rtol=1e-5)
