"""The model registry's rules, with no MLflow in them: what a registered model is (`ModelInfo`), where
models are kept (`ModelStore`) and when a version becomes the ``champion`` (`promotion`): it beats the
champion on the same evaluation, or on a comparison the caller decides (a refit's), or by force."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import ConfigError

if TYPE_CHECKING:
    from cryptolstm.data import Market
    from cryptolstm.models.network import NetworkForecaster
    from cryptolstm.models.lstm import EpochHook
    from cryptolstm.train import TrainResult

ALIAS = "champion"
METRIC = "val/mae_ratio"  # selection stays on validation days; test is reported, never chosen on
DISTRIBUTION_METRIC = "val/crps_ratio_garch"  # a forecast distribution is chosen on its CRPS, not its median's MAE
MIN_TAGGED_DAYS = 30  # the fewest new days an evaluation must score to change a version's live.* tags
# What makes two validation ratios comparable (the number of validation samples differs between horizons).
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
    """A model as the registry knows it (``name`` and ``version`` are None for ``runs:/``)."""

    uri: str
    run_id: str  # the run that trained it
    config: RunConfig
    trained_until: str  # the last day its training or validation used
    data_last: str  # the last day of the data it was trained with
    val_first: str = ""
    name: str | None = None
    version: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # what else the store records (the logged model's id...)
    prices: dict | None = None  # training.json's prices: the raw columns it read, day by day (evaluate and refit need them)
    sealed_from: str | None = None  # the first day of its sealed period (None: no seal)
    openings: tuple[str, ...] = ()  # the seal's openings before: "<UTC time> by <user>", oldest first

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


def seal_of(run_id: str, data_last: str | None, run_seal: str | None, declared: str | None) -> str | None:
    """The earlier of the run's own seal and the one the user ``declared``; one sentence when the run
    read data (up to ``data_last``) from the declared seal on."""
    if declared is None:
        return run_seal
    if not data_last or data_last >= declared:
        raise ConfigError(f"run {run_id} read data up to {data_last or 'an unrecorded day'}, across the seal from "
                          f"{declared}: it has seen sealed days, so it cannot be registered under that seal (train "
                          f"again with --sealed-from {declared} and register that run).")
    return min(declared, run_seal or declared)


OPENINGS = "seal.openings"  # a training run's (and its versions') record of its seal's openings, "<when> by <who>; ..."


def openings_of(tags: dict[str, str]) -> tuple[str, ...]:
    """The openings of a seal recorded in ``tags`` (`OPENINGS`), oldest first."""
    return tuple(o for o in tags.get(OPENINGS, "").split("; ") if o)


@dataclass(frozen=True)
class Opening:
    """A model's seal opened by an evaluation: the seal's first day, when (UTC), by whom, and the earlier openings."""

    sealed_from: str
    at: str
    by: str
    before: tuple[str, ...] = ()

    @property
    def again(self) -> str | None:
        """The sentence saying the seal was opened before (None the first time)."""
        if not self.before:
            return None
        n = len(self.before)
        return (f"this seal (from {self.sealed_from}) was opened {n} time{'s' if n > 1 else ''} before, on "
                f"{', '.join(self.before)}; these figures are no longer an untouched test.")

    @property
    def said(self) -> str:
        """What the command says of it: the first opening, or `again`."""
        return self.again or (f"the seal from {self.sealed_from} is opened for the first time ({self.at} by "
                              f"{self.by}): these figures are the untouched test.")

    def tags(self) -> dict[str, str]:
        """What records it: how many times the seal has been opened, the last time, by whom, and every opening."""
        return {"sealed_from": self.sealed_from, "seal.opened": str(len(self.before) + 1), "seal.opened_at": self.at,
                "seal.opened_by": self.by, OPENINGS: "; ".join((*self.before, f"{self.at} by {self.by}"))}


@dataclass(frozen=True)
class Registration:
    """What a registration did: ``version`` of ``name`` ("" if none), whether it is champion now and why;
    ``added`` is False when nothing was registered; ``ratio``: the MAE ratio to persistence on ``ratio_split``."""

    name: str
    version: str
    promoted: bool
    reason: str
    beats_persistence: bool
    ratio: float
    added: bool = True
    run_id: str = ""
    ratio_split: str = "test"


def selection_metric(distribution: bool) -> str:
    """What a model is chosen on: the validation MAE ratio, or CRPS ratio to GARCH for a distribution."""
    return DISTRIBUTION_METRIC if distribution else METRIC


@dataclass(frozen=True)
class Candidate:
    """A version (or a run about to be one) as promotion compares it, with its `EVALUATION_TAGS`."""

    version: str | None
    metric: str
    value: float
    evaluation: dict[str, str]
    run_id: str = ""


Decision = Callable[[ModelInfo], tuple[bool, str]]  # the champion -> (promote?, why)
WORDS = {"protocol": "protocol", "data.first_date": "data from", "data.last_date": "data up to",
         "split.val.first": "validation from", "split.val.last": "validation to", "split.val.n": "validation samples"}


def incomparable(candidate: Candidate, champion: Candidate) -> str | None:
    """Why ``candidate`` cannot be compared with ``champion``, in words, or None when it can."""
    if candidate.metric != champion.metric:
        return (f"this run is chosen on {candidate.metric} and champion version {champion.version} on {champion.metric} "
                f"(a point forecast and a forecast distribution are not compared)")
    differing = [k for k in EVALUATION_TAGS if champion.evaluation.get(k) != candidate.evaluation.get(k)]
    if not differing:
        return None
    said = ", ".join(f"{WORDS[k]} {candidate.evaluation.get(k) or 'unknown'} where champion version {champion.version} "
                     f"has {champion.evaluation.get(k) or 'unknown'}" for k in differing)
    return f"they were validated on different days or data ({said})"


def promotion(candidate: Candidate, champion: Candidate | None, force: bool = False,
              chosen: bool = False) -> tuple[bool, str]:
    """(whether ``candidate`` becomes champion over ``champion``, why): when it beats it, or is comparable
    and ``chosen`` by the user, or by ``force``."""
    if champion is None:
        return True, "first champion"
    if force:
        return True, f"made champion by --force over version {champion.version}"
    why = incomparable(candidate, champion)
    if why is not None:
        return False, f"not compared with champion version {champion.version}: {why}; to make it champion anyway, " \
                      f"register it with --force"
    verdict = "beats" if candidate.value < champion.value else "does not beat"
    text = (f"{candidate.metric} {candidate.value:.4f} {verdict} champion version {champion.version}'s "
            f"{champion.value:.4f}")
    if chosen:
        return True, f"{text}; made champion as you named it"
    return candidate.value < champion.value, text


def best(candidates: Sequence[Candidate], where: str) -> Candidate:
    """The lowest of the finished runs with a model in ``where``; runs chosen on different metrics are not ranked."""
    candidates = [c for c in candidates if math.isfinite(c.value)]
    metrics = sorted({c.metric for c in candidates})
    if not candidates:
        raise ConfigError(f"no finished run with a model in {where} has the figure it is chosen on; train or search first.")
    if len(metrics) > 1:
        raise ConfigError(f"{where} holds runs chosen on {' and on '.join(metrics)} (a point forecast and a forecast "
                          f"distribution are not compared); name the run to register with --run-id.")
    return min(candidates, key=lambda c: c.value)


def better_comparable(mine: Candidate, others: Sequence[Candidate]) -> Candidate | None:
    """The best of ``others`` comparable with ``mine`` that did better, or None."""
    found = [c for c in others if c.run_id != mine.run_id and c.metric == mine.metric
             and c.evaluation == mine.evaluation and c.value < mine.value]
    return min(found, key=lambda c: c.value, default=None)


def registered_again(candidate: Candidate, champion: Candidate | None, is_champion: bool, force: bool, chosen: bool,
                     decided: bool) -> tuple[bool, str] | None:
    """`promotion` of a run registered already, when asked (``force``, ``chosen``) or its registration was
    cut short before the decision (not ``decided``); None when nothing is to be decided."""
    if is_champion or not (force or chosen or not decided):
        return None
    return promotion(candidate, champion, force, chosen)


def persistence_ratio(metrics: dict[str, float]) -> tuple[float, str]:
    """(MAE ratio to persistence, split): the test days', else (a refit) the validation days'."""
    return (metrics["test/mae_ratio"], "test") if "test/mae_ratio" in metrics else (metrics[METRIC], "validation")


def short_reason(reason: str, limit: int = 79) -> str:
    """``reason``'s first clause in at most ``limit`` characters (cut at a word with an ellipsis), for a tag."""
    first = reason.split("; ")[0]
    if len(first) <= limit:
        return first
    cut = first.rfind(" ", 0, limit - 1)
    return first[: cut if cut > 0 else limit - 1] + "…"


def rounded(value: float) -> str:
    """A figure as a version tag shows it: 4 significant digits, whole units from 10,000 on (never ``1.235e+04``)."""
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


class ModelStore(Protocol):
    """Where models are trained, registered, loaded and evaluated (the MLflow layer implements it)."""

    def resolve(self, uri: str) -> ModelInfo:
        """The model ``uri`` names (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID/model``);
        `ConfigError`, one sentence, when it names none."""

    def load(self, info: ModelInfo, coin: str | None = None) -> NetworkForecaster:
        """The model's forecaster, loaded as a user loads it (of ``coin``, when given)."""

    def champion(self, coin: str) -> ModelInfo | None:
        """The coin's champion, or None."""

    def find_refit(self, key: str, coin: str) -> tuple[str, Registration] | None:
        """(the run, its registration) of a refit made already with this `cryptolstm.refit.refit_key`, its
        decision completed if a killed command left it half done; None when there is none."""

    def network(self, info: ModelInfo):
        """The model's trained Keras network (with its optimizer's state): where a warm start begins."""

    def train(self, cfg: RunConfig, market: Market, name: str, tags: dict[str, str],
              on_epoch: Sequence[EpochHook] = (), init=None) -> tuple[str, TrainResult]:
        """Train ``cfg`` as a tracked run, from the Keras network ``init`` if given; (its run id, the result)."""

    def register(self, run_id: str, coin: str, force: bool = False, decide: Decision | None = None,
                 tags: dict[str, str] | None = None) -> Registration:
        """Register the run's model, promoting it by `promotion` (or ``decide(champion)``), all at once."""

    def record_evaluation(self, evaluation, market: Market, data_dir: str) -> str:
        """Record `cryptolstm.evaluate.evaluate`'s ``evaluation``; the id of the record."""
