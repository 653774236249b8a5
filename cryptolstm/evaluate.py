"""Metrics of a forecast, always beside persistence on exactly the same days.

Two unit systems: ``usd`` (forecast close in US dollars, ``ref_close * (1 + r)``)
and ``return`` (the target return itself, the notebook's "normalised units").
"""

from __future__ import annotations

import numpy as np

from cryptolstm.models.baselines import Persistence
from cryptolstm.windowing import WindowSet

# Primary units per protocol: seed reports the notebook's normalised units.
PRIMARY_UNITS = {"seed": "return", "honest": "usd"}


def _errors(actual: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    err = pred - actual
    return float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2)))


def score(samples: WindowSet, pred_return: np.ndarray, units: str) -> dict[str, float]:
    """Model and persistence metrics over ``samples`` in ``units``.

    ``pred_return``: (n,) predicted target returns. Keys: mae, rmse,
    persistence_mae, persistence_rmse, mae_ratio (model / persistence),
    direction_accuracy (share of days where the predicted move from the last
    close has the actual move's sign), and mape in percent for ``usd``.
    """
    pred_return = np.asarray(pred_return, dtype=np.float64).reshape(-1)
    naive_return = Persistence().predict(samples)
    if units == "usd":
        to_units = lambda r: samples.ref_close * (1.0 + r)  # noqa: E731
        actual = np.asarray(samples.target_close, dtype=np.float64)
    else:
        to_units = lambda r: r  # noqa: E731
        actual = np.asarray(samples.y, dtype=np.float64)
    pred, naive = to_units(pred_return), to_units(naive_return)
    mae, rmse = _errors(actual, pred)
    p_mae, p_rmse = _errors(actual, naive)
    out = {
        "mae": mae,
        "rmse": rmse,
        "persistence_mae": p_mae,
        "persistence_rmse": p_rmse,
        "mae_ratio": mae / p_mae if p_mae > 0 else float("nan"),
        "direction_accuracy": float(np.mean(np.sign(pred - naive) == np.sign(actual - naive))),
    }
    if units == "usd":
        out["mape"] = float(np.mean(np.abs(pred - actual) / actual) * 100.0)
    return out


def split_metrics(split: str, samples: WindowSet, pred_return: np.ndarray, protocol: str) -> dict[str, float]:
    """``{"split/metric": value}`` in the protocol's primary units, plus the MAEs in the other units.

    Honest: ``val/mae`` is USD, ``val/mae_return`` in returns. Seed: ``val/mae``
    is in the notebook's normalised units, ``val/mae_usd`` in USD.
    """
    primary = PRIMARY_UNITS[protocol]
    other = "usd" if primary == "return" else "return"
    named = {f"{split}/{k}": v for k, v in score(samples, pred_return, primary).items()}
    secondary = score(samples, pred_return, other)
    for key in ("mae", "persistence_mae", "mae_ratio"):
        named[f"{split}/{key}_{other}"] = secondary[key]
    return named
