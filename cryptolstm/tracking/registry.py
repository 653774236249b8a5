"""The registry in MLflow: models resolved, loaded and registered, as `cryptolstm.registry.ModelStore`.

A model URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID/model``) resolves to a
`cryptolstm.registry.ModelInfo`: its version, its training run, its config and the days it
trained on, read from the model's own ``training.json`` (its training run's tags for a model
logged before it had one). Loading is `mlflow.pyfunc.load_model`, as a user loads it; any
failure to find or load a model is one sentence (`ConfigError`), naming where the model's files
are, or the damaged file among them.

A run's model is registered as a new version, tagged with its metrics, data range, protocol and
source run; whether it becomes champion is `cryptolstm.registry.promotion`'s rule (or the
caller's decision: a refit's common evaluation). Registration and promotion run under a file
lock, so two registrations at once cannot leave the alias on the worse model, nor add two
versions of one run. Only a coin's own runs are registered under its name, and a model is
loaded to forecast only the coin it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import weakref
import zipfile
from collections.abc import Sequence
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError, first_line, with_article
from cryptolstm.registry import (ALIAS, EVALUATION_TAGS, METRIC, Candidate, Decision, ModelInfo, Registration,
                                 champion_uri, model_name, promotion)
from cryptolstm.tracking.describe import describe_registered
from cryptolstm.tracking.source import config_values_of_run


def _logged_model_id(uri: str) -> str | None:
    """``m-...`` of a logged model's URI ``models:/m-...`` (MLflow 3), else None."""
    return uri.removeprefix("models:/") if uri.startswith("models:/m-") else None


def _version_and_run(uri: str) -> tuple[ModelVersion | None, Run]:
    client = MlflowClient()
    if uri.startswith("models:/"):
        name, _, rest = uri.removeprefix("models:/").partition("@")
        if rest:
            version = client.get_model_version_by_alias(name, rest)
        else:
            name, _, number = name.rpartition("/")
            version = client.get_model_version(name, number)
        return version, client.get_run(version.tags.get("source_run") or version.run_id)
    if uri.startswith("runs:/"):
        return None, client.get_run(uri.removeprefix("runs:/").split("/")[0])
    raise ConfigError(f"{uri} is not a model URI (models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model).")


def _training_record(location: str | None) -> dict | None:
    """The model's ``training.json`` (the days it trained on), or None for a model logged before it."""
    if not location:
        return None
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=location.rstrip("/") + "/artifacts/training.json")
    except Exception:  # noqa: BLE001 - a model without the file: its run's tags say it
        return None
    return json.loads(Path(local).read_text())


def _days(record: dict | None, run: Run, label: str) -> tuple[str, str, str]:
    """(the last day training or validation used, the first validation day, the last day of the data)."""
    if record is not None:
        val = record["periods"]["val"]
        return val["last"], val["first"], record["data"]["last_date"]
    tags = run.data.tags
    used, data_last = tags.get("split.val.last"), tags.get("data.last_date")
    if not used or not data_last:
        raise ConfigError(f"{label}'s training run {run.info.run_id} does not say which days it trained on "
                          f"(no split.val.last or data.last_date tag).")
    return used, tags.get("split.val.first", ""), data_last


def resolve(uri: str) -> ModelInfo:
    """The `ModelInfo` of ``uri``; one sentence when it names no model or its run is gone."""
    try:
        version, run = _version_and_run(uri)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unknown name, alias, version or run: one sentence
        raise ConfigError(f"there is no model {uri} in {mlflow.get_tracking_uri()}: {first_line(exc)}.") from None
    name, number = (version.name, str(version.version)) if version else (None, None)
    label = f"{name} version {number}" if version else uri
    pinned = f"models:/{name}/{number}" if version else uri
    model_id = (getattr(version, "model_id", None) or _logged_model_id(version.source)) if version else \
        _logged_model_id(run.data.tags.get("model_uri", ""))
    trained_until, val_first, data_last = _days(_training_record(_location(pinned)), run, label)
    cfg = RunConfig(**config_values_of_run(run.info.run_id))
    return ModelInfo(uri, run.info.run_id, cfg, trained_until, data_last, val_first, name, number,
                     {"model_id": model_id or "", "experiment_id": run.info.experiment_id})


def load_pyfunc(uri: str):
    """`mlflow.pyfunc.load_model`; any failure (MLflow, OS, Keras or zip errors) is one sentence
    naming the model's folder, or the damaged file in it when `_damage` finds one."""
    try:
        return _load_readable(uri)
    except Exception as exc:  # noqa: BLE001 - whatever a missing or damaged artifact raises, one sentence
        location = _location(uri)
        what, where = (_damage(location) if location else None) or (first_line(exc), location)
        raise ConfigError(f"cannot load {uri}: {what}" + (f" ({where})." if where else ".")) from None


def _load_readable(uri: str):
    """The pyfunc of ``uri``. MLflow loads a registered model of a local store in place and writes
    a note into its folder (``registered_model_meta``); a folder that cannot be written (a
    read-only store) is copied to a temporary folder first, removed when the model is."""
    folder = _local_folder(_location(uri))
    if folder is None or not folder.is_dir() or os.access(folder, os.W_OK):
        return mlflow.pyfunc.load_model(uri)
    copy = tempfile.mkdtemp(prefix="cryptolstm-model-")
    try:
        model = mlflow.pyfunc.load_model(uri, dst_path=copy)
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, copy, True)
    return model


def _local_folder(location: str | None) -> Path | None:
    """The local folder a model location names (a path or ``file:`` URI), else None."""
    if location is None:
        return None
    folder = Path(urllib.parse.urlparse(location).path if location.startswith("file:") else location)
    return folder if folder.is_absolute() else None


def forecaster_of(model, label: str = "the model"):
    """The `cryptolstm.inference.NetworkForecaster` inside a loaded cryptolstm pyfunc (``label``)."""
    try:
        return model.unwrap_python_model().forecaster
    except (MlflowException, AttributeError):
        raise ConfigError(f"{label} is not a cryptolstm forecaster.") from None


def check_model_coin(model, coin: str, label: str) -> None:
    """Refuse a model that is not a cryptolstm forecaster of ``coin`` (its saved `RunConfig`)."""
    try:
        model_coin = model.unwrap_python_model().forecaster.cfg.coin
    except (MlflowException, AttributeError):
        raise ConfigError(f"{label} is not a cryptolstm forecaster; it cannot forecast {coin.upper()}.") from None
    if model_coin != coin.upper():
        raise ConfigError(f"{label} is {with_article(model_coin)} model; it cannot forecast {coin.upper()} "
                          f"(pass --coin {model_coin}, or --model-uri of {with_article(coin.upper())} model).")


def load(info: ModelInfo, coin: str | None = None):
    """The forecaster of ``info``'s pyfunc, loaded as a user loads it; one sentence when it cannot
    be, or when it is not a cryptolstm forecaster (of ``coin``, when given)."""
    model = load_pyfunc(info.pinned_uri)
    check_model_coin(model, coin or info.config.coin, info.label)
    return forecaster_of(model, info.label)


def _location(uri: str) -> str | None:
    """Where the files of ``uri`` are stored (a local folder or an artifact URI), found without
    reading them; None for an unknown model. ``runs:/<id>/model`` is the run's logged model
    (its ``model_uri`` tag), as MLflow 3 resolves it."""
    try:
        if uri.startswith("runs:/"):
            run_id, _, path = uri.removeprefix("runs:/").partition("/")
            if path.strip("/") == "model":
                uri = MlflowClient().get_run(run_id).data.tags.get("model_uri", uri)
        if uri.startswith("models:/"):
            return ModelsArtifactRepository.get_underlying_uri(uri)
    except Exception:  # noqa: BLE001 - an unknown model or run: the loading error says so
        return None
    return uri


def _damage(location: str) -> tuple[str, str] | None:
    """(what is wrong, its path) when ``location`` is a local model folder that is gone, lacks
    its MLmodel or a file the MLmodel lists, or holds a ``.keras`` file that is not a complete
    zip archive (Keras reports a truncated one as "File not found") or an ``.onnx`` file that
    is not a valid ONNX model; else None."""
    folder = _local_folder(location)
    if folder is None:
        return None  # a remote artifact store: nothing to look at here
    if not folder.is_dir():
        return "the model's folder is missing", str(folder)
    if not (folder / "MLmodel").is_file():
        return "its MLmodel file is missing", str(folder / "MLmodel")
    try:
        artifacts = Model.load(str(folder)).flavors.get("python_function", {}).get("artifacts", {})
    except Exception:  # noqa: BLE001 - an unreadable MLmodel: the loading error says more
        return None
    for artifact in artifacts.values():
        path = folder / artifact["path"]
        if not path.is_file():
            return f"its artifact {path.name} is missing", str(path)
        if path.suffix == ".keras" and not zipfile.is_zipfile(path):
            return f"its artifact {path.name} is truncated or damaged (not a complete .keras zip file)", str(path)
        if path.suffix == ".onnx" and not _valid_onnx(path):
            return f"its artifact {path.name} is truncated or damaged (not a valid ONNX model)", str(path)
    return None


def _valid_onnx(path: Path) -> bool:
    """Whether the ONNX file at ``path`` is a complete, well-formed model (`onnx.checker`)."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception:  # noqa: BLE001 - unreadable or malformed: damaged
        return False
    return True


# --- registering -----------------------------------------------------------------------------


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


def register(run: Run, coin: str, force: bool = False, decide: Decision | None = None,
             tags: dict[str, str] | None = None) -> Registration:
    """Register ``run``'s model as a new version of ``cryptolstm-<coin>`` and promote it if it is
    better (`cryptolstm.registry.promotion`, or ``decide(champion)`` when given: a refit's common
    evaluation; ``force`` promotes it anyway). ``tags``: more tags of the new version.

    A run of another coin, one that names no coin and one without ``val/mae_ratio`` are refused
    (`ConfigError`, nothing registered). A run that already has a version gets that version back
    (``added`` False) and nothing is registered (`_again`). The check, the registration and the
    promotion share one lock, so two registrations of one run at once add one version."""
    client, name = MlflowClient(), model_name(coin)
    _check_run(run, name, coin)
    metrics, extra, run_tags, run_id = run.data.metrics, tags, run.data.tags, run.info.run_id
    ratio = metrics.get("test/mae_ratio", metrics[METRIC])
    beats = ratio < 1.0
    source = run_tags.get("model_uri", f"runs:/{run_id}/model")
    mine = Candidate(None, metrics[METRIC], _evaluation(run_tags))
    with _lock(name):
        earlier = _version_of(client, name, run_id, source)
        if earlier is not None:
            return _again(client, earlier, mine, force, beats, ratio)
        version_tags = {
            METRIC: str(metrics[METRIC]), "test/mae_ratio": str(metrics.get("test/mae_ratio", "")),
            "test/mae": str(metrics.get("test/mae", "")), "beats_persistence": str(beats).lower(),
            "persistence_ratio": str(ratio), "source_run": run_id, **mine.evaluation, **(extra or {}),
        }
        version = _register_model(source, name, version_tags, run_id)
        describe_registered(client, name, version, run)
        promoted, reason = _promote(client, name, version, mine, force, decide)
    return Registration(name, version, promoted, reason, beats, ratio)


def _again(client: MlflowClient, earlier: ModelVersion, mine: Candidate, force: bool, beats: bool,
           ratio: float) -> Registration:
    """The `Registration` of a run already registered as ``earlier``: nothing is added. The version
    is promoted only if ``force`` asks for it (as a "not compared" reason suggests) or if its own
    registration was cut short before its promotion was decided (it has no ``promotion`` tag)."""
    name, version = earlier.name, str(earlier.version)
    reason = f"run {earlier.tags.get('source_run')} was already registered as version {version}; nothing was added"
    if _champion_version(client, name) != version and (force or "promotion" not in earlier.tags):
        reason += "; " + _promote(client, name, version, mine, force)[1]
    return Registration(name, version, _champion_version(client, name) == version, reason, beats, ratio, added=False)


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def _promote(client: MlflowClient, name: str, version: str, mine: Candidate, force: bool,
             decide: Decision | None = None) -> tuple[bool, str]:
    """Decide whether ``version`` becomes champion; move the alias to it if so and tag the reason
    (``promotion``)."""
    current = _champion(client, name)
    if current is not None and decide is not None and not force:
        promoted, reason = decide(resolve(f"models:/{name}/{current.version}"))
    else:
        theirs = None if current is None else Candidate(str(current.version), float(current.tags.get(METRIC, "nan")),
                                                        _evaluation(current.tags))
        promoted, reason = promotion(mine, theirs, force)
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
    current = _champion(client, name)
    return None if current is None else str(current.version)


def _register_model(source: str, name: str, tags: dict[str, str], run_id: str) -> str:
    """`mlflow.register_model`; a run without a model (or an unreachable store) is one sentence."""
    try:
        return str(mlflow.register_model(source, name, tags=tags).version)
    except MlflowException as exc:
        raise ConfigError(f"cannot register run {run_id}'s model {source} as {name}: {first_line(exc)}.") from None


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


def register_run(run_id: str, coin: str, force: bool = False, decide: Decision | None = None,
                 tags: dict[str, str] | None = None) -> Registration:
    """`register` the run ``run_id``; an unknown run is one sentence."""
    try:
        run = MlflowClient().get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - an unknown or malformed run id: one sentence
        raise ConfigError(f"cannot register a {coin.upper()} model: {first_line(exc)}.") from None
    return register(run, coin, force, decide, tags)


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


class MlflowModels:
    """`cryptolstm.registry.ModelStore` on MLflow: this module's functions, training as a tracked
    run (resuming ``launched``, the run ``mlflow run`` made, where there is one) and evaluations
    recorded as runs (`cryptolstm.tracking.live`)."""

    def __init__(self, launched: str | None = None) -> None:
        self.launched = launched

    def resolve(self, uri: str) -> ModelInfo:
        return resolve(uri)

    def load(self, info: ModelInfo, coin: str | None = None):
        return load(info, coin)

    def network(self, info: ModelInfo):
        """The Keras network its training run saved (``keras/lstm.keras``); one sentence without it."""
        import keras

        import cryptolstm.models.lstm  # noqa: F401 - registers the custom activation, heads and losses

        try:
            path = mlflow.artifacts.download_artifacts(run_id=info.run_id, artifact_path="keras/lstm.keras")
            return keras.models.load_model(path)
        except Exception as exc:  # noqa: BLE001 - a run without it (or a damaged file): one sentence
            raise ConfigError(f"{info.label} has no Keras network to start from ({first_line(exc)}); refit it with "
                              f"--retrain scratch.") from None

    def train(self, cfg: RunConfig, market, name: str, tags: dict[str, str], on_epoch: Sequence = (), init=None):
        from cryptolstm.tracking.runs import coin_experiment
        from cryptolstm.tracking.train import tracked_train

        return tracked_train(cfg, market, None, coin_experiment(cfg.coin), on_epoch, self.launched, name, tags, init)

    def register(self, run_id: str, coin: str, force: bool = False, decide: Decision | None = None,
                 tags: dict[str, str] | None = None) -> Registration:
        return register_run(run_id, coin, force, decide, tags)

    def record_evaluation(self, evaluation, market, data_dir: str) -> str:
        from cryptolstm.tracking.live import log_evaluation

        return log_evaluation(evaluation, market, data_dir, self.launched)
