"""Model URIs resolved and loaded, in MLflow: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` and
``runs:/ID/model`` as a `cryptolstm.registry.ModelInfo` (its version, its training run, its config and
the days it trained on and the prices it read, from the model's own ``training.json``), and the
pyfunc loaded as a user loads it. Any failure to find or
load a model is one sentence (`ConfigError`), naming where the model's files are, or the damaged
file among them.
"""

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
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

from cryptolstm.config import COINS, RunConfig
from cryptolstm.errors import ConfigError, first_line, with_article
from cryptolstm.registry import ModelInfo, champion_uri, openings_of
from cryptolstm.tracking.runs import SEALED_FROM
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


def _training_record(location: str | None, label: str) -> dict:
    """The model's ``training.json`` (the days it trained on, the prices it read); one sentence for a
    model without one (logged by a cryptolstm older than its pyfunc module: docs/registry.md)."""
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=(location or "").rstrip("/") + "/artifacts/training.json")
    except Exception:  # noqa: BLE001 - any failure to fetch it: one sentence
        raise ConfigError(f"{label} has no training.json: it was logged by an older cryptolstm; train or refit "
                          f"its configuration again (docs/registry.md).") from None
    return json.loads(Path(local).read_text())


def resolve(uri: str) -> ModelInfo:
    """The `ModelInfo` of ``uri``; one sentence when it names no model or its run is gone."""
    try:
        version, run = _version_and_run(uri)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unknown name, alias, version or run: one sentence
        raise ConfigError(f"there is no model {uri} in {mlflow.get_tracking_uri()}: {first_line(exc)}{_advice(uri)}.") from None
    name, number = (version.name, str(version.version)) if version else (None, None)
    label = f"{name} version {number}" if version else uri
    pinned = f"models:/{name}/{number}" if version else uri
    model_id = (getattr(version, "model_id", None) or _logged_model_id(version.source)) if version else \
        _logged_model_id(run.data.tags.get("model_uri", ""))
    record = _training_record(_location(pinned), label)
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
    """`mlflow.pyfunc.load_model`; any failure (MLflow, OS, Keras or zip errors) is one sentence
    naming the model's folder, or the damaged file in it when `_damage` finds one."""
    try:
        return _load_readable(uri)
    except Exception as exc:  # noqa: BLE001 - whatever a missing or damaged artifact raises, one sentence
        location = _location(uri)
        what, where = (_damage(location) if location else None) or (first_line(exc), location)
        advice = _advice(uri) if location is None else ""  # no such model (a damaged one needs no train)
        raise ConfigError(f"cannot load {uri}: {what}" + (f" ({where})" if where else "") + f"{advice}.") from None


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
    """The `cryptolstm.models.network.NetworkForecaster` inside a loaded cryptolstm pyfunc (``label``)."""
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
