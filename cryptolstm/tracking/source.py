"""Where a backtest's configuration comes from: an experiment file, a run id, or a model URI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlflow

from cryptolstm.config import FIELD_NAMES, RunConfig, load_config
from cryptolstm.errors import ConfigError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def config_values_of_run(run_id: str) -> dict[str, Any]:
    """The configuration a run trained with: its ``config.<name>`` params, else (a study's parent, which holds
    only a model) its model's ``config.json``, found through MLflow (``runs:/...`` or MLflow 3's ``models:/m-<id>``:
    a logged model, not a registered one)."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    run = mlflow.MlflowClient().get_run(run_id)
    params = {k.removeprefix("config."): v for k, v in run.data.params.items() if k.startswith("config.")}
    if values := {k: (None if v in ("", "None") else v) for k, v in params.items() if k in FIELD_NAMES}:
        return values  # "None" or blank: no seal
    if "model_uri" not in run.data.tags:
        raise ConfigError(f"run {run_id} has neither config.* params nor a model to read its configuration from.")
    uri = run.data.tags["model_uri"]
    location = ModelsArtifactRepository.get_underlying_uri(uri) if uri.startswith("models:/") else uri
    local = mlflow.artifacts.download_artifacts(artifact_uri=location.rstrip("/") + "/artifacts/config.json")
    return json.loads(Path(local).read_text())


def resolve(source: str, overrides: dict[str, Any]) -> tuple[RunConfig, dict[str, str]]:
    """``(config, tags)`` for ``source``: an experiment file, a 32-hex run id, ``runs:/ID/...`` or
    ``models:/NAME@ALIAS`` (or ``/VERSION``); ``overrides`` win; the tags say where it came from."""
    tags = {"backtest.source": source}
    run_id = None
    if source.startswith("models:/"):
        try:
            run_id = mlflow.models.get_model_info(source).run_id
        except Exception as exc:  # noqa: BLE001 - unknown name or alias: one sentence
            raise ConfigError(f"cannot find model {source}: {str(exc).splitlines()[0][:200]}") from None
    elif source.startswith("runs:/"):
        run_id = source.removeprefix("runs:/").split("/")[0]
    elif RUN_ID.match(source) and not Path(source).exists():
        run_id = source
    if run_id is None:
        return load_config(source, **overrides), tags
    try:
        values = config_values_of_run(run_id)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - unknown run id
        raise ConfigError(f"cannot read the configuration of run {run_id}: {str(exc).splitlines()[0][:200]}") from None
    tags["backtest.source_run"] = run_id
    return RunConfig(**{**values, **{k: v for k, v in overrides.items() if v is not None}}), tags
