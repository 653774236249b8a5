"""Writes the descriptions the MLflow UI shows (texts from `cryptolstm.render`): an experiment's tag
``mlflow.note.content``, a registered model's and version's ``description``."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities import Run

from cryptolstm.render import NOTE, experiment_text, model_text, version_text


KIND = "mlflow.experimentKind"  # MLflow 3's UI opens an experiment of this kind on its runs, not a GenAI overview


def describe_experiment(client: MlflowClient, experiment_id: str) -> None:
    """Give an experiment its description unless it has one (a user's stays), and its `KIND` unless set."""
    experiment = client.get_experiment(experiment_id)
    if not experiment.tags.get(NOTE):
        client.set_experiment_tag(experiment_id, NOTE, experiment_text(experiment.name))
    if not experiment.tags.get(KIND):
        client.set_experiment_tag(experiment_id, KIND, "custom_model_development")


def run_version_text(run: Run) -> str:
    """`cryptolstm.render.version_text` of a version registered from ``run``."""
    return version_text(run.info.run_id, run.info.run_name, run.info.experiment_id, run.data.tags, run.data.params,
                        run.data.metrics)


WHY = "Why it is or is not champion: "  # the version description's last paragraph: the whole promotion sentence


def describe_registered(client: MlflowClient, name: str, version: str, run: Run, reason: str = "") -> None:
    """Describe registered model ``name`` and its ``version`` (from ``run``) with the whole why-champion sentence."""
    client.update_registered_model(name, description=model_text(name))
    why = f"\n\n{WHY}{reason}." if reason else ""
    client.update_model_version(name, version, description=run_version_text(run) + why)
