"""The trained network's outputs as a `Forecast`, and a forward pass that needs no TensorFlow.

A network maps (n, w, f) float32 windows to its raw outputs: (n, H) returns (point head),
(n, 2H) means and scales (gaussian) or (n, H, Q) quantiles on ``LEVELS`` (quantile).
`distribution` turns those into point returns and quantiles, `forecast_of` into the
`Forecast` of the samples, calibrated when a `Calibration` is given. Training (Keras,
`cryptolstm.models.lstm.Lstm`) and the registered pyfunc (`Predictor` over an ONNX Runtime
session, `onnx_network`) share these functions, so they forecast the same numbers.

This module imports neither Keras nor TensorFlow: a process that loads a registered model
to forecast pays for ONNX Runtime (a fraction of a second), not for TensorFlow (about 10 s).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cryptolstm.forecast import Forecast
from cryptolstm.intervals import LEVELS, Calibration, gaussian_quantiles

if TYPE_CHECKING:
    from cryptolstm.config import RunConfig
    from cryptolstm.windowing import WindowSet

Network = Callable[[np.ndarray], np.ndarray]  # (n, w, f) float32 windows -> raw outputs
ONNX_TOLERANCE = 1e-6  # largest difference of a raw output (a return or a scale) allowed between ONNX Runtime and Keras


def output_width(head: str, horizon: int) -> int:
    """How many numbers the network outputs per window for ``head`` and ``horizon`` H."""
    return {"point": horizon, "gaussian": 2 * horizon, "quantile": horizon * len(LEVELS)}[head]


def distribution(raw: np.ndarray, head: str, horizon: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A network's raw outputs of n windows -> ((n, H) point returns, (n, H, Q) quantiles on
    ``LEVELS`` or None). The point of a distribution head is its mean (gaussian) or median
    (quantile)."""
    out = np.asarray(raw, dtype=np.float64).reshape(len(raw), output_width(head, horizon))
    if head == "gaussian":
        mean, scale = out[:, :horizon], out[:, horizon:]
        return mean, gaussian_quantiles(mean, scale)
    if head == "quantile":
        quantiles = out.reshape(len(out), horizon, len(LEVELS))
        return quantiles[:, :, len(LEVELS) // 2], quantiles
    return out, None


def forecast_of(samples: WindowSet, raw: np.ndarray, head: str, horizon: int,
                calibration: Calibration | None = None) -> Forecast:
    """The `Forecast` of ``samples`` from the network's ``raw`` outputs on ``samples.X``, its
    quantiles adjusted by ``calibration`` (the conformal margins) when one is given."""
    point, quantiles = distribution(raw, head, horizon)
    forecast = Forecast.of_samples(samples, point)
    if quantiles is None:
        return forecast
    if calibration is not None:
        quantiles = calibration.apply(quantiles)
    return forecast.with_quantiles(quantiles, LEVELS)


def onnx_network(path: str) -> Network:
    """The forward pass of the ONNX file at ``path`` (one ONNX Runtime session on the CPU, one
    thread: a window of a small LSTM takes microseconds, more threads only add overhead)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(X: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(X, dtype=np.float32)})[0]

    return run


def export_onnx(model, path: str, windows: np.ndarray) -> str | None:
    """Save the Keras ``model`` as an ONNX file at ``path`` (Keras' exporter, tf2onnx underneath)
    and check that ONNX Runtime's raw outputs on the (n, w, f) ``windows`` equal Keras' within
    ``ONNX_TOLERANCE``. Returns None when it is saved and equal, else why not (the file is then
    removed: the model is used through Keras)."""
    try:
        with warnings.catch_warnings():  # tf2onnx's NumPy deprecation notices
            warnings.simplefilter("ignore")
            model.export(path, format="onnx", verbose=False)
        expected = np.asarray(model(windows, training=False), dtype=np.float64)
        got = np.asarray(onnx_network(path)(windows), dtype=np.float64).reshape(expected.shape)
        gap = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        problem = None if gap <= ONNX_TOLERANCE else (f"ONNX Runtime's outputs differ from Keras' by {gap:.2g} "
                                                       f"(more than {ONNX_TOLERANCE:g})")
    except Exception as exc:  # noqa: BLE001 - any exporter failure: the model is used through Keras
        problem = f"ONNX export failed: {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}"
    if problem is not None:
        with contextlib.suppress(OSError):
            Path(path).unlink(missing_ok=True)
    return problem


class Predictor:
    """A trained network with its config and calibration, forecasting like `Lstm.predict`
    (``cfg``: its `RunConfig`; ``network``: its forward pass; ``calibration``: the intervals'
    conformal margins, None for a point head)."""

    def __init__(self, cfg: RunConfig, network: Network, calibration: Calibration | None = None) -> None:
        self.cfg, self.network, self.calibration = cfg, network, calibration

    def predict(self, samples: WindowSet, closes=None, calibrated: bool = True) -> Forecast:
        """The forecast of every sample (all windows in one forward pass)."""
        raw = self.network(samples.X) if len(samples) else np.zeros((0, output_width(self.cfg.head, self.cfg.horizon)))
        return forecast_of(samples, raw, self.cfg.head, self.cfg.horizon, self.calibration if calibrated else None)
