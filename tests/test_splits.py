"""Periods of target days: where the protocols cut, walk-forward folds, and the leakage they rule out
(changing prices after a boundary leaves every earlier sample and input window bit-identical)."""

import numpy as np
import pandas as pd
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError, DataError
from cryptolstm.protocols import HONEST, SEED
from cryptolstm.splits import Period, folds, honest_periods, pooled, seed_periods
from cryptolstm.windowing import fit_splits, inputs, protocol_samples, samples
from tests.conftest import synthetic_frame

CFG = RunConfig(window_len=7, train_frac=0.7, val_frac=0.15)
DAY = pd.Timedelta(days=1)
FIELDS = ("y", "ref_close", "persistence", "target_close", "dates")


def test_honest_periods_cut_the_days_and_run_to_the_end():
    days = pd.date_range("2020-01-01", periods=207, freq="D")
    p = honest_periods(days, 0.7, 0.15)  # cuts at int(0.7 * 207) = 144 and int(0.85 * 207) = 175
    assert list(p) == ["train", "val", "test"]
    assert (p["train"].first, p["train"].last) == (days[0], days[143])
    assert (p["val"].first, p["val"].last) == (days[144], days[174])
    assert (p["test"].first, p["test"].last) == (days[175], days[206])
    assert p["val"].label == "2020-05-24..2020-06-23" and p["val"].before == days[143]
    assert all(period.inputs_from is None for period in p.values())
    # No test share: the validation days run to the last day (a refit on every day).
    no_test = honest_periods(days, 0.8, 0.2)
    assert list(no_test) == ["train", "val"] and no_test["val"] == Period("val", days[165], days[206])
    assert HONEST.periods(days, 0.7, 0.15) == p


def test_seed_periods_are_the_notebooks_blocks_each_windowed_inside_itself():
    days = pd.date_range("2020-01-01", periods=101, freq="D")
    p = seed_periods(days, 0.8)  # int(0.8 * 101) = 80
    assert p == {"train": Period("train", days[0], days[79], inputs_from=days[0]),
                 "val": Period("val", days[80], days[100], inputs_from=days[80])}
    assert SEED.periods(days, 0.8, 0.15) == p  # the seed protocol has no val_frac


def test_honest_splits_are_chronological_disjoint_and_complete():
    frame = synthetic_frame(207)
    periods, s = protocol_samples(frame, CFG)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (144 - 7, 175 - 144, 207 - 175)
    assert s["val"].dates[0] == frame.index[144] and s["test"].dates[0] == frame.index[175]
    assert s["train"].dates[-1] == frame.index[143] and s["test"].dates[-1] == frame.index[206]
    all_dates = np.concatenate([s["train"].dates, s["val"].dates, s["test"].dates])
    assert len(np.unique(all_dates)) == 200 and np.all(np.diff(all_dates) > np.timedelta64(0))
    assert all_dates[0] == frame.index[7]  # the first window covers days 0..6
    assert set(periods) == {"train", "val", "test"}


def test_every_target_day_of_a_sample_lies_in_its_period():
    frame = synthetic_frame(300)
    cfg = CFG.replace(horizon=3)
    periods, s = protocol_samples(frame, cfg)
    for name, period in periods.items():
        first = pd.DatetimeIndex(s[name].dates)
        assert first[0] >= period.first and first[-1] + 2 * DAY == period.last, name
    # Origins 207 and 208 (days 208..211) straddle the train/val cut: they belong to neither.
    assert pd.Timestamp(s["train"].origins[-1]) == frame.index[206]
    assert pd.Timestamp(s["val"].origins[0]) == frame.index[209] == periods["val"].before


def _changed_after(frame, day):
    """A copy with every price and volume on and after ``day`` changed, each row by another factor."""
    changed = frame.copy()
    later = changed.index >= day
    changed.loc[later] = changed.loc[later].to_numpy() * np.geomspace(0.4, 3.0, int(later.sum()))[:, None]
    return changed


def _bytes(s, frame, cfg):
    """Every field of samples ``s`` and their input windows, as bytes."""
    return {**{f: getattr(s, f).tobytes() for f in FIELDS}, "inputs": inputs(frame, cfg, None, s).tobytes()}


@pytest.mark.parametrize("coin, horizon, names", [
    ("BTC", 1, "close,volume"), ("ETH", 1, "close,volume"), ("BTC", 3, "close,volume"), ("ETH", 7, "close,volume"),
    ("BTC", 2, "log_return,parkinson,garman_klass,realized_vol_5,log_volume,volume_change,day_of_week"),
])
def test_changing_prices_after_a_boundary_leaves_every_earlier_split_bit_identical(coin, horizon, names):
    frame = synthetic_frame(300, seed=11)
    cfg = CFG.replace(coin=coin, horizon=horizon, features=names)
    periods, before = protocol_samples(frame, cfg)
    for boundary, kept in ((periods["test"].first, ("train", "val")), (periods["val"].first, ("train",))):
        changed = _changed_after(frame, boundary)
        again_periods, after = protocol_samples(changed, cfg)
        assert again_periods == periods
        for name in kept:
            assert _bytes(after[name], changed, cfg) == _bytes(before[name], frame, cfg), (name, boundary.date())
        assert not np.array_equal(after["test"].target_close, before["test"].target_close)
    assert not np.array_equal(inputs(changed, cfg, None, after["val"]), inputs(frame, cfg, None, before["val"]))


def test_changing_one_future_price_changes_no_earlier_window():
    frame = synthetic_frame(120, seed=12)
    periods, before = protocol_samples(frame, CFG)
    for day_index in (40, 90, 119):
        changed = frame.copy()
        changed.iloc[day_index] = changed.iloc[day_index] * 1.5
        _, after = protocol_samples(changed, CFG)
        moved = 0
        for name in periods:
            b, a = before[name], after[name]
            earlier = b.dates < frame.index[day_index]  # target day before the change: inputs too
            x_before, x_after = inputs(frame, CFG, None, b), inputs(changed, CFG, None, a)
            assert x_after[earlier].tobytes() == x_before[earlier].tobytes()
            assert a.y[earlier].tobytes() == b.y[earlier].tobytes()
            moved += int((~earlier).any() and not np.array_equal(x_after[~earlier], x_before[~earlier]))
        assert moved >= 1 or day_index == 119  # the day itself moves a later window (day 119 is only a target)


def test_every_window_len_gets_the_same_validation_and_test_days():
    frame = synthetic_frame(150)
    _, short = protocol_samples(frame, CFG.replace(window_len=3))
    _, long = protocol_samples(frame, CFG.replace(window_len=21))
    for name in ("val", "test"):
        np.testing.assert_array_equal(short[name].dates, long[name].dates)
        np.testing.assert_array_equal(short[name].target_close, long[name].target_close)
    assert len(short["train"]) == len(long["train"]) + 18


def test_train_split_ends_before_val_inputs_matter():
    _, s = protocol_samples(synthetic_frame(100), CFG)
    # Every training target day precedes every validation target day, so early stopping
    # and selection never look at a day the model trained on.
    assert s["train"].dates.max() < s["val"].dates.min() and s["val"].dates.max() < s["test"].dates.min()


def test_too_short_for_three_splits():
    with pytest.raises(DataError, match=r"^10 days are too few for a 0\.7/0\.15/0\.15 split \(honest protocol\) "
                                        r"with window_len 7 and horizon 1; widen merge_date\.\.end_date\.$"):
        protocol_samples(synthetic_frame(10), CFG)


def test_a_fit_without_training_samples_is_one_sentence():
    frame = synthetic_frame(60)
    days = frame.index
    made = fit_splits(frame, CFG, Period("train", days[0], days[29]), Period("val", days[30], days[39]))
    assert (len(made.train), len(made.val)) == (23, 10) and made.periods[1].name == "val"
    with pytest.raises(DataError, match=r"^0 training and 14 validation sample\(s\) between 2020-01-01 and 2020-01-21 "
                                        r"with window_len 7 and horizon 1; widen merge_date\.\.end_date\.$"):
        fit_splits(frame, CFG, Period("train", days[0], days[5]), Period("val", days[6], days[20]))


def test_folds_are_consecutive_calendar_blocks_the_last_one_shorter():
    made = folds("2022-01-15", "2022-06-30", 2)
    assert [(p.name, p.label) for p in made] == [("0", "2022-01-15..2022-03-14"), ("1", "2022-03-15..2022-05-14"),
                                                  ("2", "2022-05-15..2022-06-30")]
    assert pooled(made) == Period("all", pd.Timestamp("2022-01-15"), pd.Timestamp("2022-06-30"))
    assert [p.label for p in folds("2022-01-31", "2022-02-27", 1)] == ["2022-01-31..2022-02-27"]
    # A fold's samples are the windows whose target day is in it, whatever came before.
    frame = synthetic_frame(120, start="2022-01-01")
    fold = folds("2022-03-01", "2022-04-30", 1)[1]
    s = samples(frame, CFG, fold)
    assert len(s) == 30 and pd.Timestamp(s.dates[0]) == fold.first and pd.Timestamp(s.dates[-1]) == fold.last


@pytest.mark.parametrize("args, words", [
    (("2022-01-01", "2022-06-30", 0), "fold_months must be an integer >= 1, got 0."),
    (("2022-06-30", "2022-01-01", 1), "end (2022-01-01) must not be before start (2022-06-30)."),
    (("2022-13-01", "2022-06-30", 1), "start must be a date written YYYY-MM-DD, got '2022-13-01'."),
])
def test_bad_folds_are_one_sentence(args, words):
    with pytest.raises(ConfigError) as caught:
        folds(*args)
    assert str(caught.value) == words
