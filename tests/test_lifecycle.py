"""A registered model's life without MLflow: which days `evaluate` may score, what it records, when a
version becomes champion (`promotion`), and refit's common evaluation, through `MemoryStore`, a
`cryptolstm.registry.ModelStore` over dicts holding real fitted forecasters.

The forecasters are the package's own baselines (persistence, drift) and `Shifted`, a persistence
with a bias that is worse than persistence on any days, so which model wins is known without
training a network; every number is checked against the closes, computed here by hand.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.data import Market, load_market
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.forecast import Forecast
from cryptolstm.models.network import NetworkForecaster
from cryptolstm.evaluate import MODEL, SPLIT, evaluate, evaluation_days, score_days
from cryptolstm.models.baselines import Drift, Persistence
from cryptolstm.outputs import split_tags
from cryptolstm.packaging import training_record
from cryptolstm.refit import common_evaluation, refit, refit_config
from cryptolstm.registry import (ALIAS, DISTRIBUTION_METRIC, EVALUATION_TAGS, METRIC, MIN_TAGGED_DAYS, Candidate,
                                 Decision, ModelInfo, Registration, champion_uri, model_name, next_day,
                                 persistence_ratio, promotion, registered_again, selection_metric)
from cryptolstm.train import train
from tests.conftest import cut_data, tiny_config

CUT = "2021-06-30"  # the champion's data ends here; the synthetic data runs on to 2021-11-30
NEW = pd.date_range("2021-07-01", "2021-11-30").strftime("%Y-%m-%d").tolist()  # the 153 days new to it
CHAMPION = champion_uri("BTC")


class Shifted:
    """Every target close ``shift`` above the origin's close: persistence with a bias, so worse than
    persistence on any days whose closes move less than ``shift / 2`` a day."""

    name = "shifted"

    def __init__(self, shift: float = 0.2) -> None:
        self.shift, self.params = shift, {"shift": shift}

    def fit(self, history) -> Shifted:
        return self

    def predict(self, samples, history=None) -> Forecast:
        closes = samples.last_close()[:, None] * np.full((1, samples.horizon), 1.0 + self.shift)
        return Forecast.of_closes(samples, closes)


@dataclass
class Run:
    """A trained run in memory: its model, metrics, the evaluation its validation ratio was measured
    on (`EVALUATION_TAGS`), its name and tags."""

    info: ModelInfo
    forecaster: object | None
    metrics: dict[str, float]
    evaluation: dict[str, str]
    name: str
    tags: dict[str, str] = field(default_factory=dict)


class MemoryStore:
    """`cryptolstm.registry.ModelStore` over dicts: runs trained with ``make()`` (a fresh forecaster,
    fitted by `cryptolstm.train.train`) or from a copy of a model's own (a warm start), each with
    what its training.json would say (`cryptolstm.packaging.training_record`); registered models
    as lists of run ids (version k is the k-th; a run is registered once), the champion version
    of each, every version's tags, and the evaluations recorded."""

    def __init__(self, make: Callable[[], object] = Persistence) -> None:
        self.make = make
        self.runs: dict[str, Run] = {}
        self.versions: dict[str, list[str]] = {}
        self.aliases: dict[str, str] = {}  # registered model -> its champion version
        self.version_tags: dict[tuple[str, str], dict[str, str]] = {}
        self.evaluations: list = []

    def resolve(self, uri: str) -> ModelInfo:
        if uri.startswith("runs:/") and uri.removeprefix("runs:/").split("/")[0] in self.runs:
            return dataclasses.replace(self.runs[uri.removeprefix("runs:/").split("/")[0]].info, uri=uri)
        name, _, alias = uri.removeprefix("models:/").partition("@")
        name, _, number = name.partition("/")
        number = self.aliases.get(name, "") if alias == ALIAS else number
        runs = self.versions.get(name, [])
        if uri.startswith("models:/") and number.isdigit() and 0 < int(number) <= len(runs):
            return dataclasses.replace(self.runs[runs[int(number) - 1]].info, uri=uri, name=name, version=number)
        raise ConfigError(f"there is no model {uri} in memory.")

    def load(self, info: ModelInfo, coin: str | None = None):
        if coin and coin.upper() != info.config.coin:
            raise ConfigError(f"{info.label} is a {info.config.coin} model; it cannot forecast {coin.upper()}.")
        forecaster = self.runs[info.run_id].forecaster
        if forecaster is None:
            raise ConfigError(f"cannot load {info.label}: its files are gone.")
        return forecaster

    def champion(self, coin: str) -> ModelInfo | None:
        name = model_name(coin)
        return self.resolve(f"models:/{name}/{self.aliases[name]}") if name in self.aliases else None

    def find_refit(self, key: str, coin: str) -> tuple[str, Registration] | None:
        name = model_name(coin)
        for number, run_id in enumerate(self.versions.get(name, []), start=1):
            if self.version_tags[name, str(number)].get("refit.key") == key:
                return run_id, self._registration(name, str(number), f"made already as version {number}", False)
        return None

    def network(self, info: ModelInfo):
        return copy.deepcopy(self.load(info))

    def train(self, cfg: RunConfig, market: Market, name: str = "run", tags: dict[str, str] | None = None,
              on_epoch=(), init=None) -> tuple[str, object]:
        result = train(cfg, market, on_epoch, forecaster=self.make() if init is None else init)
        run_id = f"run{len(self.runs) + 1}"
        record = training_record(result, market)
        val = record["periods"]["val"]
        info = ModelInfo(f"runs:/{run_id}/model", run_id, cfg, val["last"], record["data"]["last_date"], val["first"],
                         prices=record["prices"])
        said = split_tags(result) | {"protocol": cfg.protocol, "data.first_date": market.first_date,
                                     "data.last_date": market.last_date}
        evaluation = {k: said.get(k, "") for k in EVALUATION_TAGS}
        self.runs[run_id] = Run(info, result.forecaster, result.metrics, evaluation, name, dict(tags or {}))
        return run_id, result

    def register(self, run_id: str, coin: str, force: bool = False, decide: Decision | None = None,
                 tags: dict[str, str] | None = None) -> Registration:
        name = model_name(coin)
        current = self.aliases.get(name)
        if run_id in self.versions.get(name, []):  # registered already: the product's rule says what changes
            version = str(self.versions[name].index(run_id) + 1)
            theirs = None if current is None else self._candidate(name, current)
            decision = registered_again(self._candidate(name, version), theirs, current == version, force, False, True)
            promoted, reason = decision or (current == version, f"run {run_id} was already registered as version {version}")
        else:
            self.versions.setdefault(name, []).append(run_id)
            version = str(len(self.versions[name]))
            if current is not None and decide is not None and not force:
                promoted, reason = decide(self.resolve(f"models:/{name}/{current}"))
            else:
                theirs = None if current is None else self._candidate(name, current)
                promoted, reason = promotion(self._candidate(name, version), theirs, force)
            self.version_tags[name, version] = dict(tags or {})
        if promoted:
            self.aliases[name] = version
        self.version_tags[name, version]["promotion"] = reason
        return self._registration(name, version, reason, True)

    def _candidate(self, name: str, version: str) -> Candidate:
        run = self.runs[self.versions[name][int(version) - 1]]
        metric = selection_metric(run.info.config.head_spec.distribution)
        return Candidate(version, metric, run.metrics[metric], run.evaluation)

    def _registration(self, name: str, version: str, reason: str, added: bool) -> Registration:
        ratio, split = persistence_ratio(self.runs[self.versions[name][int(version) - 1]].metrics)
        return Registration(name, version, self.aliases.get(name) == version, reason, ratio < 1.0, ratio, added,
                            ratio_split=split)

    def record_evaluation(self, evaluation, market: Market, data_dir: str) -> str:
        self.evaluations.append(evaluation)
        return f"evaluation{len(self.evaluations)}"


def _champion_of(store: MemoryStore, data, **changes) -> tuple[str, object]:
    """Train ``store.make()`` on the synthetic days up to `CUT` (or as ``changes`` say) and register
    it as BTC's first version, the champion; (its run id, its `TrainResult`)."""
    cfg = tiny_config(data, merge_date="2020-01-01", **{"end_date": CUT, **changes})
    run_id, result = store.train(cfg, load_market(data, cfg.merge_date, cfg.end_date))
    registration = store.register(run_id, "BTC")
    assert (registration.version, registration.promoted, registration.reason) == ("1", True, "first champion")
    return run_id, result


def _closes(data) -> pd.Series:
    """BTC's synthetic daily closes, indexed by ISO date."""
    closes = load_market(data, "2020-01-01").frame["BTC_close"]
    return closes.set_axis(closes.index.strftime("%Y-%m-%d"))


def _mae(closes: pd.Series, first: str, last: str, shift: float = 0.0) -> float:
    """The one-day-ahead MAE (USD) on ``first..last`` of a forecast of the previous close times ``1 + shift``."""
    previous = closes.shift(1).loc[first:last]
    return float(np.mean(np.abs(previous * (1.0 + shift) - closes.loc[first:last])))


# --- the registry's small rules


def test_names_uris_and_days_of_a_registered_model():
    assert (model_name("btc"), model_name("ETH")) == ("cryptolstm-btc", "cryptolstm-eth")
    with pytest.raises(ConfigError, match=r"^coin must be one of BTC, ETH; got 'DOGE'\.$"):
        model_name("DOGE")
    assert champion_uri("eth") == "models:/cryptolstm-eth@champion"
    assert [next_day(d) for d in ("2021-06-30", "2020-02-28", "2020-02-29", "2021-12-31")] == \
        ["2021-07-01", "2020-02-29", "2020-03-01", "2022-01-01"]
    cfg = RunConfig()
    version = ModelInfo(CHAMPION, "abc", cfg, "2021-05-01", CUT, "2021-04-01", "cryptolstm-btc", "3")
    assert (version.label, version.pinned_uri) == ("cryptolstm-btc version 3", "models:/cryptolstm-btc/3")
    run = ModelInfo("runs:/abc/model", "abc", cfg, "2021-05-01", CUT)
    assert (run.label, run.pinned_uri) == ("runs:/abc/model", "runs:/abc/model")
    assert not version.is_new(CUT) and version.is_new("2021-07-01")  # a test day is not new


# --- which days evaluate scores


def test_evaluation_days_run_from_the_day_after_the_models_data_to_the_last_day_of_the_data(synthetic_data):
    store = MemoryStore(Drift)
    _champion_of(store, synthetic_data)
    info, market = store.resolve(CHAMPION), load_market(synthetic_data, "2020-01-01")
    assert (info.data_last, market.last_date) == (CUT, "2021-11-30")
    assert evaluation_days(info, market, None, None, str(synthetic_data)) == ("2021-07-01", "2021-11-30")
    assert evaluation_days(info, market, None, "2022-06-01", str(synthetic_data)) == ("2021-07-01", "2021-11-30")
    assert evaluation_days(info, market, "2021-08-01", "2021-08-31", str(synthetic_data)) == ("2021-08-01", "2021-08-31")
    # its test days are not days it trained or validated on: they may be scored again
    test_first = next_day(info.trained_until)
    assert evaluation_days(info, market, test_first, None, str(synthetic_data)) == (test_first, "2021-11-30")


def test_a_day_the_model_trained_or_validated_on_is_refused_in_one_sentence(synthetic_data):
    store = MemoryStore(Drift)
    _champion_of(store, synthetic_data)
    info, market = store.resolve(CHAMPION), load_market(synthetic_data, "2020-01-01")
    for day in (info.trained_until, info.val_first, "2020-03-01"):  # its last validation day, its first, a training day
        with pytest.raises(ConfigError) as refused:
            evaluation_days(info, market, day, None, str(synthetic_data))
        assert str(refused.value) == (f"{day} is not a new day for cryptolstm-btc version 1: its training and "
                                      f"validation used the days up to {info.trained_until}; score days from "
                                      f"{next_day(info.trained_until)} on.")
    with pytest.raises(ConfigError, match="is not a new day for cryptolstm-btc version 1"):
        evaluate(store, CHAMPION, str(synthetic_data), since=info.trained_until, fetch_missing=False)
    assert store.evaluations == []  # refused before anything was recorded
    with pytest.raises(ConfigError, match=r"^no day to score between 2021-09-01 and 2021-08-01\.$"):
        evaluation_days(info, market, "2021-09-01", "2021-08-01", str(synthetic_data))


def test_no_new_day_left_is_one_sentence_saying_how_to_get_newer_prices(synthetic_data, tmp_path):
    store = MemoryStore(Drift)
    _champion_of(store, synthetic_data)
    data = str(cut_data(synthetic_data, tmp_path / "cut", CUT))
    with pytest.raises(DataError) as refused:
        evaluate(store, CHAMPION, data, fetch_missing=False)
    assert str(refused.value) == (f"no new day to score: the data in {data} ends on {CUT} and cryptolstm-btc "
                                  f"version 1 trained on data up to {CUT}; fetch newer prices (cryptolstm fetch "
                                  f"--data-dir {data}).")
    info, market = store.resolve(CHAMPION), load_market(synthetic_data, "2020-01-01")
    with pytest.raises(DataError, match="is scored from 2021-12-05; fetch newer prices"):
        evaluation_days(info, market, "2021-12-05", None, str(synthetic_data))
    assert store.evaluations == []


# --- what evaluate scores and records


def test_evaluate_records_through_the_store_what_the_closes_say(synthetic_data):
    """Drift forecasts the previous close times exp(mu), mu the mean daily log return of the
    closes it was fitted on: its errors on the new days, by hand, are the recorded metrics."""
    store = MemoryStore(Drift)
    _champion_of(store, synthetic_data)
    done = evaluate(store, CHAMPION, str(synthetic_data), fetch_missing=False)
    assert store.evaluations == [done] and done.run_id == "evaluation1"
    assert (done.first, done.last, done.n_days, done.new_days) == ("2021-07-01", "2021-11-30", 153, True)
    assert done.info.label == "cryptolstm-btc version 1"
    closes = _closes(synthetic_data)
    days = done.days
    assert days["date"].tolist() == NEW and days["origin"].tolist() == closes.loc["2021-06-30":"2021-11-29"].index.tolist()
    assert np.allclose(days["actual"], closes.loc[NEW]) and np.allclose(days["persistence"], closes.shift(1).loc[NEW])
    mu = np.mean(np.diff(np.log(closes.loc[: done.info.trained_until].to_numpy())))
    by_hand = closes.shift(1).loc[NEW] * np.exp(mu)
    assert np.allclose(days["forecast"], by_hand, rtol=1e-12)
    error, naive = by_hand - closes.loc[NEW], closes.shift(1).loc[NEW] - closes.loc[NEW]
    m = done.metrics
    assert m["live/mae"] == pytest.approx(error.abs().mean(), rel=1e-12)
    assert m["live/persistence_mae"] == pytest.approx(_mae(closes, NEW[0], NEW[-1]), rel=1e-12)
    assert m["live/rmse"] == pytest.approx(np.sqrt((error ** 2).mean()), rel=1e-12)
    assert m["live/mae_ratio"] == pytest.approx(error.abs().mean() / naive.abs().mean(), rel=1e-12)
    assert days["cumulative_gap"].iloc[-1] == pytest.approx((error.abs() - naive.abs()).sum())
    assert not any("coverage" in k for k in m)  # a point forecast: no intervals, no interval baselines
    # the same days scored directly, without the store, give the same numbers
    forecaster = store.load(done.info)
    _, direct = score_days(forecaster, done.info.config, load_market(synthetic_data, "2020-01-01").frame,
                           "2021-07-01", "2021-11-30")
    assert direct == m


def test_only_an_evaluation_of_a_version_on_enough_new_days_becomes_its_tags(synthetic_data):
    store = MemoryStore(Drift)
    run_id, result = _champion_of(store, synthetic_data)
    few = evaluate(store, CHAMPION, str(synthetic_data), until=NEW[MIN_TAGGED_DAYS - 2], fetch_missing=False)
    enough = evaluate(store, CHAMPION, str(synthetic_data), until=NEW[MIN_TAGGED_DAYS - 1], fetch_missing=False)
    assert (few.n_days, few.tags_version, enough.n_days, enough.tags_version) == (29, False, 30, True)
    test_days = evaluate(store, CHAMPION, str(synthetic_data), since=str(result.periods["test"].first.date()),
                         fetch_missing=False)
    assert test_days.n_days > 30 and not test_days.new_days and not test_days.tags_version
    by_run = evaluate(store, f"runs:/{run_id}/model", str(synthetic_data), fetch_missing=False)
    assert by_run.n_days == 153 and not by_run.tags_version  # not a registered version
    assert len(store.evaluations) == 4  # every one recorded all the same


def test_evaluate_and_refit_refuse_prices_other_than_those_trained_on(synthetic_data, tmp_path):
    store = MemoryStore(Drift)
    _champion_of(store, synthetic_data)
    edited = cut_data(synthetic_data, tmp_path / "edited", "2021-11-30")
    frame = pd.read_csv(edited / "btc-usd-daily.csv")
    was = frame.loc[frame["date"] == "2021-02-03", "close"].iloc[0]
    frame.loc[frame["date"] == "2021-02-03", "close"] = was * 1.01
    frame.to_csv(edited / "btc-usd-daily.csv", index=False)
    with pytest.raises(DataError) as refused:
        evaluate(store, CHAMPION, str(edited), fetch_missing=False)
    assert str(refused.value) == (f"the prices in {edited} are not those cryptolstm-btc version 1 was trained on: "
                                  f"BTC_close on 2021-02-03 is {was * 1.01:.10g} there but was {was:.10g} (1 of the 547 "
                                  "shared days differ); evaluate it on the data it was trained with, or refit it.")
    swapped = cut_data(synthetic_data, tmp_path / "swapped", "2021-11-30")
    (swapped / "btc-usd-daily.csv").write_text((synthetic_data / "eth-usd-daily.csv").read_text())
    with pytest.raises(DataError, match=r"^the prices in .* are not those cryptolstm-btc version 1 was trained on: "
                                        r"BTC_close on 2020-01-01 is 487\.\d+ there but was 10032\.\d+ \(547 of the 547 "):
        refit(store, CHAMPION, str(swapped), fetch_missing=False)
    assert store.evaluations == [] and len(store.runs) == 1


def test_evaluating_the_test_days_gives_back_the_training_test_metrics(synthetic_data):
    store = MemoryStore(Drift)
    run_id, result = _champion_of(store, synthetic_data)
    test = result.periods["test"]
    done = evaluate(store, CHAMPION, str(synthetic_data), since=test.first.date().isoformat(),
                    until=test.last.date().isoformat(), fetch_missing=False)
    assert done.n_days == int(split_tags(result)["split.test.n"]) and not done.new_days
    for key in ("mae", "persistence_mae", "rmse", "mae_ratio", "direction_accuracy", "dm_p", "mape"):
        assert done.metrics[f"live/{key}"] == pytest.approx(result.metrics[f"test/{key}"], rel=1e-9), key


def test_a_model_of_several_days_is_scored_every_day_and_per_horizon(synthetic_data):
    store = MemoryStore(Drift)
    _champion_of(store, synthetic_data, horizon=3)
    done = evaluate(store, CHAMPION, str(synthetic_data), until="2021-07-31", fetch_missing=False)
    july = NEW[:31]
    assert done.days["date"].tolist() == july  # one day ahead on every day, not only where 3 days fit
    closes = _closes(synthetic_data)
    mu = np.mean(np.diff(np.log(closes.loc[: done.info.trained_until].to_numpy())))
    m = done.metrics
    assert m["live/mae"] == pytest.approx(np.mean(np.abs(closes.shift(1).loc[july] * np.exp(mu) - closes.loc[july])))
    # horizon k: the 29 origins 2021-06-30..2021-07-28 whose 3 days all fall in July, day t+k from day t
    origins = closes.loc["2021-06-30":"2021-07-28"]
    for k in (1, 2, 3):
        actual = closes.shift(-k).loc[origins.index]
        assert m[f"live/h{k}/mae"] == pytest.approx(np.mean(np.abs(origins * np.exp(k * mu) - actual)), rel=1e-12)
        assert m[f"live/h{k}/persistence_mae"] == pytest.approx(np.mean(np.abs(origins - actual)), rel=1e-12)
    assert m["live/h1/mae"] != m["live/mae"]  # 29 windows against 31 days


def test_no_forecast_reads_the_day_it_forecasts(synthetic_data):
    """A network forecaster (its windows, features and head, with a fixed network of numpy) scored
    on July: changing every price from 2021-07-20 on leaves the forecast of that day as it was and
    changes the next day's, whose window ends on it."""
    cfg = tiny_config(synthetic_data, merge_date="2020-01-01")
    weights = np.linspace(-0.1, 0.1, cfg.window_len * 4).reshape(cfg.window_len, 4).astype(np.float32)
    network = NetworkForecaster(cfg, [lambda X: np.einsum("nwf,wf->n", X, weights)[:, None] * 0.1])
    frame = load_market(synthetic_data, "2020-01-01").frame
    changed = frame.copy()
    changed.loc["2021-07-20":] *= 1.5
    before, after = (score_days(network, cfg, f, "2021-07-01", "2021-07-31")[0].forecast(MODEL, SPLIT)[0]
                     for f in (frame, changed))
    dates = np.datetime_as_string(before.dates, unit="D").tolist()
    assert dates == NEW[:31]
    day, next_one = dates.index("2021-07-20"), dates.index("2021-07-21")
    np.testing.assert_array_equal(before.close()[: next_one], after.close()[: next_one])  # up to 2021-07-20
    assert before.returns[next_one, 0] != pytest.approx(after.returns[next_one, 0], rel=1e-6)
    assert before.close()[day] == after.close()[day] and np.ptp(before.returns) > 0


# --- promotion


EVALUATED = {"protocol": "honest", "data.first_date": "2020-01-01", "data.last_date": CUT,
             "split.val.first": "2021-03-01", "split.val.last": "2021-04-30", "split.val.n": "61"}


def test_the_first_version_is_champion_and_force_promotes_any_other():
    mine = Candidate(None, METRIC, 1.2, EVALUATED)
    assert promotion(mine, None) == (True, "first champion")
    other = Candidate("2", DISTRIBUTION_METRIC, 0.5, {**EVALUATED, "protocol": "seed"})
    assert promotion(mine, other, force=True) == (True, "made champion by --force over version 2")


@pytest.mark.parametrize("value, promoted, words", [
    (0.9, True, "val/mae_ratio 0.9000 beats champion version 4's 0.9500"),
    (0.95, False, "val/mae_ratio 0.9500 does not beat champion version 4's 0.9500"),
    (1.1, False, "val/mae_ratio 1.1000 does not beat champion version 4's 0.9500"),
])
def test_on_the_same_evaluation_only_a_lower_validation_ratio_wins(value, promoted, words):
    champion = Candidate("4", METRIC, 0.95, EVALUATED)
    assert promotion(Candidate(None, METRIC, value, dict(EVALUATED)), champion) == (promoted, words)
    # a run the user named is made champion whenever it is comparable, better or not
    assert promotion(Candidate(None, METRIC, value, dict(EVALUATED)), champion, chosen=True) == \
        (True, f"{words}; made champion as you named it")


def test_a_forecast_distribution_is_chosen_on_its_crps_ratio_and_never_against_a_point_forecast():
    assert (selection_metric(False), selection_metric(True)) == ("val/mae_ratio", "val/crps_ratio_garch")
    mine, theirs = Candidate(None, DISTRIBUTION_METRIC, 0.8, EVALUATED), Candidate("3", DISTRIBUTION_METRIC, 0.9, EVALUATED)
    assert promotion(mine, theirs) == (True, "val/crps_ratio_garch 0.8000 beats champion version 3's 0.9000")
    point = Candidate("3", METRIC, 0.99, EVALUATED)
    for chosen in (False, True):  # not even when named
        assert promotion(mine, point, chosen=chosen) == (False, (
            "not compared with champion version 3: this run is chosen on val/crps_ratio_garch and champion version 3 "
            "on val/mae_ratio (a point forecast and a forecast distribution are not compared); to make it champion "
            "anyway, register it with --force"))


def test_another_evaluation_is_not_compared_and_the_sentence_says_which_in_words():
    mine = Candidate(None, METRIC, 0.1, {**EVALUATED, "data.last_date": "2021-11-30", "split.val.n": "80"})
    promoted, reason = promotion(mine, Candidate("2", METRIC, 0.99, EVALUATED), chosen=True)
    assert not promoted
    assert reason == ("not compared with champion version 2: they were validated on different days or data (data up "
                      f"to 2021-11-30 where champion version 2 has {CUT}, validation samples 80 where champion version 2 "
                      "has 61); to make it champion anyway, register it with --force")
    # a champion registered before a tag existed: "unknown", never a Python dict or an empty value
    older = Candidate("1", METRIC, 0.99, {k: v for k, v in EVALUATED.items() if k != "protocol"})
    promoted, reason = promotion(mine, older)
    assert not promoted and "protocol honest where champion version 1 has unknown" in reason
    assert not set("{}[]'\"") & set(reason) and "\n" not in reason


# --- refit's common evaluation


@pytest.mark.parametrize("champion_shift, refit_shift, promoted", [(0.2, 0.0, True), (0.0, 0.2, False),
                                                                    (0.0, 0.0, True)])
def test_the_common_evaluation_compares_on_the_days_new_to_the_champion(synthetic_data, champion_shift,
                                                                       refit_shift, promoted):
    """A champion that validated up to 2021-10-31 against a refit whose validation tail starts in
    August: compared on November only, each model's MAE as the closes give it; a tie promotes."""
    store = MemoryStore(lambda: Shifted(champion_shift))
    _champion_of(store, synthetic_data, end_date="2021-10-31", train_frac=0.85, val_frac=0.15)
    champion = store.resolve(CHAMPION)
    assert champion.trained_until == "2021-10-31"
    store.make = lambda: Shifted(refit_shift)
    market = load_market(synthetic_data, "2020-01-01")
    run_id, _ = store.train(refit_config(champion.config, str(synthetic_data), None), market)
    refitted = store.resolve(f"runs:/{run_id}/model")
    assert refitted.val_first < "2021-09-01" and refitted.trained_until == "2021-11-30"
    closes = _closes(synthetic_data)
    mine, theirs = (_mae(closes, "2021-11-01", "2021-11-30", shift) for shift in (refit_shift, champion_shift))
    naive = _mae(closes, "2021-11-01", "2021-11-30")
    verdict = "not worse, promoted" if promoted else "worse, not promoted (promote it with --force)"
    assert common_evaluation(store, refitted, market)(champion) == (promoted, (
        f"on the common evaluation, 2021-11-01..2021-11-30 (30 days new to champion version 1), MAE {mine:,.2f} USD "
        f"against its {theirs:,.2f} (ratio to persistence {mine / naive:.4f} against {theirs / naive:.4f}): {verdict}"))


def test_the_common_evaluation_refuses_what_it_cannot_compare_fairly(synthetic_data):
    store = MemoryStore(Persistence)
    market = load_market(synthetic_data, "2020-01-01")
    _champion_of(store, synthetic_data, horizon=3)
    champion = store.resolve(CHAMPION)
    run_id, _ = store.train(refit_config(champion.config.replace(horizon=1), str(synthetic_data), None), market)
    refitted = store.resolve(f"runs:/{run_id}/model")
    decide = common_evaluation(store, refitted, market)
    assert decide(champion) == (False, "not compared: champion version 1 forecasts 3 day(s), this refit 1; "
                                       "promote it with --force")
    # a champion that validated on every day of the refit's tail leaves no day to compare on
    later = dataclasses.replace(champion, trained_until="2021-11-30")
    assert decide(later) == (False, f"not compared: champion version 1 trained or validated on every day of this "
                                    f"refit's validation tail ({refitted.val_first}..2021-11-30); promote it with --force")
    # a champion whose files are gone: registered, not promoted, the reason in one sentence
    store.runs[champion.run_id].forecaster = None
    same = dataclasses.replace(champion, config=champion.config.replace(horizon=1))
    assert decide(same) == (False, "not compared with champion version 1: cannot load cryptolstm-btc version 1: its "
                                   "files are gone. Promote it with --force.")


# --- refit


def test_refit_retrains_on_every_day_and_moves_the_alias_only_if_not_better_for_the_champion(synthetic_data):
    store = MemoryStore(lambda: Shifted(0.2))
    first_run, _ = _champion_of(store, synthetic_data)
    store.make = Persistence
    done = refit(store, CHAMPION, str(synthetic_data), fetch_missing=False)
    run = store.runs[done.run_id]
    cfg = run.info.config
    # the same configuration on every day, the most recent val_frac of them validating, no test days
    assert (cfg.end_date, cfg.train_frac, cfg.val_frac, cfg.data_dir) == (None, 0.85, 0.15, str(synthetic_data))
    assert dataclasses.replace(cfg, end_date=CUT, train_frac=0.7) == store.runs[first_run].info.config
    assert set(done.result.periods) == {"train", "val"} and run.info.trained_until == "2021-11-30"
    assert "test/mae" not in run.metrics and run.name == "refit-1x4-w7-s7"
    assert run.tags == {"refit.of_model": CHAMPION, "refit.of_version": "1", "refit.of_run": first_run,
                        "init.from": "scratch", "refit.key": run.tags["refit.key"]}
    assert (done.info.version, done.registration.version, done.registration.promoted) == ("1", "2", True)
    # the champion trained to June: the whole validation tail of the refit is new to it
    assert done.registration.reason.startswith(f"on the common evaluation, {run.info.val_first}..2021-11-30 (")
    assert done.registration.reason.endswith("not worse, promoted") and store.aliases["cryptolstm-btc"] == "2"
    # the same refit of version 1 again is found, not trained again
    again = refit(store, "models:/cryptolstm-btc/1", str(synthetic_data), fetch_missing=False)
    assert (again.run_id, again.result, again.registration.version, again.registration.added) == \
        (done.run_id, None, "2", False)
    # another refit of version 1 that adds no day the champion has not seen: refused before training
    with pytest.raises(DataError) as refused:
        refit(store, "models:/cryptolstm-btc/1", str(synthetic_data), end_date="2021-11-29", fetch_missing=False)
    assert str(refused.value) == (f"the data in {synthetic_data} up to 2021-11-29 ends on 2021-11-29, and the champion, "
                                  "cryptolstm-btc version 2, was trained on data up to 2021-11-30: a refit would add no "
                                  "day it has not seen; nothing was trained or registered.")
    assert len(store.runs) == 2


def test_a_worse_refit_is_registered_without_the_alias_and_made_once(synthetic_data):
    store = MemoryStore(Persistence)
    _champion_of(store, synthetic_data)
    store.make = lambda: Shifted(0.2)
    worse = refit(store, CHAMPION, str(synthetic_data), fetch_missing=False)
    assert (worse.registration.version, worse.registration.promoted) == ("2", False)
    assert worse.registration.reason.endswith("worse, not promoted (promote it with --force)")
    assert store.aliases["cryptolstm-btc"] == "1"
    assert store.version_tags["cryptolstm-btc", "2"]["promotion"] == worse.registration.reason
    # the same refit again (the same model, configuration, data and start): found, nothing trained
    again = refit(store, CHAMPION, str(synthetic_data), fetch_missing=False)
    assert (again.run_id, again.result, again.registration.version, again.registration.added) == \
        (worse.run_id, None, "2", False)
    assert len(store.runs) == 2 and store.versions["cryptolstm-btc"] == ["run1", "run2"]
    # another day of data is another refit
    later = refit(store, CHAMPION, str(synthetic_data), end_date="2021-11-29", fetch_missing=False)
    assert later.registration.version == "3" and later.result is not None


def test_refit_force_after_a_refit_that_was_not_promoted_makes_that_refit_champion(synthetic_data):
    """As the reason says: "worse, not promoted (promote it with --force)". The same refit with
    --force is found, not trained again, and made champion."""
    store = MemoryStore(Persistence)
    _champion_of(store, synthetic_data)
    store.make = lambda: Shifted(0.2)
    worse = refit(store, CHAMPION, str(synthetic_data), fetch_missing=False)
    assert not worse.registration.promoted
    forced = refit(store, CHAMPION, str(synthetic_data), force=True, fetch_missing=False)
    assert (forced.run_id, forced.result, forced.registration.version) == (worse.run_id, None, "2")
    assert forced.registration.promoted and store.aliases["cryptolstm-btc"] == "2"


def test_a_warm_refit_goes_on_from_the_models_own_fit(synthetic_data):
    """Drift refitted warm: the champion's own forecaster (a copy: the champion stays as it was)
    fitted again on every day, at most ``warm_epochs`` epochs; an ensemble is refused first."""
    store = MemoryStore(Drift)
    first_run, _ = _champion_of(store, synthetic_data)
    champion = store.runs[first_run].forecaster
    mu = champion.params["mu"]
    store.make = lambda: Shifted(0.2)  # what a refit from scratch would train: the warm one goes on with Drift
    done = refit(store, CHAMPION, str(synthetic_data), retrain="warm", warm_epochs=1, fetch_missing=False)
    run = store.runs[done.run_id]
    assert isinstance(run.forecaster, Drift) and run.forecaster is not champion and champion.params["mu"] == mu
    closes = _closes(synthetic_data)
    assert run.forecaster.params["mu"] == pytest.approx(np.mean(np.diff(np.log(closes.loc[: run.info.trained_until]))))
    assert run.tags["init.from"] == "cryptolstm-btc version 1" and run.info.config.epochs == 1
    ensemble = MemoryStore(Drift)
    _champion_of(ensemble, synthetic_data, ensemble=2)
    with pytest.raises(ConfigError, match=r"^cryptolstm-btc version 1 is an ensemble of 2 networks; refit it with "
                                          r"--retrain scratch\.$"):
        refit(ensemble, CHAMPION, str(synthetic_data), retrain="warm", fetch_missing=False)
    assert len(ensemble.runs) == 1


def test_refit_config_drops_the_test_split_of_the_honest_protocol_only():
    honest = RunConfig(train_frac=0.6, val_frac=0.25, end_date="2021-06-30")
    assert (refit_config(honest, "d", None).train_frac, refit_config(honest, "d", None).end_date) == (0.75, None)
    assert refit_config(honest, "d", "2021-09-30").end_date == "2021-09-30"
    seed = RunConfig(protocol="seed", train_frac=0.8)
    assert refit_config(seed, "d", None) == dataclasses.replace(seed, data_dir="d")


def test_refit_without_new_days_or_of_another_registered_model_is_refused_before_training(synthetic_data, tmp_path):
    store = MemoryStore(Persistence)
    first_run, _ = _champion_of(store, synthetic_data)
    data = str(cut_data(synthetic_data, tmp_path / "cut", CUT))
    with pytest.raises(DataError) as refused:
        refit(store, CHAMPION, data, fetch_missing=False)
    assert str(refused.value) == (f"the data in {data} ends on {CUT}, and cryptolstm-btc version 1 was trained on data "
                                  f"up to {CUT}: there is no new day to refit on.")
    store.versions["someone-elses"] = [first_run]
    with pytest.raises(ConfigError) as refused:
        refit(store, "models:/someone-elses/1", str(synthetic_data), fetch_missing=False)
    assert str(refused.value) == ("someone-elses version 1 is not one of cryptolstm's registered models: a refit is "
                                  "registered as a new version of cryptolstm-btc; pass --model "
                                  f"runs:/{first_run}/model to refit its configuration there.")
    assert list(store.runs) == [first_run] and store.versions["cryptolstm-btc"] == [first_run]
