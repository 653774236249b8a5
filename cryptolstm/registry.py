"""The model registry: ``cryptolstm-btc`` and ``cryptolstm-eth``, the alias ``champion``.

A run's model is registered as a new version, tagged with its metrics, data range,
protocol and source run. It becomes champion only if it beats the current champion on
the same evaluation (same protocol, data range and validation days, same metric);
otherwise it stays registered without the alias and the reason is tagged. Promotion runs
under a file lock, so two registrations at once cannot leave the alias on the worse model.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from cryptolstm.config import COINS
from cryptolstm.errors import ConfigError

ALIAS = "champion"
METRIC = "val/mae_ratio"  # selection stays on validation days; test is reported, never chosen on
EVALUATION_TAGS = ("protocol", "data.first_date", "data.last_date", "split.val.first", "split.val.last")


def model_name(coin: str) -> str:
    """Registered model name of ``coin``: ``cryptolstm-btc`` or ``cryptolstm-eth``."""
    if coin.upper() not in COINS:
        raise ConfigError(f"coin must be one of {', '.join(COINS)}; got {coin!r}.")
    return f"cryptolstm-{coin.lower()}"


def champion_uri(coin: str) -> str:
    return f"models:/{model_name(coin)}@{ALIAS}"


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    promoted: bool
    reason: str
    beats_persistence: bool
    ratio: float


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


def register(run: Run, coin: str, force: bool = False) -> Registration:
    """Register ``run``'s model as a new version of ``cryptolstm-<coin>``; promote if it is better."""
    client, name = MlflowClient(), model_name(coin)
    metrics, tags = run.data.metrics, run.data.tags
    ratio = metrics.get("test/mae_ratio", metrics[METRIC])
    beats = ratio < 1.0
    version_tags = {
        METRIC: str(metrics[METRIC]), "test/mae_ratio": str(metrics.get("test/mae_ratio", "")),
        "test/mae": str(metrics.get("test/mae", "")), "beats_persistence": str(beats).lower(),
        "persistence_ratio": str(ratio), "source_run": run.info.run_id, **_evaluation(tags),
    }
    source = tags.get("model_uri", f"runs:/{run.info.run_id}/model")
    version = mlflow.register_model(source, name, tags=version_tags).version
    with _lock(name):
        promoted, reason = _decide(client, name, metrics[METRIC], _evaluation(tags), force)
        if promoted:
            client.set_registered_model_alias(name, ALIAS, version)
        client.set_model_version_tag(name, version, "promotion", reason)
    return Registration(name, str(version), promoted, reason, beats, ratio)


def _decide(client: MlflowClient, name: str, value: float, evaluation: dict, force: bool) -> tuple[bool, str]:
    """Whether a version with ``value`` on ``evaluation`` should become champion, and why."""
    try:
        current = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return True, "first champion"
    if force:
        return True, f"promoted by force over version {current.version}"
    if _evaluation(current.tags) != evaluation:
        return False, (f"not compared: champion version {current.version} was evaluated on {_evaluation(current.tags)}, "
                       f"this one on {evaluation}; promote it with --force")
    best = float(current.tags[METRIC])
    if value < best:
        return True, f"{METRIC} {value:.4f} beats champion version {current.version} ({best:.4f})"
    return False, f"{METRIC} {value:.4f} does not beat champion version {current.version} ({best:.4f})"


def load_champion(coin: str, model_uri: str | None = None):
    """(pyfunc model, version or URI label) for ``model_uri`` or ``coin``'s champion."""
    uri = model_uri or champion_uri(coin)
    try:
        model = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise ConfigError(f"cannot load {uri}: {str(exc).splitlines()[0]}") from None
    label = uri
    if model_uri is None:
        label = f"{uri} (version {MlflowClient().get_model_version_by_alias(model_name(coin), ALIAS).version})"
    return model, label


def register_run(run_id: str, coin: str, force: bool = False) -> Registration:
    """`register` the run ``run_id``; an unknown run is one sentence."""
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(f"cannot register a {coin.upper()} model: {str(exc).splitlines()[0]}") from None
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
    except MlflowException as exc:
        raise ConfigError(f"{label} could not forecast: {str(exc).splitlines()[0][:300]}") from None
