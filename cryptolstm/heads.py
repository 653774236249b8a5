"""The network's heads, declared once (nothing else compares a head's name): outputs per target day, their
activation and loss in the ``keras.ops`` the builder hands in (so they travel into ONNX), and their decoding."""

from __future__ import annotations

import math

import numpy as np

from cryptolstm.errors import ConfigError
from cryptolstm.intervals import LEVELS, gaussian_quantiles

SCALE_AT_ZERO = 0.03  # a scale (a daily return's sd) before training: BTC's is ~0.035
MIN_SCALE = 1e-5
MIN_DF = 2.0  # Student-t degrees of freedom stay above 2, where its variance is finite


def positive_scale(raw, ops):
    """Raw outputs -> positive scales, ``SCALE_AT_ZERO`` at initialisation (a plausible daily one)."""
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


def _target(y, like, ops):
    """(batch, H) targets in the dtype of ``like``, a (batch, H) block of parameters."""
    return ops.reshape(ops.cast(y, like.dtype), (-1, like.shape[-1]))


TRANSFORMS = {"scale": positive_scale, "df": degrees_of_freedom}  # a parameter's raw outputs -> it (else as they are)


class Head:
    """Every head's interface: ``parameters`` per target day; ``pinned``: centred on persistence, only its scale
    learned; ``scale_feature``: an input feature whose value on the window's last day multiplies its scale."""

    name = ""
    parameters: tuple[str, ...] = ()
    levels: tuple[float, ...] = LEVELS
    pinned = False
    scale_feature: str | None = None
    packages: tuple[str, ...] = ()  # what decoding needs beyond the pyfunc's own (a served model's requirements)

    @property
    def distribution(self) -> bool:
        """Whether it forecasts quantiles (and is scored beside the interval baselines); if not, its last Dense
        layer has the config's ``output_activation`` and it trains on the config's ``loss``, not its own."""
        return bool(self.levels)

    def width(self, horizon: int) -> int:
        """Raw outputs per window for ``horizon`` target days (the last Dense layer's units)."""
        return len(self.parameters) * horizon

    def activate(self, raw, ops, scale=None):
        """(batch, width) raw outputs -> parameters, each through its `TRANSFORMS`; ``scale``: (batch, 1) values
        of a ``scale_feature``, if any."""
        blocks = self.split(raw).items()
        return ops.concatenate([TRANSFORMS[p](b, ops) if p in TRANSFORMS else b for p, b in blocks], axis=1)

    def loss(self, y, params, ops):
        """Mean loss of (batch, H) targets ``y`` under the parameters."""
        raise NotImplementedError

    def decode(self, params: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Parameters of n windows -> ((n, H) point returns, (n, H, Q) quantiles on ``levels``)."""
        raise NotImplementedError

    def split(self, params) -> dict:
        """Each parameter's (batch, H) block of (batch, P * H) raw outputs or parameters (tensors or arrays)."""
        h = params.shape[-1] // len(self.parameters)
        return {p: params[:, k * h:(k + 1) * h] for k, p in enumerate(self.parameters)}

    def blocks(self, params: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
        """`split` of n windows' parameters (n >= 0) as float64 arrays, whatever shape they came in."""
        return self.split(np.asarray(params, dtype=np.float64).reshape(len(params), self.width(horizon)))


class PointHead(Head):
    """The 2018 head: the next H returns, through the config's ``output_activation``, on its ``loss``."""

    name = "point"
    parameters = ("return",)
    levels = ()

    def decode(self, params: np.ndarray, horizon: int) -> tuple[np.ndarray, None]:
        return self.blocks(params, horizon)["return"], None


class GaussianHead(Head):
    """A Gaussian per target day, ``[means | scales]``, trained on its negative log-likelihood; a pinned
    subclass declares no means and is centred on persistence (a zero return)."""

    name = "gaussian"
    parameters = ("mean", "scale")

    def loss(self, y, params, ops):
        p = self.split(params)
        scale = p["scale"]
        return ops.mean(ops.log(scale) + 0.5 * ops.square((_target(y, scale, ops) - p.get("mean", 0.0)) / scale))

    def decode(self, params, horizon):
        p = self.blocks(params, horizon)
        mean = p.get("mean", np.zeros_like(p["scale"]))
        return mean, gaussian_quantiles(mean, p["scale"], self.levels)


class QuantileHead(Head):
    """Quantiles on ``LEVELS`` per target day, on the pinball loss: each day's first output is the median,
    the others the gaps between neighbouring levels ``0.01 * softplus(raw)`` (never crossing)."""

    name = "quantile"

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


class StudentTHead(Head):
    """A Student-t per target day (fat tails), ``[locations | scales | degrees of freedom]``, on its likelihood;
    a pinned subclass declares no locations and is centred on persistence."""

    name = "student_t"
    packages = ("scipy",)
    parameters = ("loc", "scale", "df")

    def loss(self, y, params, ops):
        p = self.split(params)
        return ops.mean(student_t_nll(_target(y, p["scale"], ops), p.get("loc", 0.0), p["scale"], p["df"], ops))

    def decode(self, params, horizon):
        from scipy import stats  # only a Student-t model loads scipy

        p = self.blocks(params, horizon)
        loc = p.get("loc", np.zeros_like(p["scale"]))
        z = stats.t.ppf(np.asarray(self.levels)[None, None, :], p["df"][:, :, None])
        return loc, loc[:, :, None] + p["scale"][:, :, None] * z


class GaussianPinnedHead(GaussianHead):
    """A Gaussian centred on persistence (a zero return on the last close): only its scale is learned."""

    name = "gaussian_pinned"
    parameters = ("scale",)
    pinned = True


class StudentTPinnedHead(StudentTHead):
    """A Student-t centred on persistence: the network learns its scale and degrees of freedom."""

    name = "student_t_pinned"
    parameters = ("scale", "df")
    pinned = True


class GarchScaledHead(StudentTPinnedHead):
    """A Student-t centred on persistence whose scale of day t + k is GARCH(1,1)'s volatility forecast for day
    t + 1 (the ``garch_vol`` feature) times sqrt(k) times a learned correction ``softplus(raw) / ln 2``."""

    name = "garch_scaled"
    scale_feature = "garch_vol"

    def activate(self, raw, ops, scale=None):
        h = raw.shape[-1] // 2
        days = np.sqrt(np.arange(1, h + 1, dtype="float32"))[None, :]
        correction = ops.softplus(raw[:, :h]) / math.log(2.0)
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
