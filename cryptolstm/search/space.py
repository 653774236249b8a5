"""A search space declared once, as data (a YAML file of ``base``, ``objective`` and ``space``, a dimension per
`RunConfig` field: experiments/search-default.yaml), read by both engines; the model sees only plain values."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cryptolstm.config import FIELD_NAMES, RunConfig, load_config
from cryptolstm.errors import ConfigError, path_problem

# Values that define the question, not the model: never searched.
FIXED = ("coin", "protocol", "data_dir", "merge_date", "end_date", "fill_gaps", "train_frac", "val_frac", "seed")
KEYS = {"int": {"type", "low", "high", "step", "log"}, "float": {"type", "low", "high", "step", "log"},
        "categorical": {"type", "choices"}}


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: ``int``/``float`` in [low, high] (optional step or log), or ``categorical``."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple | None = None

    def optuna(self, trial) -> Any:
        """The value an Optuna trial suggests."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        suggest = trial.suggest_int if self.type == "int" else trial.suggest_float
        kwargs = {"log": self.log} if self.log else ({"step": self.step} if self.step else {})
        return suggest(self.name, self.low, self.high, **kwargs)

    def keras_tuner(self, hp) -> Any:
        """The value a keras-tuner ``HyperParameters`` object gives."""
        if self.type == "categorical":
            return hp.Choice(self.name, list(self.choices))
        sampling = "log" if self.log else "linear"
        if self.type == "int":
            return hp.Int(self.name, int(self.low), int(self.high), step=int(self.step or 1), sampling=sampling)
        return hp.Float(self.name, self.low, self.high, step=self.step, sampling=sampling)

    def rounded(self, value: Any) -> Any:
        """``value`` as trials use and record it: a float without its binary noise (0.3, not
        0.30000000000000004), on a log scale to 3 significant digits (0.00361)."""
        if self.type != "float" or not isinstance(value, float):
            return value
        return float(f"{value:.3g}") if self.log else round(value, 10)

    def contains(self, value: Any) -> bool:
        return value in self.choices if self.type == "categorical" else self.low <= value <= self.high


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions, the fixed base config and the (minimised) validation objective."""

    path: str
    base: RunConfig
    objective: str
    dimensions: tuple[Dimension, ...]

    def config(self, values: dict[str, Any]) -> RunConfig:
        """The trial's full, validated config: the base with ``values`` (rounded) applied."""
        return self.base.replace(**self.rounded(values))

    def rounded(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` as trials use them (`Dimension.rounded`)."""
        dims = {d.name: d for d in self.dimensions}
        return {k: dims[k].rounded(v) if k in dims else v for k, v in values.items()}

    def base_values(self) -> dict[str, Any]:
        """The base config's value of every dimension (the 2018 model under default.yaml), as a choice
        naming the same value where one does (the feature set ``garch`` for its list of features)."""
        return {d.name: self._as_choice(d, getattr(self.base, d.name)) for d in self.dimensions}

    def _as_choice(self, dimension: Dimension, value: Any) -> Any:
        if dimension.type != "categorical" or value in dimension.choices:
            return value
        for choice in dimension.choices:
            with contextlib.suppress(ConfigError):  # a choice the base cannot take (a head without its feature)
                if getattr(self.base.replace(**{dimension.name: choice}), dimension.name) == value:
                    return choice
        return value

    def extreme_configs(self) -> list[RunConfig]:
        """The base with the longest window the space allows: the one that needs the most days."""
        return [self.base.replace(window_len=int(d.high if d.high else max(d.choices)))
                for d in self.dimensions if d.name == "window_len"]

    def digest(self) -> str:
        """A short fingerprint of the space and objective (not of the fixed values)."""
        data = json.dumps([self.objective, [d.__dict__ for d in self.dimensions]], sort_keys=True, default=str)
        return hashlib.sha256(data.encode()).hexdigest()[:12]


def _dimension(path: Path, name: str, spec: Any, base: RunConfig) -> Dimension:
    where = f"{path}: space.{name}"
    if name not in FIELD_NAMES:
        raise ConfigError(f"{where} is not a config field; searchable fields are "
                          f"{', '.join(n for n in FIELD_NAMES if n not in FIXED)}.")
    if name in FIXED:
        raise ConfigError(f"{where} cannot be searched: it defines the question, not the model.")
    if not isinstance(spec, dict) or spec.get("type") not in KEYS:
        raise ConfigError(f"{where} needs type: int, float or categorical.")
    unknown = sorted(set(spec) - KEYS[spec["type"]])
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; "
                          f"a {spec['type']} takes {', '.join(sorted(KEYS[spec['type']]))}.")
    if spec["type"] == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where} needs a non-empty list of choices.")
        dim = Dimension(name, "categorical", choices=tuple(choices))
        bounds = list(choices)
    else:
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"{where} needs low and high.")
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"{where}: low and high must be numbers.")
        if low > high:
            raise ConfigError(f"{where}: low ({low}) is greater than high ({high}).")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"{where}: a log scale needs low > 0.")
        if spec.get("log") and spec.get("step"):
            raise ConfigError(f"{where}: step and log cannot be combined.")
        dim = Dimension(name, spec["type"], low, high, spec.get("step"), bool(spec.get("log", False)))
        bounds = [low, high]
    for value in bounds:  # every end of the space must be a valid config
        try:
            base.replace(**{name: value})
        except ConfigError as exc:
            raise ConfigError(f"{where}: value {value!r} is invalid ({exc})") from None
    return dim


def load_space(path: str | Path, **base_overrides: Any) -> SearchSpace:
    """Read and validate a space file; ``base_overrides`` (coin, data_dir, ...) apply to its base."""
    path = Path(path)
    if problem := path_problem(path):
        raise ConfigError(f"space file {path} {problem}.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise ConfigError(f"space file {path} is not valid YAML.") from None
    unknown = sorted(set(raw) - {"base", "objective", "space"}) if isinstance(raw, dict) else ["(not a mapping)"]
    if unknown:
        raise ConfigError(f"space file {path} has unknown key(s) {', '.join(unknown)}; "
                          f"it takes base, objective and space.")
    base = load_config((path.parent / raw["base"]) if raw.get("base") else None, **base_overrides)
    objective = raw.get("objective", "val/mae_ratio")
    if not str(objective).startswith("val/"):
        raise ConfigError(f"{path}: objective must be a validation metric (val/...), got {objective!r}.")
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"space file {path} declares no dimensions under space.")
    dims = tuple(_dimension(path, name, spec, base) for name, spec in space.items())
    _check_objective(path, objective, base, dims)
    return SearchSpace(str(path), base, objective, dims)


def _check_objective(path: Path, objective: str, base, dims: tuple[Dimension, ...]) -> None:
    """The objective must be an error every trial logs (for each ``head`` the space allows); ``horizon``
    cannot be a dimension, since trials of different horizons are scored on different days."""
    from cryptolstm import heads
    from cryptolstm.metrics import is_minimised
    from cryptolstm.scoring import logged_names

    if any(d.name == "horizon" for d in dims):
        raise ConfigError(f"{path}: horizon cannot be searched (each horizon has its own validation days); "
                          f"fix it in the base and compare horizons with a metric such as val/h7/mae_ratio.")
    if not is_minimised(objective):
        raise ConfigError(f"{path}: objective {objective} is not an error to minimise; use an error, loss, interval "
                          f"score or CRPS (val/mae_ratio, val/h7/mae_ratio, val/crps_ratio_empirical...).")
    names = next((d.choices for d in dims if d.name == "head"), (base.head,))
    distributions = [h for h in heads.HEADS.values() if h.distribution]
    for name in names:
        head = heads.get(name)
        if objective in logged_names("val", base.horizon, head, base.rules.units):
            continue
        if not head.distribution and objective in logged_names("val", base.horizon, distributions[0], base.rules.units):
            raise ConfigError(f"{path}: objective {objective} scores intervals, so every trial needs a distribution "
                              f"head ({', '.join(h.name for h in distributions)}); the space allows head {name}.")
        raise ConfigError(f"{path}: objective {objective} is not logged by a run of horizon {base.horizon} and head "
                          f"{name}; a run logs val/mae_ratio, val/h<k>/mae_ratio for k up to its horizon, and with "
                          f"intervals val/crps_ratio_garch...")
