"""A search in MLflow: one parent run per study, one child run per trial (`SearchTracker`).

Several workers may log children to one parent at once, so the parent is never
held active: a worker makes it active only to log to it, then sets it back to RUNNING.
"""

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


def study_parent(study_name: str, tags: dict[str, str], experiment_name: str, run_id: str | None = None,
                 launched: str | None = None) -> str:
    """The study's parent run id, RUNNING but not left active in this process (several workers
    log children to it at once): ``run_id`` if given (a worker that found it through the study),
    else the run found by its study tag (a resumed study), else the run ``mlflow run`` created
    for us, else a new run."""
    client = mlflow.MlflowClient()
    if run_id is None:
        found = mlflow.search_runs(
            search_all_experiments=True,
            filter_string=f"tags.`{STUDY_TAG}` = '{study_name}'",
            order_by=["attributes.start_time ASC"],
            output_format="list",
        )
        parent = next((r for r in found if "mlflow.parentRunId" not in r.data.tags), None)
        if launched and parent is not None and parent.info.run_id != launched:
            # Resumed under `mlflow run`: this launch's run nests under the study's parent.
            client.set_tag(launched, "mlflow.parentRunId", parent.info.run_id)
        run_id = parent.info.run_id if parent is not None else launched
    elif launched and launched != run_id:
        client.set_tag(launched, "mlflow.parentRunId", run_id)
    if run_id is None:
        experiment = mlflow.set_experiment(experiment_name)
        run_id = client.create_run(experiment.experiment_id, run_name=study_name).info.run_id
    named = {**tags, STUDY_TAG: study_name, "mlflow.runName": study_name}  # `mlflow run` named it at random
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in named.items()])
    client.update_run(run_id, status="RUNNING")
    # Trials become children in the parent's experiment (the study lives where it began).
    experiment_id = client.get_run(run_id).info.experiment_id
    describe_experiment(client, experiment_id)
    mlflow.set_experiment(experiment_id=experiment_id)
    return run_id


@contextlib.contextmanager
def on_run(run_id: str, status_after: str | None = "RUNNING") -> Iterator[mlflow.ActiveRun]:
    """Make ``run_id`` the active run for a block; afterwards its status is ``status_after``
    (RUNNING: other workers may still be logging to it). An exception ends it FAILED (KILLED
    for Ctrl-C) only if ``status_after`` is not RUNNING."""
    run = mlflow.start_run(run_id=run_id)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED) if status_after != "RUNNING" else "RUNNING")
        raise
    except BaseException:
        mlflow.end_run("FAILED" if status_after != "RUNNING" else "RUNNING")
        raise
    mlflow.end_run(status_after or "FINISHED")


@contextlib.contextmanager
def trial_run(parent_id: str, name: str, cfg: RunConfig, tags: dict[str, str], last_day: str) -> Iterator[str]:
    """A child run of ``parent_id`` for one trial, yielding its id; its tag ``trial_state`` says complete,
    pruned, failed (with ``error``) or interrupted. Pruned trials end FINISHED, failed ones
    FAILED, interrupted ones KILLED; ``last_day``: the data's (what an open ``end_date`` means)."""
    note = {NOTE: trial_text(name, tags["trial.values"], tags.get("objective", ""))} if "trial.values" in tags else {}
    run = mlflow.start_run(run_name=name, nested=True, parent_run_id=parent_id,
                           tags={**tags, **process_tags(), **note})
    mlflow.log_params(config_params(cfg, last_day))
    try:
        yield run.info.run_id
    except KeyboardInterrupt:
        mlflow.set_tag("trial_state", "interrupted")
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as exc:
        pruned = type(exc).__name__ == "TrialPruned"
        mlflow.set_tags({"trial_state": "pruned" if pruned else "failed", "reason": f"{type(exc).__name__}: {exc}"[:500]})
        mlflow.end_run("FINISHED" if pruned else "FAILED")
        raise
    mlflow.set_tag("trial_state", "complete")
    mlflow.end_run()


def close_lost_trials(parent_id: str) -> int:
    """Child runs of ``parent_id`` still RUNNING once no trial of the study can be running (their
    worker was killed): ended KILLED with ``trial_state`` lost. Returns how many."""
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_id)
    lost = client.search_runs([parent.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'")
    for run in lost:
        client.set_tag(run.info.run_id, "trial_state", "lost")
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
    return len(lost)


class MlflowSearchTracker:
    """The `cryptolstm.search.tracker.SearchTracker` of MLflow, for a study on ``market``.

    ``experiment_name``: where a new parent run goes; ``launched``: the run ``mlflow run``
    made for this command (it becomes, or nests under, the study's parent).
    """

    def __init__(self, market: Market, base: RunConfig, experiment_name: str, launched: str | None = None,
                 single_process: bool = True):
        self.market, self.base, self.experiment_name, self.launched = market, base, experiment_name, launched
        self.single_process = single_process

    def parent(self, study_name: str, tags: dict[str, str], run_id: str | None = None) -> str:
        """The study's parent; a single-process study's parent is tied to this process (the reaper
        ends it if the process dies), a shared study's is not: other workers may still log to it."""
        own = process_tags() if self.single_process else {}
        return study_parent(study_name, {**tags, **own}, self.experiment_name, run_id, self.launched)

    def started(self, parent_id: str, space_file: str, tags: dict[str, str], leader: bool) -> None:
        with on_run(parent_id):
            mlflow.log_artifact(space_file, "space")
            mlflow.set_tags(tags)
            if leader:
                log_dataset(self.market, self.base)

    def trial(self, parent_id: str, name: str, cfg: RunConfig, tags: dict[str, str]):
        return trial_run(parent_id, name, cfg, tags, self.market.last_date)

    def on_epoch(self, epoch: int, logs: dict) -> None:
        log_epoch(epoch, logs)

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
            close_lost_trials(parent_id)
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
