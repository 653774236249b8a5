"""Window normalisation + Keras model + inverse transform, saved and loaded as one MLflow pyfunc.

Input: raw daily rows, a frame with ``date`` and ``{COIN}_close``, ``{COIN}_volume`` for
every coin (USD), at least ``window_len`` consecutive days. Output: one row per forecast
day (the ``horizon`` days after the last row; one for a next-day model), the forecast close
in USD beside the last close, and for a model with a distribution head its calibrated 80 %
and 95 % intervals in USD.
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
from cryptolstm.intervals import INTERVALS, Calibration
from cryptolstm.models.lstm import Lstm
from cryptolstm.windowing import feature_columns, latest_window

INPUT_COLUMNS = ["date", *feature_columns(COINS)]


def prepare_rows(rows: pd.DataFrame, window_len: int) -> pd.DataFrame:
    """The last ``window_len`` rows, validated and sorted by date; ``DataError`` otherwise."""
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
    frame = rows.assign(date=dates).sort_values("date").tail(window_len).reset_index(drop=True)
    values = frame[INPUT_COLUMNS[1:]].apply(pd.to_numeric, errors="coerce")
    if not (np.isfinite(values.to_numpy(float)).all() and (values.to_numpy(float) > 0).all()):
        raise DataError("every price and volume in the last window must be a number greater than 0.")
    if (frame["date"].diff().dropna() != pd.Timedelta(days=1)).any():
        raise DataError(f"the last {window_len} rows must be consecutive days.")
    return frame.assign(**{c: values[c].astype(float) for c in values})


def forecast(lstm: Lstm, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per forecast day (H of them, ``horizon`` 1..H): ``date``, ``horizon``, ``coin``,
    ``forecast_close`` and ``last_close`` in USD, ``forecast_return`` (forecast / last close - 1),
    and under a distribution head ``lower_80``, ``upper_80``, ``lower_95``, ``upper_95`` in USD.

    ``lstm``: the trained `Lstm` forecaster (model, config and calibration), as in training.
    """
    cfg = lstm.cfg
    frame = prepare_rows(rows, cfg.window_len).set_index("date")
    sample = latest_window(frame, cfg.coin, COINS, cfg.window_len, cfg.rules.reference, cfg.horizon)
    predicted = lstm.predict(sample)
    horizons = np.arange(1, cfg.horizon + 1)
    last = float(predicted.last_close[0])
    values = np.array([predicted.close(h)[0] for h in horizons])
    first = pd.Timestamp(predicted.dates[0])
    out = pd.DataFrame({"date": [(first + pd.Timedelta(days=int(h) - 1)).date().isoformat() for h in horizons],
                        "horizon": horizons.astype(np.int64), "coin": cfg.coin, "forecast_close": values,
                        "last_close": last, "forecast_return": values / last - 1.0})
    if predicted.has_intervals:
        for coverage in INTERVALS:
            bounds = [predicted.bounds(coverage, h) for h in horizons]
            out[f"lower_{coverage}"] = [float(lower[0]) for lower, _ in bounds]
            out[f"upper_{coverage}"] = [float(upper[0]) for _, upper in bounds]
    return out


def example_rows(frame: pd.DataFrame, window_len: int) -> pd.DataFrame:
    """The last ``window_len`` days of a merged market frame, in the model's input format."""
    rows = frame[feature_columns(COINS)].tail(window_len).reset_index()
    return rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d"))


class LstmForecaster(mlflow.pyfunc.PythonModel):
    """The pyfunc: artifacts ``keras_model`` (a .keras file), ``config`` (RunConfig JSON) and, for
    a distribution head, ``calibration`` (the conformal margins, `intervals.Calibration` JSON)."""

    def load_context(self, context) -> None:
        import keras

        import cryptolstm.models.lstm  # noqa: F401 - registers the custom activation, heads and losses

        model = keras.models.load_model(context.artifacts["keras_model"], compile=False)
        config = RunConfig(**json.loads(Path(context.artifacts["config"]).read_text()))
        self.lstm = Lstm(config, model=model)
        if "calibration" in context.artifacts:
            self.lstm.calibration = Calibration.from_dict(json.loads(Path(context.artifacts["calibration"]).read_text()))

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        try:
            return forecast(self.lstm, model_input)
        except DataError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
