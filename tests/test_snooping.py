"""The model confidence set and the SPA test on synthetic per-day losses: a planted better
forecaster alone stays in the set and SPA finds it; with all equal, all stay and SPA finds nothing."""

import numpy as np
import pandas as pd

from cryptolstm.snooping import block_length, confidence_set, superior_ability

DAYS = 400


def _losses(edge: float, k: int = 5, seed: int = 1) -> pd.DataFrame:
    """(DAYS, k) absolute-t losses with a shared daily factor (a volatile day is hard for everyone);
    the first forecaster's loss is lower by ``edge`` of the mean."""
    rng = np.random.default_rng(seed)
    common = np.abs(rng.standard_t(4, size=(DAYS, 1)))
    own = np.abs(rng.standard_t(4, size=(DAYS, k))) * 0.5
    losses = common + own
    losses[:, 0] *= 1 - edge
    return pd.DataFrame(losses, columns=[f"m{i}" for i in range(k)])


def test_a_planted_better_forecaster_alone_stays_in_the_confidence_set():
    found = confidence_set(_losses(edge=0.3))
    assert found.included == ("m0",) and found.pvalues["m0"] == 1.0
    assert all(p < 0.10 for name, p in found.pvalues.items() if name != "m0")
    assert found.days == DAYS and found.block >= 1 and found.size == 0.10


def test_forecasters_the_days_cannot_tell_apart_all_stay_in_the_set():
    found = confidence_set(_losses(edge=0.0))
    assert set(found.included) == {f"m{i}" for i in range(5)}


def test_spa_finds_a_planted_edge_over_the_benchmark_and_none_where_there_is_none():
    losses = _losses(edge=0.3, k=8)
    found = superior_ability(losses["m7"].rename("benchmark"), losses.drop(columns="m7"))
    assert found.pvalue < 0.05 and found.best == "m0" and found.best_ratio < 0.8 and found.models == 7
    # no edge: the best of 7 looks better by chance, and SPA says so (rejects at 5 % about 5 % of the time)
    nulls = [superior_ability(equal["m7"].rename("benchmark"), equal.drop(columns="m7"), reps=500)
             for equal in (_losses(edge=0.0, k=8, seed=s) for s in range(10))]
    assert sum(n.pvalue < 0.05 for n in nulls) <= 2 and max(n.pvalue for n in nulls) > 0.5
    assert all(n.benchmark == "benchmark" and n.models == 7 for n in nulls)


def test_the_same_losses_give_the_same_answer_and_the_block_follows_the_dependence():
    losses = _losses(edge=0.1)
    assert confidence_set(losses) == confidence_set(losses)
    rng = np.random.default_rng(3)
    persistent = pd.DataFrame(np.cumsum(rng.standard_normal((DAYS, 2)), axis=0))  # strongly dependent
    assert block_length(persistent) > block_length(pd.DataFrame(rng.standard_normal((DAYS, 2)))) >= 1


def test_forecasters_with_the_same_losses_are_tested_once_and_share_the_answer():
    losses = _losses(edge=0.3, k=3).assign(copy=lambda d: d["m1"], best_copy=lambda d: d["m0"])
    found = confidence_set(losses)
    assert found.included == ("m0", "best_copy") and found.pvalues["copy"] == found.pvalues["m1"] < 0.10
