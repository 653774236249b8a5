"""A trained network as a forecaster, whatever runs it: Keras while training, ONNX Runtime once
registered (no TensorFlow to load).

A network maps (n, w, f) float32 input windows to its head's parameters (`cryptolstm.heads`).
`NetworkForecaster` builds the windows of the samples from the model's own features (and what they
fitted on training days), runs the network, and decodes the parameters into a `Forecast`,
calibrated by the conformal margins fitted on validation days. Training (Keras,
`cryptolstm.models.lstm.Lstm`) and the registered pyfunc (over an ONNX Runtime session)
share it, so they forecast the same numbers.

This module imports neither Keras nor TensorFlow: a process that loads a registered model to
forecast pays for ONNX Runtime (a fraction of a second), not for TensorFlow (about 10 s).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cryptolstm.forecast import Forecast
from cryptolstm.intervals import Calibration
from cryptolstm.windowing import Samples, inputs

if TYPE_CHECKING:
    from cryptolstm.config import RunConfig
    from cryptolstm.features import State
    from cryptolstm.heads import Head
    from cryptolstm.models.base import History

Network = Callable[[np.ndarray], np.ndarray]  # (n, w, f) float32 windows -> the head's parameters


def forecast_of(samples: Samples, params: np.ndarray, head: Head, horizon: int,
                calibration: Calibration | None = None) -> Forecast:
    """The `Forecast` of ``samples`` from the network's outputs (the head's parameters) on their
    windows, its quantiles adjusted by ``calibration`` (the conformal margins) when one is given."""
    point, quantiles = head.decode(params, horizon)
    forecast = Forecast.of_samples(samples, point)
    if quantiles is None:
        return forecast
    if calibration is not None:
        quantiles = calibration.apply(quantiles)
    return forecast.with_quantiles(quantiles, head.levels)


class NetworkForecaster:
    """A forecaster made of ``cfg`` (its features, window, head), ``state`` (what its features fitted
    on training days), one network per ensemble member (``networks``: a forward pass each) and
    ``calibration`` (the intervals' conformal margins; None for a point head or before `calibrate`)."""

    name = "lstm"  # its label in every table, metric and tag (a GRU's too: the names users' runs have)

    def __init__(self, cfg: RunConfig, networks: Sequence[Network] = (), state: State | None = None,
                 calibration: Calibration | None = None) -> None:
        self.cfg, self._networks, self.state, self.calibration = cfg, list(networks), state or {}, calibration
        self.params: dict[str, float] = {}

    @property
    def networks(self) -> list[Network]:
        """One forward pass per ensemble member."""
        return self._networks

    def windows(self, samples: Samples, history: History) -> np.ndarray:
        """(n, w, f) input windows of ``samples`` from ``history.frame``."""
        return inputs(history.frame, self.cfg, self.state, samples)

    def outputs(self, X: np.ndarray) -> list[np.ndarray]:
        """Each network's parameters for the (n, w, f) windows ``X``."""
        if len(X) == 0:
            return [np.zeros((0, self.cfg.head_spec.width(self.cfg.horizon))) for _ in self.networks]
        return [np.asarray(network(X)) for network in self.networks]

    def predict(self, samples: Samples, history: History, calibrated: bool = True) -> Forecast:
        """The forecast of every sample (all windows in one forward pass per network): the members'
        combination (`Forecast.mean_of`), calibrated unless ``calibrated`` is False."""
        head, h = self.cfg.head_spec, self.cfg.horizon
        members = [forecast_of(samples, out, head, h) for out in self.outputs(self.windows(samples, history))]
        forecast = Forecast.mean_of(members)
        if forecast.quantiles is None or not calibrated or self.calibration is None:
            return forecast
        return forecast.with_quantiles(self.calibration.apply(forecast.quantiles), forecast.levels)

    def calibrate(self, val: Samples, history: History) -> Calibration | None:
        """Split conformal margins of the intervals from the validation samples ``val`` (a
        distribution head only; `cryptolstm.intervals`); `predict` applies them from then on."""
        from cryptolstm.intervals import fit_conformal

        if not self.cfg.head_spec.distribution:
            return None
        raw = self.predict(val, history, calibrated=False)
        self.calibration = fit_conformal(raw.quantiles, np.asarray(val.y, np.float64), raw.levels)
        return self.calibration


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


MEAN = f"{NetworkForecaster.name}.mean"  # a backtest's mean of its seeds' figures
STD = f"{NetworkForecaster.name}.std"  # and their standard deviation
SEEDED = re.compile(r"^(?P<name>.+)\.seed\d+(?P<rest>/h\d+)?$")  # lstm.seed202, lstm.seed203/h2: one seed's rows


def seed_label(seed: int) -> str:
    """The label of the network trained with ``seed`` in a backtest's tables (``lstm.seed202``)."""
    return f"{NetworkForecaster.name}.seed{seed}"


def is_network(label: str) -> bool:
    """Whether a forecaster's label is the network's (``lstm``, one seed's, their mean, its uncalibrated quantiles)."""
    return label.split(".")[0] == NetworkForecaster.name
