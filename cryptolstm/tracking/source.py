"""Where a backtest's configuration comes from: an experiment file, a run id, or a model URI.

A run's configuration is read from its ``config.<name>`` params (every training
and trial run logs them) or, for a run that only holds a model (a study's
parent), from the model's saved ``config.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlflow

from cryptolstm.config import FIELD_NAMES, RunConfig, load_config
from cryptolstm.errors import ConfigError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _from_params(params: dict[str, str]) -> dict[str, Any]:
    values = {k.removeprefix("config."): v for k, v in params.items() if k.startswith("config.")}
    return {k: (None if v in ("", "None") else v) for k, v in values.items() if k in FIELD_NAMES}  # None: no seal


def _from_model(model_uri: str) -> dict[str, Any]:
    """The ``config.json`` of the logged model ``model_uri`` (``runs:/...`` or MLflow 3's ``models:/m-<id>``,
    which names a logged model, not a registered one: its files are found through MLflow)."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    location = ModelsArtifactRepository.get_underlying_uri(model_uri) if model_uri.startswith("models:/") else model_uri
    local = mlflow.artifacts.download_artifacts(artifact_uri=location.rstrip("/") + "/artifacts/config.json")
    return json.loads(Path(local).read_text())


def config_values_of_run(run_id: str) -> dict[str, Any]:
    """The configuration a run trained with (see module docstring)."""
    run = mlflow.MlflowClient().get_run(run_id)
    values = _from_params(run.data.params)
    if values:
        return values
    if "model_uri" in run.data.tags:
        return _from_model(run.data.tags["model_uri"])
    raise ConfigError(f"run {run_id} has neither config.* params nor a model to read its configuration from.")


def resolve(source: str, overrides: dict[str, Any]) -> tuple[RunConfig, dict[str, str]]:
    """``(config, tags)`` for ``source``: an experiment file, a 32-hex run id, ``runs:/ID/...`` or
    ``models:/NAME@ALIAS`` (or ``/VERSION``); ``overrides`` (e.g. data_dir, coin) win.

    The tags say what the config came from (``backtest.source``, ``backtest.source_run``).
    """
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
