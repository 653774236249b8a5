"""The network's heads, declared once: what a network outputs per target day and what that means.

A head is an object (as neuralforecast's losses and darts' likelihoods are) that owns

- ``parameters``: what it outputs for each target day, in order (``mean``, ``scale``...), so its
  raw width is ``width(H)`` (neuralforecast's ``outputsize_multiplier``);
- ``activate(raw, ops)``: the map from the last Dense layer's raw outputs to those parameters
  (a positive scale, ordered quantiles), written in ``keras.ops`` so that it is part of the
  network and travels with it into ONNX (neuralforecast's ``domain_map``);
- ``loss(y, params, ops)``: the mean loss it is trained on (a likelihood, the pinball loss);
- ``decode(params)``: the parameters of n windows as (n, H) point returns and (n, H, Q) quantiles
  on its grid ``levels`` (NumPy, shared by training and the ONNX pyfunc);
- ``distribution``: whether it forecasts quantiles, and so logs the interval metrics beside the
  interval baselines; ``pinned``: whether its location is fixed at persistence (its median is
  the last close), so that it learns only a scale; ``scale_feature``: an input feature whose
  value on the window's last day multiplies its scale (a hybrid with a volatility model).

Nothing else in the package compares a head's name: it asks the head (`get`). This module
imports neither Keras nor TensorFlow; the network builder hands ``keras.ops`` in. Returns are
relative to the samples' reference close (the last close under the honest protocol).
"""

from __future__ import annotations

import math

import numpy as np

from cryptolstm.errors import ConfigError
from cryptolstm.intervals import LEVELS, gaussian_quantiles

SCALE_AT_ZERO = 0.03  # a scale (a daily return's sd) before training: BTC's is ~0.035
MIN_SCALE = 1e-5
MIN_DF = 2.0  # Student-t degrees of freedom stay above 2, where its variance is finite
_LN2 = float(np.log(2.0))


def positive_scale(raw, ops):
    """Raw outputs -> scales ``SCALE_AT_ZERO * softplus(raw) / ln 2 + MIN_SCALE`` (positive, and a
    plausible daily scale at initialisation, so a few epochs suffice)."""
    return SCALE_AT_ZERO * ops.softplus(raw) / np.log(2.0) + MIN_SCALE


def degrees_of_freedom(raw, ops):
    """Raw outputs -> Student-t degrees of freedom ``MIN_DF + softplus(raw)`` (about 2.7 at first)."""
    return MIN_DF + ops.softplus(raw)


def log_gamma(x, ops, shift: int = 6):
    """ln Gamma(x) for x > 0 in ``ops`` (Keras 3 has no lgamma): Stirling's series at x + ``shift``,
    brought back by the recurrence Gamma(x + 1) = x Gamma(x). Within 1e-10 of scipy's for x >= 1."""
    product = x
    for k in range(1, shift):
        product = product * (x + k)
    z = x + shift
    series = 1.0 / (12.0 * z) - 1.0 / (360.0 * z ** 3) + 1.0 / (1260.0 * z ** 5) - 1.0 / (1680.0 * z ** 7)
    return (z - 0.5) * ops.log(z) - z + 0.5 * math.log(2.0 * math.pi) + series - ops.log(product)


def student_t_nll(y, loc, scale, df, ops):
    """Per-value negative log-likelihood of ``y`` under ``loc + scale * T(df)``."""
    z = (y - loc) / scale
    return (log_gamma(df / 2.0, ops) - log_gamma((df + 1.0) / 2.0, ops) + 0.5 * ops.log(df * math.pi)
            + ops.log(scale) + (df + 1.0) / 2.0 * ops.log1p(z * z / df))


def _target(y, dtype, horizon: int, ops):
    """(batch, H) targets in the network's dtype."""
    return ops.reshape(ops.cast(y, dtype), (-1, horizon))


def _columns(params: np.ndarray, k: int, horizon: int) -> np.ndarray:
    """The k-th block of H columns of (n, P * H) parameters."""
    return params[:, k * horizon:(k + 1) * horizon]


class Head:
    """The interface and the shared parts of every head (see the module docstring)."""

    name = ""
    parameters: tuple[str, ...] = ()
    levels: tuple[float, ...] = LEVELS
    pinned = False
    scale_feature: str | None = None
    packages: tuple[str, ...] = ()  # what decoding needs beyond the pyfunc's own (a served model's requirements)
    doc = ""

    @property
    def distribution(self) -> bool:
        """Whether it forecasts quantiles (and is scored as a forecast distribution)."""
        return bool(self.levels)

    def width(self, horizon: int) -> int:
        """Raw outputs per window for ``horizon`` target days (the last Dense layer's units)."""
        return len(self.parameters) * horizon

    def dense_activation(self, output_activation: str) -> str | None:
        """The last Dense layer's activation: none, the head's ``activate`` does the work."""
        return None

    def configured_loss(self, loss: str) -> str | None:
        """The Keras loss it trains on when that is the config's ``loss`` (mse, mae, huber); None: its own."""
        return None

    def activate(self, raw, ops, scale=None):
        """(batch, width) raw outputs -> the head's parameters; ``scale``: (batch, 1) values of its
        ``scale_feature`` on the window's last day, for a head that has one."""
        return raw

    def loss(self, y, params, ops):
        """Mean loss of (batch, H) targets ``y`` under the parameters."""
        raise NotImplementedError

    def decode(self, params: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Parameters of n windows -> ((n, H) point returns, (n, H, Q) quantiles on ``levels``)."""
        raise NotImplementedError

    def flat(self, params: np.ndarray, horizon: int) -> np.ndarray:
        """(n, width) view of n windows' parameters, whatever shape the network gave them."""
        return np.asarray(params, dtype=np.float64).reshape(len(params), self.width(horizon))


class PointHead(Head):
    """The next H returns, through the config's ``output_activation``, trained on its ``loss``
    (mse, mae, huber): the 2018 tutorial's head."""

    name = "point"
    parameters = ("return",)
    levels = ()
    doc = "the next return of each target day (the 2018 model)"

    def dense_activation(self, output_activation: str) -> str | None:
        return output_activation

    def configured_loss(self, loss: str) -> str | None:
        return loss

    def decode(self, params: np.ndarray, horizon: int) -> tuple[np.ndarray, None]:
        return self.flat(params, horizon), None


class GaussianHead(Head):
    """A Gaussian per target day, ``[means | scales]``, trained on its negative log-likelihood."""

    name = "gaussian"
    parameters = ("mean", "scale")
    doc = "a Gaussian's mean and scale, on its likelihood"

    def activate(self, raw, ops, scale=None):
        h = raw.shape[-1] // 2
        return ops.concatenate([raw[:, :h], positive_scale(raw[:, h:], ops)], axis=1)

    def loss(self, y, params, ops):
        h = params.shape[-1] // 2
        y = _target(y, params.dtype, h, ops)
        mean, scale = params[:, :h], params[:, h:]
        return ops.mean(ops.log(scale) + 0.5 * ops.square((y - mean) / scale))

    def decode(self, params, horizon):
        params = self.flat(params, horizon)
        mean, scale = _columns(params, 0, horizon), _columns(params, 1, horizon)
        return mean, gaussian_quantiles(mean, scale, self.levels)


class QuantileHead(Head):
    """Quantiles on ``LEVELS`` per target day, trained on the pinball loss: the median is the
    first output, the gaps between neighbouring levels ``0.01 * softplus(raw)`` (never crossing)."""

    name = "quantile"
    doc = "quantiles on the grid, on the pinball loss"

    def width(self, horizon: int) -> int:
        return horizon * len(self.levels)

    def activate(self, raw, ops, scale=None):
        q = len(self.levels)
        raw = ops.reshape(raw, (-1, raw.shape[-1] // q, q))
        gaps = 0.01 * ops.softplus(raw[:, :, 1:])
        steps = ops.concatenate([ops.zeros_like(raw[:, :, 0:1]), ops.cumsum(gaps, axis=2)], axis=2)
        median = q // 2
        return raw[:, :, 0:1] + steps - steps[:, :, median:median + 1]

    def loss(self, y, params, ops):
        y = ops.reshape(ops.cast(y, params.dtype), (-1, params.shape[1], 1))
        tau = ops.convert_to_tensor(np.asarray(self.levels, dtype="float32")[None, None, :], dtype=params.dtype)
        diff = y - params
        return ops.mean(ops.maximum(tau * diff, (tau - 1.0) * diff))

    def decode(self, params, horizon):
        quantiles = np.asarray(params, dtype=np.float64).reshape(len(params), horizon, len(self.levels))
        return quantiles[:, :, len(self.levels) // 2], quantiles


def _student_t_quantiles(loc: np.ndarray, scale: np.ndarray, df: np.ndarray, levels) -> np.ndarray:
    """(n, H, Q) quantiles of ``loc + scale * T(df)`` with (n, H) parameters."""
    from scipy import stats  # only a Student-t model loads scipy

    z = stats.t.ppf(np.asarray(levels)[None, None, :], df[:, :, None])
    return loc[:, :, None] + scale[:, :, None] * z


class StudentTHead(Head):
    """A Student-t per target day, ``[locations | scales | degrees of freedom]``, trained on its
    negative log-likelihood (fat tails, which daily crypto returns have)."""

    name = "student_t"
    packages = ("scipy",)
    parameters = ("loc", "scale", "df")
    doc = "a Student-t's location, scale and degrees of freedom, on its likelihood"

    def activate(self, raw, ops, scale=None):
        h = raw.shape[-1] // 3
        return ops.concatenate([raw[:, :h], positive_scale(raw[:, h:2 * h], ops),
                                degrees_of_freedom(raw[:, 2 * h:], ops)], axis=1)

    def loss(self, y, params, ops):
        h = params.shape[-1] // 3
        y = _target(y, params.dtype, h, ops)
        return ops.mean(student_t_nll(y, params[:, :h], params[:, h:2 * h], params[:, 2 * h:], ops))

    def decode(self, params, horizon):
        params = self.flat(params, horizon)
        loc = _columns(params, 0, horizon)
        return loc, _student_t_quantiles(loc, _columns(params, 1, horizon), _columns(params, 2, horizon), self.levels)


class GaussianPinnedHead(Head):
    """A Gaussian whose mean is persistence's (a zero return on the last close): the network
    learns only the scale of each target day."""

    name = "gaussian_pinned"
    parameters = ("scale",)
    pinned = True
    doc = "a Gaussian centred on persistence; only its scale is learned"

    def activate(self, raw, ops, scale=None):
        return positive_scale(raw, ops)

    def loss(self, y, params, ops):
        y = _target(y, params.dtype, params.shape[-1], ops)
        return ops.mean(ops.log(params) + 0.5 * ops.square(y / params))

    def decode(self, params, horizon):
        scale = self.flat(params, horizon)
        zero = np.zeros_like(scale)
        return zero, gaussian_quantiles(zero, scale, self.levels)


class StudentTPinnedHead(Head):
    """A Student-t centred on persistence: the network learns its scale and degrees of freedom."""

    name = "student_t_pinned"
    parameters = ("scale", "df")
    packages = ("scipy",)
    pinned = True
    doc = "a Student-t centred on persistence; its scale and degrees of freedom are learned"

    def activate(self, raw, ops, scale=None):
        h = raw.shape[-1] // 2
        return ops.concatenate([positive_scale(raw[:, :h], ops), degrees_of_freedom(raw[:, h:], ops)], axis=1)

    def loss(self, y, params, ops):
        h = params.shape[-1] // 2
        y = _target(y, params.dtype, h, ops)
        return ops.mean(student_t_nll(y, 0.0, params[:, :h], params[:, h:], ops))

    def decode(self, params, horizon):
        params = self.flat(params, horizon)
        scale = _columns(params, 0, horizon)
        zero = np.zeros_like(scale)
        return zero, _student_t_quantiles(zero, scale, _columns(params, 1, horizon), self.levels)


class GarchScaledHead(StudentTPinnedHead):
    """A hybrid: a Student-t centred on persistence whose scale of day t + k is GARCH(1,1)'s
    volatility forecast for day t + 1 (the ``garch_vol`` feature on the window's last day) times
    sqrt(k) times a learned correction ``softplus(raw) / ln 2`` (1 before training). The network
    learns where GARCH's volatility is too high or too low, and the tails."""

    name = "garch_scaled"
    scale_feature = "garch_vol"
    doc = "a Student-t centred on persistence, scaled by GARCH's volatility times a learned correction"

    def activate(self, raw, ops, scale=None):
        h = raw.shape[-1] // 2
        days = np.sqrt(np.arange(1, h + 1, dtype="float32"))[None, :]
        correction = ops.softplus(raw[:, :h]) / _LN2
        return ops.concatenate([scale * days * correction + MIN_SCALE, degrees_of_freedom(raw[:, h:], ops)], axis=1)


HEADS: dict[str, Head] = {made.name: made for made in (
    PointHead(), GaussianHead(), QuantileHead(), StudentTHead(), GaussianPinnedHead(), StudentTPinnedHead(),
    GarchScaledHead())}
NAMES = tuple(HEADS)
DEFAULT = HEADS["point"]  # the 2018 tutorial's head: the next return, no intervals


def get(name: str) -> Head:
    """The head called ``name``; one sentence naming the heads there are for any other."""
    try:
        return HEADS[name]
    except KeyError:
        raise ConfigError(f"head must be one of {', '.join(NAMES)}; got {name!r}.") from None
