"""The registered model as one MLflow pyfunc: raw daily rows (``date`` and the columns its features read,
at least ``min_rows`` consecutive days) in, forecast closes in USD out (`forecast`). Its networks run in
ONNX Runtime (Keras only where the export failed), in the `cryptolstm.models.network.NetworkForecaster`
that made them in training; `cryptolstm.packaging` writes its files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException
import numpy as np
import pandas as pd

from cryptolstm.config import RunConfig
from cryptolstm.errors import DataError
from cryptolstm.forecasting import quantile_column
from cryptolstm.intervals import INTERVALS, Calibration
from cryptolstm.rows import check_trained_on, prepare_rows, trained_prices
from cryptolstm.windowing import forecast_samples, input_rows, min_rows

PARAMS = {"every_day": False}  # the pyfunc's parameters and their defaults (its signature's)


def forecast(forecaster, rows: pd.DataFrame, every_day: bool = False, prices: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per forecast day (``horizon`` 1..H): ``date``, ``horizon``, ``coin``, ``forecast_close`` and
    ``last_close`` in USD, ``forecast_return``, and the 80 % / 95 % bounds in USD under a distribution head.
    ``every_day``: H rows for every window of ``rows``, with its ``origin`` and every quantile in USD;
    ``prices``: the prices the model was trained on, which ``rows`` must match on the same days."""
    from cryptolstm.models.base import History

    cfg = forecaster.cfg
    frame = prepare_rows(rows, cfg, every_day)
    check_trained_on(prices, frame)
    predicted = forecaster.predict(forecast_samples(frame, cfg, every_day), History(frame, cfg.coin))
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
        for coverage in INTERVALS:  # (H, 2, n) bounds -> (2, n, H)
            lower, upper = np.array([predicted.bounds(coverage, k) for k in range(1, h + 1)]).transpose(1, 2, 0)
            out[f"lower_{coverage}"], out[f"upper_{coverage}"] = lower.reshape(-1), upper.reshape(-1)
        if every_day:
            usd = predicted.reference[:, None, None] * (1.0 + predicted.quantiles)  # (n, H, Q)
            columns = [quantile_column(q) for q in predicted.levels]
            out = pd.concat([out, pd.DataFrame(usd.reshape(n * h, -1), columns=columns)], axis=1)
    return out


def example_rows(frame: pd.DataFrame, cfg: RunConfig | None = None) -> pd.DataFrame:
    """The last rows of a merged market frame a model of ``cfg`` needs, in its input format."""
    return input_rows(frame.tail(min_rows(cfg) if cfg else 60), cfg)


def _json(path: str) -> Any:
    return json.loads(Path(path).read_text())


def load_forecaster(artifacts: dict[str, str]):
    """The `cryptolstm.models.network.NetworkForecaster` of a model's artifacts (`LstmForecaster`'s)."""
    from cryptolstm.models.network import NetworkForecaster

    cfg = RunConfig(**_json(artifacts["config"]))
    calibration = Calibration.from_dict(_json(artifacts["calibration"])) if "calibration" in artifacts else None
    state = _json(artifacts["features"]) if "features" in artifacts else {}
    suffixes = ["", *(f"_{k}" for k in range(1, cfg.ensemble))]  # the first member's artifacts have no number
    networks = [_onnx(artifacts[f"onnx_model{s}"]) if f"onnx_model{s}" in artifacts
                else _keras_network(artifacts[f"keras_model{s}"]) for s in suffixes]
    return NetworkForecaster(cfg, networks, state, calibration)


def _onnx(path: str):
    """`cryptolstm.models.network.onnx_network`; a damaged or truncated file is one sentence naming it."""
    from cryptolstm.models.network import onnx_network

    try:
        return onnx_network(path)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types: one sentence
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
        raise DataError(f"the model's network file {path} is damaged or truncated ({reason}); log the model again "
                        f"(train or refit it).") from None


class Refusal(MlflowException):
    """Input the model refuses (HTTP 400 when served), with its sentence alone: the message cannot be changed
    (MLflow's scoring server would write the whole input frame before it)."""

    def __init__(self, message: str, **kwargs) -> None:
        self._sentence = message
        super().__init__(message, **kwargs)

    message = property(lambda self: self._sentence, lambda self, _ignored: None)  # a rewrite is ignored


class LstmForecaster(mlflow.pyfunc.PythonModel):
    """The pyfunc: artifacts ``config``, ``onnx_model`` (``keras_model`` where the export failed;
    ``onnx_model_1``... for an ensemble), ``calibration``, ``features`` and ``training``."""

    def load_context(self, context) -> None:
        self.forecaster = load_forecaster(dict(context.artifacts))
        # read once: every request's rows on its training days are checked against them
        self.prices = trained_prices(_json(context.artifacts["training"])["prices"])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        every_day = bool((params or {}).get("every_day", False))
        try:
            return forecast(self.forecaster, model_input, every_day, self.prices)
        except DataError as exc:
            raise Refusal(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


def _keras_network(path: str):
    """The forward pass of the .keras file at ``path``: the fallback without an ONNX artifact."""
    import keras

    import cryptolstm.models.lstm  # noqa: F401 - registers the custom activation, heads and losses

    model = keras.models.load_model(path, compile=False)
    return lambda X: model.predict(X, batch_size=1024, verbose=0)
