"""A search in MLflow (`SearchTracker`): one parent run per study, never held active (several workers
log to it), and one child run per trial."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow.entities import RunStatus, RunTag

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.render import NOTE, number, study_text, trial_text
from cryptolstm.tracking.describe import describe_experiment
from cryptolstm.tracking.runs import config_params, log_dataset, log_epoch
from cryptolstm.tracking.store import process_tags
from cryptolstm.tracking.train import log_result
from cryptolstm.train import TrainResult

STUDY_TAG = "cryptolstm.study"


@contextlib.contextmanager
def on_run(run_id: str, status_after: str = "RUNNING") -> Iterator[mlflow.ActiveRun]:
    """Make ``run_id`` the active run for a block, then set it ``status_after`` (RUNNING: other workers
    may still log to it); an exception ends it FAILED (KILLED for Ctrl-C) unless it stays RUNNING."""
    run = mlflow.start_run(run_id=run_id)
    try:
        yield run
    except BaseException as exc:
        failed = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        mlflow.end_run(failed if status_after != "RUNNING" else "RUNNING")
        raise
    mlflow.end_run(status_after)


class MlflowSearchTracker:
    """The MLflow `SearchTracker` of a study on ``market``; ``launched``: the run ``mlflow run`` made
    for this command (it becomes, or nests under, the study's parent)."""

    def __init__(self, market: Market, base: RunConfig, experiment_name: str, launched: str | None = None,
                 single_process: bool = True):
        self.market, self.base, self.experiment_name, self.launched = market, base, experiment_name, launched
        self.single_process = single_process

    def parent(self, study_name: str, tags: dict[str, str], run_id: str | None = None) -> str:
        """The study's parent run id, RUNNING but not left active: ``run_id`` if given, else the run
        found by its study tag (a resumed study), else the run ``mlflow run`` created, else a new run.
        A single-process study's parent is tied to this process (the reaper ends it if it dies)."""
        client, launched = mlflow.MlflowClient(), self.launched
        if run_id is None:
            found = mlflow.search_runs(filter_string=f"tags.`{STUDY_TAG}` = '{study_name}'", output_format="list",
                                       search_all_experiments=True, order_by=["attributes.start_time ASC"])
            parent = next((r for r in found if "mlflow.parentRunId" not in r.data.tags), None)
            if launched and parent is not None and parent.info.run_id != launched:
                # Resumed under `mlflow run`: this launch's run nests under the study's parent.
                client.set_tag(launched, "mlflow.parentRunId", parent.info.run_id)
            run_id = parent.info.run_id if parent is not None else launched
        elif launched and launched != run_id:
            client.set_tag(launched, "mlflow.parentRunId", run_id)
        if run_id is None:
            experiment = mlflow.set_experiment(self.experiment_name)
            run_id = client.create_run(experiment.experiment_id, run_name=study_name).info.run_id
        own = process_tags() if self.single_process else {}
        named = {**tags, **own, STUDY_TAG: study_name, "mlflow.runName": study_name}  # `mlflow run` named it at random
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in named.items()])
        client.update_run(run_id, status="RUNNING")
        # Trials become children in the parent's experiment (the study lives where it began).
        experiment_id = client.get_run(run_id).info.experiment_id
        describe_experiment(client, experiment_id)
        mlflow.set_experiment(experiment_id=experiment_id)
        return run_id

    def started(self, parent_id: str, space_file: str, tags: dict[str, str], leader: bool) -> None:
        with on_run(parent_id):
            mlflow.log_artifact(space_file, "space")
            mlflow.set_tags(tags)
            if leader:
                log_dataset(self.market, self.base)

    @contextlib.contextmanager
    def trial(self, parent_id: str, name: str, cfg: RunConfig, tags: dict[str, str]) -> Iterator[str]:
        """A trial's child run of ``parent_id``, yielding its id; tag ``trial_state``: complete, pruned (ends
        FINISHED), failed (FAILED, with ``reason``) or interrupted (KILLED)."""
        note = trial_text(name, tags["trial.values"], tags["objective"])
        run = mlflow.start_run(run_name=name, nested=True, parent_run_id=parent_id,
                               tags={**tags, **process_tags(), NOTE: note})
        mlflow.log_params(config_params(cfg, self.market.last_date))
        try:
            yield run.info.run_id
        except KeyboardInterrupt:
            mlflow.set_tag("trial_state", "interrupted")
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            raise
        except BaseException as exc:
            pruned = type(exc).__name__ == "TrialPruned"
            mlflow.set_tags({"trial_state": "pruned" if pruned else "failed",
                             "reason": f"{type(exc).__name__}: {exc}"[:500]})
            mlflow.end_run("FINISHED" if pruned else "FAILED")
            raise
        mlflow.set_tag("trial_state", "complete")
        mlflow.end_run()

    on_epoch = staticmethod(log_epoch)  # per-epoch losses of the running trial

    def trial_metrics(self, metrics: dict[str, float]) -> None:
        """The trial's metrics, and its objective's value before its name (the UI's list shows it)."""
        mlflow.log_metrics(metrics)
        run = mlflow.get_run(mlflow.active_run().info.run_id)
        objective = run.data.tags.get("objective", "")
        if objective in metrics:
            mlflow.set_tag("mlflow.runName", f"{metrics[objective]:.4f} · {run.info.run_name}")

    def finished(self, parent_id: str, best: TrainResult, best_values: dict, trials: pd.DataFrame,
                 summary: dict[str, float], figures: dict[str, Figure], texts: dict[str, str]) -> None:
        with on_run(parent_id, status_after="FINISHED"):
            mlflow.log_metrics(summary)
            for path, text in texts.items():
                mlflow.log_text(text, path)
            # Child runs still RUNNING once no trial can be running (their worker was killed): lost.
            client = mlflow.MlflowClient()
            lost = f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"
            for run in client.search_runs([client.get_run(parent_id).info.experiment_id], lost):
                client.set_tag(run.info.run_id, "trial_state", "lost")
                client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            for path, fig in figures.items():
                mlflow.log_figure(fig, path)
            mlflow.set_tags({f"best.{k}": number(v) for k, v in best_values.items()})  # a resumed study may change them
            # numeric best values also as metrics, so the runs table and charts can show and sort them
            mlflow.log_metrics({f"best/{k}": float(v) for k, v in best_values.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
            tags = mlflow.get_run(parent_id).data.tags
            log_result(best, self.market, tags.get("study_name"))
            mlflow.log_text(trials.to_csv(index=False), "trials.csv")
            objective = tags.get("objective", "val/mae_ratio")
            value = summary.get("search/best_value", best.metrics.get(objective, float("nan")))
            mlflow.set_tag(NOTE, study_text(tags.get("study_name", "?"), objective, value, best_values, best.metrics))

    def status(self, parent_id: str) -> str:
        return mlflow.MlflowClient().get_run(parent_id).info.status

    def ended(self, parent_id: str, status: str, error: str | None = None) -> None:
        client = mlflow.MlflowClient()
        if error:
            client.set_tag(parent_id, "error", error)
        client.set_terminated(parent_id, status)
