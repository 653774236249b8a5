"""Model URIs resolved in MLflow as a `cryptolstm.registry.ModelInfo` (from the model's ``training.json``)
and loaded as a user loads them; any failure is one sentence naming the model's files, or the damaged one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
import weakref
import zipfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import ConfigError, first_line, with_article
from cryptolstm.registry import ModelInfo, champion_uri, openings_of
from cryptolstm.tracking.runs import SEALED_FROM
from cryptolstm.tracking.source import config_values_of_run


def logged_model_id(uri: str) -> str | None:
    """``m-...`` of a logged model's URI ``models:/m-...`` (MLflow 3), else None."""
    return uri.removeprefix("models:/") if uri.startswith("models:/m-") else None


def resolve(uri: str) -> ModelInfo:
    """The `ModelInfo` of ``uri``; one sentence when it names no model, its run is gone or it has no training.json."""
    if not uri.startswith(("models:/", "runs:/")):
        raise ConfigError(f"{uri} is not a model URI (models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model).")
    client, version = MlflowClient(), None
    try:
        if uri.startswith("runs:/"):
            run = client.get_run(uri.removeprefix("runs:/").split("/")[0])
        else:
            name, _, alias = uri.removeprefix("models:/").partition("@")
            if alias:
                version = client.get_model_version_by_alias(name, alias)
            else:
                model, _, number = name.rpartition("/")
                version = client.get_model_version(model, number)
            run = client.get_run(version.tags.get("source_run") or version.run_id)
    except Exception as exc:  # noqa: BLE001 - an unknown name, alias, version or run: one sentence
        raise ConfigError(f"there is no model {uri} in {mlflow.get_tracking_uri()}: {first_line(exc)}{_advice(uri)}.") from None
    name, number = (version.name, str(version.version)) if version else (None, None)
    label = f"{name} version {number}" if version else uri
    if version:
        model_id = getattr(version, "model_id", None) or logged_model_id(version.source)
    else:
        model_id = logged_model_id(run.data.tags.get("model_uri", ""))
    location = _location(f"models:/{name}/{number}" if version else uri)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=(location or "").rstrip("/") + "/artifacts/training.json")
    except Exception:  # noqa: BLE001 - any failure to fetch it: one sentence
        raise ConfigError(f"{label} has no training.json: it was logged by an older cryptolstm; train or refit "
                          f"its configuration again (docs/registry.md).") from None
    record = json.loads(Path(local).read_text())  # the days it trained on, the prices it read
    val = record["periods"]["val"]
    cfg = RunConfig(**config_values_of_run(run.info.run_id))
    seal = (version.tags.get(SEALED_FROM) if version else None) or run.data.tags.get(SEALED_FROM) or cfg.sealed_from
    return ModelInfo(uri, run.info.run_id, cfg, val["last"], record["data"]["last_date"], val["first"], name, number,
                     {"model_id": model_id or "", "experiment_id": run.info.experiment_id},
                     record["prices"], seal, openings_of(run.data.tags))


def _advice(uri: str) -> str:
    """What to type when a coin's champion is missing ("" for any other model)."""
    coin = next((c for c in COINS if uri == champion_uri(c)), None)
    return f"; make one with `cryptolstm train --coin {coin} --register`" if coin else ""


def load_pyfunc(uri: str):
    """`mlflow.pyfunc.load_model`; any failure is one sentence naming the model's folder, or its damaged file."""
    try:
        return _load_readable(uri)
    except Exception as exc:  # noqa: BLE001 - whatever a missing or damaged artifact raises, one sentence
        location = _location(uri)
        what, where = (_damage(location) if location else None) or (first_line(exc), location)
        advice = _advice(uri) if location is None else ""  # no such model (a damaged one needs no train)
        raise ConfigError(f"cannot load {uri}: {what}" + (f" ({where})" if where else "") + f"{advice}.") from None


def _load_readable(uri: str):
    """The pyfunc of ``uri``, loaded from a temporary copy when its folder is read-only (MLflow writes
    ``registered_model_meta`` into it); the copy is removed with the model."""
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


def check_model_coin(model, coin: str, label: str):
    """The `cryptolstm.models.network.NetworkForecaster` in the pyfunc ``model``; refused unless it is ``coin``'s."""
    try:
        forecaster = model.unwrap_python_model().forecaster
        model_coin = forecaster.cfg.coin
    except (MlflowException, AttributeError):
        raise ConfigError(f"{label} is not a cryptolstm forecaster; it cannot forecast {coin.upper()}.") from None
    if model_coin != coin.upper():
        raise ConfigError(f"{label} is {with_article(model_coin)} model; it cannot forecast {coin.upper()} "
                          f"(pass --coin {model_coin}, or --model-uri of {with_article(coin.upper())} model).")
    return forecaster


def load(info: ModelInfo, coin: str | None = None):
    """The forecaster of ``info``'s pyfunc, loaded as a user loads it; one sentence when it is not ``coin``'s."""
    return check_model_coin(load_pyfunc(info.pinned_uri), coin or info.config.coin, info.label)


def _location(uri: str) -> str | None:
    """Where the files of ``uri`` are stored (a folder or an artifact URI), or None for an unknown model;
    ``runs:/<id>/model`` is the run's logged model (its ``model_uri`` tag), as MLflow 3 resolves it."""
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
    """(what is wrong, its path) when the local model folder ``location`` is gone, lacks a file, or holds a
    damaged ``.keras`` (Keras calls a truncated one "File not found") or ``.onnx`` file; else None."""
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
        if path.suffix == ".onnx":
            import onnx

            try:
                onnx.checker.check_model(str(path))
            except Exception:  # noqa: BLE001 - unreadable or malformed: damaged
                return f"its artifact {path.name} is truncated or damaged (not a valid ONNX model)", str(path)
    return None
