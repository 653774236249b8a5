"""The model registry: ``cryptolstm-btc`` and ``cryptolstm-eth``, the alias ``champion``.

A run's model is registered as a new version, tagged with its metrics, data range,
protocol and source run. It becomes champion only if it beats the current champion on
the same evaluation (same protocol, data range and validation days, same metric);
otherwise it stays registered without the alias and the reason is tagged. Registration and
promotion run under a file lock, so two registrations at once cannot leave the alias on the
worse model, nor add two versions of one run.

Only a coin's own runs are registered under its name, a run is registered once (again, its
version comes back), and a model is loaded to forecast only the coin it was trained on.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from cryptolstm.config import COINS
from cryptolstm.tracking.describe import describe_registered
from cryptolstm.errors import ConfigError, first_line, with_article
from cryptolstm.tracking.models import check_model_coin, load_pyfunc

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


@dataclass(frozen=True)
class Registration:
    """What `register` did: ``version`` of ``name``, whether it is champion now and why.

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


def best_run(coin: str, experiment_name: str | None = None, study_name: str | None = None) -> Run:
    """The finished run with a model and the lowest ``val/mae_ratio`` for ``coin``: in a study
    (its parent run) or anywhere in an experiment (training runs and study runs alike)."""
    filters = [f"tags.coin = '{coin.upper()}'", "attributes.status = 'FINISHED'", f"metrics.`{METRIC}` >= 0"]
    if study_name:
        filters.append(f"tags.`cryptolstm.study` = '{study_name}'")
    experiments = None
    if experiment_name:
        experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise ConfigError(f"MLflow experiment {experiment_name!r} does not exist.")
        experiments = [experiment.experiment_id]
    runs = mlflow.search_runs(experiment_ids=experiments, search_all_experiments=experiments is None,
                              filter_string=" and ".join(filters), order_by=[f"metrics.`{METRIC}` ASC"],
                              output_format="list")
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]  # trial runs hold no model
    if not runs:
        where = f"study {study_name!r}" if study_name else f"experiment {experiment_name!r}" if experiment_name else "any experiment"
        raise ConfigError(f"no finished {coin.upper()} run with {METRIC} and a model in {where}; train or search first.")
    return runs[0]


def _lock(name: str) -> FileLock:
    """A lock per registered model and tracking store, beside a local SQLite store when there is one."""
    uri = mlflow.get_tracking_uri()
    key = hashlib.sha256(f"{uri}|{name}".encode()).hexdigest()[:16]
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path(tempfile.gettempdir())
    return FileLock(str(folder / f".cryptolstm-registry-{key}.lock"), timeout=300)


def _evaluation(tags: dict[str, str]) -> dict[str, str]:
    return {k: tags.get(k, "") for k in EVALUATION_TAGS}


Decision = Callable[[ModelVersion], tuple[bool, str]]  # the champion -> (promote?, why)


def register(run: Run, coin: str, force: bool = False, decide: Decision | None = None,
             tags: dict[str, str] | None = None) -> Registration:
    """Register ``run``'s model as a new version of ``cryptolstm-<coin>`` and promote it if it is
    better (`_decide`, or ``decide(champion)`` when given: a refit's common evaluation; ``force``
    promotes it anyway). ``tags``: more tags of the new version.

    A run of another coin, one that names no coin and one without ``val/mae_ratio`` are refused
    (`ConfigError`, nothing registered). A run that already has a version gets that version back
    (``added`` False) and nothing is registered (`_again`). The check, the registration and the
    promotion share one lock, so two registrations of one run at once add one version."""
    client, name = MlflowClient(), model_name(coin)
    _check_run(run, name, coin)
    metrics, extra, tags, run_id = run.data.metrics, tags, run.data.tags, run.info.run_id
    ratio = metrics.get("test/mae_ratio", metrics[METRIC])
    beats = ratio < 1.0
    source = tags.get("model_uri", f"runs:/{run_id}/model")
    with _lock(name):
        earlier = _version_of(client, name, run_id, source)
        if earlier is not None:
            return _again(client, earlier, metrics[METRIC], _evaluation(tags), force, beats, ratio)
        version_tags = {
            METRIC: str(metrics[METRIC]), "test/mae_ratio": str(metrics.get("test/mae_ratio", "")),
            "test/mae": str(metrics.get("test/mae", "")), "beats_persistence": str(beats).lower(),
            "persistence_ratio": str(ratio), "source_run": run_id, **_evaluation(tags), **(extra or {}),
        }
        version = _register_model(source, name, version_tags, run_id)
        describe_registered(client, name, version, run)
        promoted, reason = _promote(client, name, version, metrics[METRIC], _evaluation(tags), force, decide)
    return Registration(name, version, promoted, reason, beats, ratio)


def _again(client: MlflowClient, earlier: ModelVersion, value: float, evaluation: dict, force: bool,
           beats: bool, ratio: float) -> Registration:
    """The `Registration` of a run already registered as ``earlier``: nothing is added. The version
    is promoted only if ``force`` asks for it (as a "not compared" reason suggests) or if its own
    registration was cut short before its promotion was decided (it has no ``promotion`` tag)."""
    name, version = earlier.name, str(earlier.version)
    reason = f"run {earlier.tags.get('source_run')} was already registered as version {version}; nothing was added"
    if _champion_version(client, name) != version and (force or "promotion" not in earlier.tags):
        reason += "; " + _promote(client, name, version, value, evaluation, force)[1]
    return Registration(name, version, _champion_version(client, name) == version, reason, beats, ratio, added=False)


def _promote(client: MlflowClient, name: str, version: str, value: float, evaluation: dict,
             force: bool, decide: Decision | None = None) -> tuple[bool, str]:
    """`_decide` for ``version``; move the alias to it if promoted and tag the reason (``promotion``)."""
    promoted, reason = _decide(client, name, value, evaluation, force, decide)
    if promoted:
        client.set_registered_model_alias(name, ALIAS, version)
    client.set_model_version_tag(name, version, "promotion", reason)
    return promoted, reason


def _check_run(run: Run, name: str, coin: str) -> None:
    """Refuse (`ConfigError`) a run whose ``coin`` tag or ``config.coin`` param is another coin,
    one with neither, and one without ``val/mae_ratio`` (it holds no model to compare)."""
    run_id = run.info.run_id
    said = {run.data.tags.get("coin"), run.data.params.get("config.coin")} - {None, ""}
    if not said:
        raise ConfigError(f"run {run_id} names no coin (no coin tag, no config.coin param); "
                          f"it cannot be registered as {name}.")
    other = sorted(c for c in said if c.upper() != coin.upper())
    if other:
        raise ConfigError(f"run {run_id} is {with_article(other[0])} run; it cannot be registered as {name}.")
    if METRIC not in run.data.metrics:
        raise ConfigError(f"run {run_id} has no {METRIC}: only a training run or a study's parent run "
                          f"holds a model to register as {name}.")


def _version_of(client: MlflowClient, name: str, run_id: str, source: str) -> ModelVersion | None:
    """The lowest version of ``name`` registered from run ``run_id``'s model ``source``, or None (a
    resumed study logs a newer model on the same run: that one is new)."""
    found = [v for v in client.search_model_versions(f"name = '{name}' and tags.source_run = '{run_id}'")
             if v.source == source]
    return min(found, key=lambda v: int(v.version)) if found else None


def _champion_version(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, ALIAS).version)
    except MlflowException:
        return None


def _register_model(source: str, name: str, tags: dict[str, str], run_id: str) -> str:
    """`mlflow.register_model`; a run without a model (or an unreachable store) is one sentence."""
    try:
        return str(mlflow.register_model(source, name, tags=tags).version)
    except MlflowException as exc:
        raise ConfigError(f"cannot register run {run_id}'s model {source} as {name}: {first_line(exc)}.") from None


def _decide(client: MlflowClient, name: str, value: float, evaluation: dict, force: bool,
            decide: Decision | None = None) -> tuple[bool, str]:
    """Whether a version with ``value`` on ``evaluation`` should become champion, and why
    (``decide(champion)`` says it instead of the comparison of validation ratios)."""
    try:
        current = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return True, "first champion"
    if force:
        return True, f"promoted by force over version {current.version}"
    if decide is not None:
        return decide(current)
    if _evaluation(current.tags) != evaluation:
        return False, (f"not compared: champion version {current.version} was evaluated on {_evaluation(current.tags)}, "
                       f"this one on {evaluation}; promote it with --force")
    best = float(current.tags[METRIC])
    if value < best:
        return True, f"{METRIC} {value:.4f} beats champion version {current.version} ({best:.4f})"
    return False, f"{METRIC} {value:.4f} does not beat champion version {current.version} ({best:.4f})"


def load_champion(coin: str, model_uri: str | None = None):
    """(pyfunc model, version or URI label) for ``model_uri`` or ``coin``'s champion.

    A model that cannot be loaded (unknown, its files missing or truncated) and a model of
    another coin are refused with one sentence (`ConfigError`); the first names where the
    model's files are."""
    uri = model_uri or champion_uri(coin)
    model = load_pyfunc(uri)
    label = uri
    if model_uri is None:
        label = f"{uri} (version {_champion_version(MlflowClient(), model_name(coin))})"
    check_model_coin(model, coin, label)
    return model, label


def register_run(run_id: str, coin: str, force: bool = False) -> Registration:
    """`register` the run ``run_id``; an unknown run is one sentence."""
    try:
        run = MlflowClient().get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - an unknown or malformed run id: one sentence
        raise ConfigError(f"cannot register a {coin.upper()} model: {first_line(exc)}.") from None
    return register(run, coin, force)


def register_best(options) -> Registration:
    """`cryptolstm register`: ``options.run_id``'s model, else the best run of the study or experiment
    (``options``: a `cryptolstm.options.RegisterOptions`)."""
    model_name(options.coin)
    if options.run_id:
        return register_run(options.run_id, options.coin, options.force)
    return register(best_run(options.coin, options.experiment_name, options.study_name), options.coin, options.force)


def forecast_with(coin: str, model_uri: str | None, rows):
    """(the forecast of ``model_uri``, or of ``coin``'s champion, from daily ``rows``; its label)."""
    model, label = load_champion(coin, model_uri)
    try:
        return model.predict(rows), label
    except Exception as exc:  # noqa: BLE001 - e.g. a model logged before the forecaster existed: one sentence
        raise ConfigError(f"{label} could not forecast: {first_line(exc)}.") from None
