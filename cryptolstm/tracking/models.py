"""A model URI resolved and loaded: which registered version and training run it names, the
pyfunc loaded as a user loads it, and a call that forecasts every window at once.

Any failure to find or load a model is one sentence (`ConfigError`), naming where the model's
files are, or the damaged file among them.
"""

from __future__ import annotations

import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

from cryptolstm.errors import ConfigError, first_line, with_article


@dataclass(frozen=True)
class ModelRef:
    """What a model URI names: the registered ``name`` and ``version`` (None for ``runs:/``), the
    training run ``run`` it came from, and ``label``, how it is named to a user."""

    uri: str
    run: Run
    name: str | None = None
    version: str | None = None
    model_id: str | None = None  # MLflow 3's logged model (``m-...``), whose page shows metrics linked to it

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
        return day > self.trained_until()[1]

    def trained_until(self) -> tuple[str, str]:
        """(the last day its training or validation used, the last day of its data), ISO dates, read
        from its training run's ``split.val.last`` and ``data.last_date`` tags."""
        tags = self.run.data.tags
        used, data_last = tags.get("split.val.last"), tags.get("data.last_date")
        if not used or not data_last:
            raise ConfigError(f"{self.label}'s training run {self.run.info.run_id} does not say which days it "
                              f"trained on (no split.val.last or data.last_date tag).")
        return used, data_last


def model_ref(uri: str) -> ModelRef:
    """The `ModelRef` of ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID/model``;
    one sentence (`ConfigError`) when it names no model or its run is gone."""
    client = MlflowClient()
    try:
        if uri.startswith("models:/"):
            name, _, rest = uri.removeprefix("models:/").partition("@")
            if rest:
                version = client.get_model_version_by_alias(name, rest)
            else:
                name, _, number = name.rpartition("/")
                version = client.get_model_version(name, number)
            run = client.get_run(version.tags.get("source_run") or version.run_id)
            return ModelRef(uri, run, version.name, str(version.version),
                            getattr(version, "model_id", None) or _logged_model_id(version.source))
        if uri.startswith("runs:/"):
            run = client.get_run(uri.removeprefix("runs:/").split("/")[0])
            return ModelRef(uri, run, model_id=_logged_model_id(run.data.tags.get("model_uri", "")))
    except Exception as exc:  # noqa: BLE001 - an unknown name, alias, version or run: one sentence
        raise ConfigError(f"there is no model {uri} in {mlflow.get_tracking_uri()}: {first_line(exc)}.") from None
    raise ConfigError(f"{uri} is not a model URI (models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model).")


def _logged_model_id(uri: str) -> str | None:
    """``m-...`` of a logged model's URI ``models:/m-...`` (MLflow 3), else None."""
    return uri.removeprefix("models:/") if uri.startswith("models:/m-") else None


def load_model(ref: ModelRef, coin: str | None = None):
    """The pyfunc of ``ref``, loaded as a user loads it; one sentence when it cannot be, or when
    it is not a cryptolstm forecaster (of ``coin``, when given)."""
    model = load_pyfunc(ref.pinned_uri)
    check_model_coin(model, coin or config_of(model, ref.label).coin, ref.label)
    return model


def config_of(model, label: str = "the model"):
    """The `RunConfig` a loaded cryptolstm pyfunc (called ``label``) was trained with."""
    try:
        return model.unwrap_python_model().lstm.cfg
    except (MlflowException, AttributeError):
        raise ConfigError(f"{label} is not a cryptolstm forecaster.") from None


def load_pyfunc(uri: str):
    """`mlflow.pyfunc.load_model`; any failure (MLflow, OS, Keras or zip errors) is one sentence
    naming the model's folder, or the damaged file in it when `_damage` finds one."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except Exception as exc:  # noqa: BLE001 - whatever a missing or damaged artifact raises, one sentence
        location = _location(uri)
        what, where = (_damage(location) if location else None) or (first_line(exc), location)
        raise ConfigError(f"cannot load {uri}: {what}" + (f" ({where})." if where else ".")) from None


def check_model_coin(model, coin: str, label: str) -> None:
    """Refuse a model that is not a cryptolstm forecaster of ``coin`` (its saved `RunConfig`)."""
    try:
        model_coin = model.unwrap_python_model().lstm.cfg.coin
    except (MlflowException, AttributeError):
        raise ConfigError(f"{label} is not a cryptolstm forecaster; it cannot forecast {coin.upper()}.") from None
    if model_coin != coin.upper():
        raise ConfigError(f"{label} is {with_article(model_coin)} model; it cannot forecast {coin.upper()} "
                          f"(pass --coin {model_coin}, or --model-uri of {with_article(coin.upper())} model).")


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
    folder = Path(urllib.parse.urlparse(location).path if location.startswith("file:") else location)
    if not folder.is_absolute():
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


def every_day(model):
    """``rows -> table`` of a loaded cryptolstm pyfunc that forecasts every window of daily ``rows``
    (the pyfunc's input) at once: one row per origin day and horizon, with ``origin``, ``date``,
    ``horizon``, ``forecast_close`` and ``last_close`` (USD), and under a distribution head the
    80 % / 95 % bounds and every quantile (``q0.025``...). One call with the ``every_day``
    parameter; a model logged before that parameter existed is called once per window (the same
    point forecasts and bounds, slower, no quantile columns)."""
    schema = model.metadata.get_params_schema()
    if schema is not None and "every_day" in {p.name for p in schema.params}:
        return lambda rows: model.predict(rows, params={"every_day": True})
    window = config_of(model).window_len

    def one_by_one(rows: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for end in range(window, len(rows) + 1):
            out = model.predict(rows.iloc[end - window:end])
            if "horizon" not in out:  # a next-day model logged before several days were possible
                out = out.assign(horizon=1)
            parts.append(out.assign(origin=rows["date"].iloc[end - 1]))
        return pd.concat(parts, ignore_index=True)

    return one_by_one
