import numpy as np
import pytest

from cryptolstm.config import RunConfig
from cryptolstm.errors import DataError
from cryptolstm.splits import honest_split
from tests.conftest import synthetic_frame

CFG = RunConfig(window_len=7, train_frac=0.7, val_frac=0.15)


def test_honest_splits_are_chronological_disjoint_and_complete():
    frame = synthetic_frame(207)
    s = honest_split(frame, CFG)
    n = 200  # 207 days; cuts at days int(0.7 * 207) = 144 and int(0.85 * 207) = 175
    assert (len(s.train), len(s.val), len(s.test)) == (144 - 7, 175 - 144, 207 - 175)
    assert s.val.dates[0] == frame.index[144] and s.test.dates[0] == frame.index[175]
    assert s.train.dates[-1] < s.val.dates[0] and s.val.dates[-1] < s.test.dates[0]
    all_dates = np.concatenate([s.train.dates, s.val.dates, s.test.dates])
    assert len(np.unique(all_dates)) == n and all_dates[0] == frame.index[7]


def _changed_after(frame, day, factor=3.0):
    """A copy with every price and volume on and after ``day`` multiplied by ``factor``."""
    changed = frame.copy()
    changed.loc[day:] = changed.loc[day:] * factor
    return changed


@pytest.mark.parametrize("coin, horizon", [("BTC", 1), ("ETH", 1), ("BTC", 3), ("ETH", 7)])
def test_changing_prices_after_a_boundary_leaves_every_earlier_split_bit_identical(coin, horizon):
    frame = synthetic_frame(300, seed=11)
    cfg = CFG.replace(coin=coin, horizon=horizon)
    before = honest_split(frame, cfg)
    days = frame.index
    for boundary, kept in ((days[int(0.85 * 300)], ("train", "val")), (days[int(0.7 * 300)], ("train",))):
        after = honest_split(_changed_after(frame, boundary), cfg)
        for name in kept:
            for field in ("X", "y", "ref_close", "target_close", "dates"):
                a, b = getattr(getattr(before, name), field), getattr(getattr(after, name), field)
                assert a.tobytes() == b.tobytes(), f"{name}.{field} changed (boundary {boundary.date()}, H={horizon})"
    assert not np.array_equal(before.test.target_close, after.test.target_close)


def test_changing_one_future_price_changes_no_earlier_window():
    frame = synthetic_frame(120, seed=12)
    before = honest_split(frame, CFG)
    for day_index in (40, 90, 119):
        changed = frame.copy()
        changed.iloc[day_index] = changed.iloc[day_index] * 1.5
        after = honest_split(changed, CFG)
        for name in ("train", "val", "test"):
            b, a = getattr(before, name), getattr(after, name)
            earlier = b.dates < frame.index[day_index]  # target day before the change: inputs too
            assert a.X[earlier].tobytes() == b.X[earlier].tobytes()
            assert a.y[earlier].tobytes() == b.y[earlier].tobytes()


def test_every_window_len_gets_the_same_validation_and_test_days():
    frame = synthetic_frame(150)
    short, long = honest_split(frame, CFG.replace(window_len=3)), honest_split(frame, CFG.replace(window_len=21))
    assert np.array_equal(short.val.dates, long.val.dates) and np.array_equal(short.test.dates, long.test.dates)
    assert len(short.train) == len(long.train) + 18


def test_train_split_ends_before_val_inputs_matter():
    s = honest_split(synthetic_frame(100), CFG)
    # Every training target day precedes every validation target day, so early stopping
    # and selection never look at a day the model trained on.
    assert s.train.dates.max() < s.val.dates.min()


def test_too_short_for_three_splits():
    with pytest.raises(DataError, match="too few"):
        honest_split(synthetic_frame(10), CFG)
