"""Window normalisation + the trained network + inverse transform, saved and loaded as one MLflow pyfunc.

Input: raw daily rows, a frame with ``date`` and ``{COIN}_close``, ``{COIN}_volume`` for
every coin (USD), at least ``window_len`` consecutive days. Output: one row per forecast
day (the ``horizon`` days after the last row; one for a next-day model), the forecast close
in USD beside the last close, and for a model with a distribution head its calibrated 80 %
and 95 % intervals in USD. With the parameter ``every_day`` (``params={"every_day": True}``),
every window of the input is forecast in one pass, one row per origin day and horizon, with
the origin and, for a distribution head, every quantile on ``LEVELS`` in USD (``q0.025``...):
what `cryptolstm evaluate` scores.

The network runs in ONNX Runtime (artifact ``onnx_model``), so loading a model and forecasting
imports neither TensorFlow nor Keras; a model saved without it (before cryptolstm logged one)
runs in Keras.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import DataError
from cryptolstm.intervals import INTERVALS, LEVELS, Calibration
from cryptolstm.windowing import feature_columns, input_rows, latest_window, origin_windows

INPUT_COLUMNS = ["date", *feature_columns(COINS)]
PARAMS = {"every_day": False}  # the pyfunc's parameters and their defaults (its signature's)


def quantile_column(level: float) -> str:
    """The column of the quantile at ``level`` in an ``every_day`` forecast: ``q0.025``."""
    return f"q{level:g}"


def prepare_rows(rows: pd.DataFrame, window_len: int, every_day: bool = False) -> pd.DataFrame:
    """The last ``window_len`` rows (every row with ``every_day``), validated and sorted by date;
    ``DataError`` otherwise."""
    if not isinstance(rows, pd.DataFrame):
        raise DataError("the input must be a table of daily rows.")
    missing = [c for c in INPUT_COLUMNS if c not in rows.columns]
    if missing:
        raise DataError(f"the input lacks column(s) {', '.join(missing)}; it needs {', '.join(INPUT_COLUMNS)}.")
    if len(rows) < window_len:
        raise DataError(f"the input has {len(rows)} row(s); this model needs at least {window_len} daily rows.")
    dates = pd.to_datetime(rows["date"], errors="coerce", format="ISO8601")
    if dates.isna().any():
        raise DataError(f"the input's date {rows['date'][dates.isna()].iloc[0]!r} is not a YYYY-MM-DD date.")
    frame = rows.assign(date=dates).sort_values("date")
    frame = (frame if every_day else frame.tail(window_len)).reset_index(drop=True)
    values = frame[INPUT_COLUMNS[1:]].apply(pd.to_numeric, errors="coerce")
    if not (np.isfinite(values.to_numpy(float)).all() and (values.to_numpy(float) > 0).all()):
        raise DataError(f"every price and volume in {'the input' if every_day else 'the last window'} "
                        "must be a number greater than 0.")
    if (frame["date"].diff().dropna() != pd.Timedelta(days=1)).any():
        raise DataError("the input's rows must be consecutive days." if every_day
                        else f"the last {window_len} rows must be consecutive days.")
    return frame.assign(**{c: values[c].astype(float) for c in values})


def forecast(lstm, rows: pd.DataFrame, every_day: bool = False) -> pd.DataFrame:
    """One row per forecast day (H of them, ``horizon`` 1..H): ``date``, ``horizon``, ``coin``,
    ``forecast_close`` and ``last_close`` in USD, ``forecast_return`` (forecast / last close - 1),
    and under a distribution head ``lower_80``, ``upper_80``, ``lower_95``, ``upper_95`` in USD.

    ``every_day``: forecast every window of ``rows`` (n = rows - window_len + 1 origins), H rows
    per origin in origin order, with the ``origin`` (the window's last day) and, under a
    distribution head, every quantile in USD (`quantile_column`).
    ``lstm``: the trained forecaster (`cryptolstm.inference.Predictor` or `Lstm`: a config, a
    calibration and ``predict(samples)``), as in training.
    """
    cfg = lstm.cfg
    frame = prepare_rows(rows, cfg.window_len, every_day).set_index("date")
    windows = origin_windows if every_day else latest_window
    predicted = lstm.predict(windows(frame, cfg.coin, COINS, cfg.window_len, cfg.rules.reference, cfg.horizon))
    n, h = len(predicted), cfg.horizon
    horizons = np.tile(np.arange(1, h + 1), n)
    first = np.repeat(predicted.dates.astype("datetime64[D]"), h)
    closes = np.stack([predicted.close(k) for k in range(1, h + 1)], axis=1).reshape(-1)
    last = np.repeat(predicted.last_close, h)
    out = pd.DataFrame({"date": np.datetime_as_string(first + (horizons - 1), unit="D"),
                        "horizon": horizons.astype(np.int64), "coin": cfg.coin, "forecast_close": closes,
                        "last_close": last, "forecast_return": closes / last - 1.0})
    if every_day:
        out.insert(0, "origin", np.datetime_as_string(first - 1, unit="D"))
    if predicted.has_intervals:
        for coverage in INTERVALS:
            bounds = [predicted.bounds(coverage, k) for k in range(1, h + 1)]
            out[f"lower_{coverage}"] = np.stack([lower for lower, _ in bounds], axis=1).reshape(-1)
            out[f"upper_{coverage}"] = np.stack([upper for _, upper in bounds], axis=1).reshape(-1)
        if every_day:
            usd = predicted.reference[:, None, None] * (1.0 + predicted.quantiles)  # (n, H, Q)
            out = pd.concat([out, pd.DataFrame(usd.reshape(n * h, -1), columns=[quantile_column(q) for q in LEVELS])],
                            axis=1)
    return out


def example_rows(frame: pd.DataFrame, window_len: int) -> pd.DataFrame:
    """The last ``window_len`` days of a merged market frame, in the model's input format."""
    return input_rows(frame.tail(window_len))


class LstmForecaster(mlflow.pyfunc.PythonModel):
    """The pyfunc: artifacts ``onnx_model`` (the network for ONNX Runtime; ``keras_model``, a .keras
    file, in a model whose export failed or that was logged before exports), ``config`` (RunConfig
    JSON) and, for a distribution head, ``calibration`` (the conformal margins, JSON)."""

    def load_context(self, context) -> None:
        from cryptolstm.inference import Predictor, onnx_network

        artifacts = context.artifacts
        config = RunConfig(**json.loads(Path(artifacts["config"]).read_text()))
        calibration = None
        if "calibration" in artifacts:
            calibration = Calibration.from_dict(json.loads(Path(artifacts["calibration"]).read_text()))
        if "onnx_model" in artifacts:
            self.lstm = Predictor(config, onnx_network(artifacts["onnx_model"]), calibration)
        else:  # a model logged before the ONNX artifact existed: Keras (and TensorFlow) it is
            self.lstm = _keras_predictor(artifacts["keras_model"], config, calibration)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        try:
            return forecast(self.lstm, model_input, every_day=bool((params or {}).get("every_day", False)))
        except DataError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


def _keras_predictor(path: str, config: RunConfig, calibration: Calibration | None):
    """The `Lstm` of the .keras file at ``path``: the fallback without an ONNX artifact."""
    import keras

    from cryptolstm.models.lstm import Lstm  # registers the custom activation, heads and losses

    lstm = Lstm(config, model=keras.models.load_model(path, compile=False))
    lstm.calibration = calibration
    return lstm
