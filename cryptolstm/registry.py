"""The model registry's rules, with no MLflow in them: what a registered model is (`ModelInfo`),
where models are kept (the `ModelStore` protocol, which `cryptolstm.tracking.registry` implements
on MLflow's registry, as search talks to its `SearchTracker`), and when a version becomes
champion (`promotion`).

Registered models are ``cryptolstm-btc`` and ``cryptolstm-eth``; the alias ``champion`` marks the
version users forecast with. A version becomes champion only if it beats the current champion
on the same evaluation (same protocol, data range and validation days, the validation MAE ratio),
or on a comparison the caller decides (a refit's common evaluation), or by force.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import ConfigError

if TYPE_CHECKING:
    from cryptolstm.data import Market
    from cryptolstm.inference import NetworkForecaster
    from cryptolstm.models.lstm import EpochHook
    from cryptolstm.train import TrainResult

ALIAS = "champion"
METRIC = "val/mae_ratio"  # selection stays on validation days; test is reported, never chosen on
# What makes two validation ratios comparable: the same protocol, data and validation days; the
# number of validation samples differs between horizons (a window needs all its target days).
EVALUATION_TAGS = ("protocol", "data.first_date", "data.last_date", "split.val.first", "split.val.last", "split.val.n")


def model_name(coin: str) -> str:
    """Registered model name of ``coin``: ``cryptolstm-btc`` or ``cryptolstm-eth``."""
    if coin.upper() not in COINS:
        raise ConfigError(f"coin must be one of {', '.join(COINS)}; got {coin!r}.")
    return f"cryptolstm-{coin.lower()}"


def champion_uri(coin: str) -> str:
    return f"models:/{model_name(coin)}@{ALIAS}"


def next_day(day: str) -> str:
    """The ISO date after ``day``."""
    return (pd.Timestamp(day) + pd.Timedelta(days=1)).date().isoformat()


@dataclass(frozen=True)
class ModelInfo:
    """A model as the registry knows it: its ``uri`` (as given), the registered ``name`` and
    ``version`` (None for ``runs:/``), the ``run_id`` that trained it, its ``config``, the last day
    its training or validation used (``trained_until``), the first of its validation days
    (``val_first``), the last day of the data it was trained with (``data_last``), and ``extra``:
    what else the store records (the logged model's id...)."""

    uri: str
    run_id: str
    config: RunConfig
    trained_until: str
    data_last: str
    val_first: str = ""
    name: str | None = None
    version: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How the model is named to a user: ``cryptolstm-btc version 3``, or its URI."""
        return f"{self.name} version {self.version}" if self.version else self.uri

    @property
    def pinned_uri(self) -> str:
        """The URI of exactly this model: ``models:/NAME/VERSION`` (not an alias that may move)."""
        return f"models:/{self.name}/{self.version}" if self.version else self.uri

    def is_new(self, day: str) -> bool:
        """Whether ``day`` (ISO) comes after the last day of the model's data (not a test day again)."""
        return day > self.data_last


@dataclass(frozen=True)
class Registration:
    """What a registration did: ``version`` of ``name``, whether it is champion now and why.

    ``added`` is False when the run already had that version and nothing was registered;
    ``ratio`` is the test MAE over persistence's (validation's when there is no test).
    """

    name: str
    version: str
    promoted: bool
    reason: str
    beats_persistence: bool
    ratio: float
    added: bool = True


@dataclass(frozen=True)
class Candidate:
    """A version (or a run about to be one) as promotion compares it: its ``version``, its value of
    `METRIC` and the evaluation that value was measured on (`EVALUATION_TAGS`)."""

    version: str | None
    value: float
    evaluation: dict[str, str]


Decision = Callable[[ModelInfo], tuple[bool, str]]  # the champion -> (promote?, why)


def promotion(candidate: Candidate, champion: Candidate | None, force: bool = False) -> tuple[bool, str]:
    """Whether ``candidate`` should become champion over ``champion`` (None: there is none), and why."""
    if champion is None:
        return True, "first champion"
    if force:
        return True, f"promoted by force over version {champion.version}"
    if champion.evaluation != candidate.evaluation:
        differing = [k for k in EVALUATION_TAGS if champion.evaluation.get(k) != candidate.evaluation.get(k)]
        said = ", ".join(f"{k} {candidate.evaluation.get(k) or 'none'} (champion: {champion.evaluation.get(k) or 'none'})"
                         for k in differing)
        return False, (f"not compared with champion version {champion.version}: they were evaluated on different days "
                       f"or data ({said}); promote it with --force")
    if candidate.value < champion.value:
        return True, f"{METRIC} {candidate.value:.4f} beats champion version {champion.version} ({champion.value:.4f})"
    return False, f"{METRIC} {candidate.value:.4f} does not beat champion version {champion.version} ({champion.value:.4f})"


class ModelStore(Protocol):
    """Where models are trained, registered, loaded and evaluated (the MLflow layer implements it)."""

    def resolve(self, uri: str) -> ModelInfo:
        """The model ``uri`` names (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID/model``);
        one sentence when it names none."""
        ...

    def load(self, info: ModelInfo, coin: str | None = None) -> NetworkForecaster:
        """The model's forecaster, loaded as a user loads it (of ``coin``, when given)."""
        ...

    def network(self, info: ModelInfo):
        """The model's trained Keras network (with its optimizer's state): where a warm start begins."""
        ...

    def train(self, cfg: RunConfig, market: Market, name: str, tags: dict[str, str],
              on_epoch: Sequence[EpochHook] = (), init=None) -> tuple[str, TrainResult]:
        """Train ``cfg`` as a tracked run named ``name``, from the Keras network ``init`` when given
        (a warm start), else from fresh weights; (its run id, the result)."""
        ...

    def register(self, run_id: str, coin: str, force: bool = False, decide: Decision | None = None,
                 tags: dict[str, str] | None = None) -> Registration:
        """Register the run's model, promoting it by `promotion` (or ``decide(champion)``), all at once."""
        ...

    def record_evaluation(self, evaluation, market: Market, data_dir: str) -> str:
        """Record `cryptolstm.live.evaluate`'s ``evaluation``; the id of the record."""
        ...
