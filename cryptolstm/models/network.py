"""A trained network as a forecaster, run by Keras while training and by ONNX Runtime once registered (the
same numbers). It imports no TensorFlow: loading a registered model costs a fraction of a second, not 10 s."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cryptolstm.forecast import Forecast
from cryptolstm.intervals import Calibration, fit_conformal
from cryptolstm.windowing import Samples, inputs

if TYPE_CHECKING:
    from cryptolstm.config import RunConfig
    from cryptolstm.features import State
    from cryptolstm.models.base import History

Network = Callable[[np.ndarray], np.ndarray]  # (n, w, f) float32 windows -> the head's parameters


class NetworkForecaster:
    """A forecaster of ``cfg``, ``state`` (its features' fit), one forward pass per member and ``calibration``."""

    name = "lstm"  # its label in every table, metric and tag (a GRU's too: the names users' runs have)

    def __init__(self, cfg: RunConfig, networks: Sequence[Network] = (), state: State | None = None,
                 calibration: Calibration | None = None) -> None:
        self.cfg, self._networks, self.state, self.calibration = cfg, list(networks), state or {}, calibration
        self.params: dict[str, float] = {}

    @property
    def networks(self) -> list[Network]:
        return self._networks

    def windows(self, samples: Samples, history: History) -> np.ndarray:
        """(n, w, f) input windows of ``samples`` from ``history.frame``."""
        return inputs(history.frame, self.cfg, self.state, samples)

    def predict(self, samples: Samples, history: History, calibrated: bool = True) -> Forecast:
        """The members' combined forecast of every sample (`Forecast.mean_of`), calibrated unless told not to."""
        head, h = self.cfg.head_spec, self.cfg.horizon
        X = self.windows(samples, history)
        members = []
        for network in self.networks:
            point, quantiles = head.decode(np.asarray(network(X)) if len(X) else np.zeros((0, head.width(h))), h)
            made = Forecast.of_samples(samples, point)
            members.append(made if quantiles is None else made.with_quantiles(quantiles, head.levels))
        forecast = Forecast.mean_of(members)
        if forecast.quantiles is None or not calibrated or self.calibration is None:
            return forecast
        return forecast.with_quantiles(self.calibration.apply(forecast.quantiles), forecast.levels)

    def calibrate(self, val: Samples, history: History) -> None:
        """Fit the split conformal margins of the intervals on the validation samples ``val`` (distribution heads)."""
        if self.cfg.head_spec.distribution:
            raw = self.predict(val, history, calibrated=False)
            self.calibration = fit_conformal(raw.quantiles, np.asarray(val.y, np.float64), raw.levels)


def onnx_network(path: str) -> Network:
    """The forward pass of the ONNX file at ``path``: one CPU session, one thread (more only add overhead)."""
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
