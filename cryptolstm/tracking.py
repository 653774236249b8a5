"""The MLflow boundary: runs, params, per-epoch metrics, datasets, figures, models.

Everything the package writes to MLflow goes through here, so the rest of the
library stays testable without a tracking store.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.entities import RunStatus

from cryptolstm import plots
from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.train import TrainResult, train

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def use_tracking_uri(uri: str | None) -> str:
    """Point MLflow at ``uri`` (default: ``sqlite:///mlflow.db`` in the working directory)."""
    uri = uri or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    return uri


def default_experiment_name(cfg: RunConfig) -> str:
    """One experiment per coin, so the UI compares like with like."""
    return f"cryptolstm-{cfg.coin.lower()}"


def run_name(cfg: RunConfig) -> str:
    """A name that tells runs apart in the UI's run list."""
    return (
        f"{cfg.coin}-{cfg.protocol}-w{cfg.window_len}-{cfg.layers}x{cfg.neurons}"
        f"-d{cfg.dropout:g}-b{cfg.batch_size}-s{cfg.seed}"
    )


def config_params(cfg: RunConfig) -> dict[str, str]:
    """The effective config as params ``config.<name>``.

    Under ``mlflow run`` the plain names already hold what was requested with
    ``-P`` (empty = "take the experiment file's value"), and MLflow params cannot
    change, so the values actually used live under their own prefix.
    """
    return {f"config.{k}": "" if v is None else str(v) for k, v in cfg.to_dict().items()}


class EpochLogger(keras.callbacks.Callback):
    """Logs ``train/loss`` and ``val/loss`` (and MAEs in return units) after each epoch."""

    NAMES = {"loss": "train/loss", "val_loss": "val/loss", "mae": "train/epoch_mae", "val_mae": "val/epoch_mae"}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        metrics = {self.NAMES[k]: float(v) for k, v in logs.items() if k in self.NAMES}
        mlflow.log_metrics(metrics, step=epoch)


@contextlib.contextmanager
def run_scope(cfg: RunConfig, experiment_name: str | None, name: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Start (or, under ``mlflow run``, resume) the run and end it with the right status.

    Ctrl-C ends the run KILLED and any other exception FAILED, so no run is
    left RUNNING.
    """
    if not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(experiment_name or default_experiment_name(cfg))
    run = mlflow.start_run(run_name=None if os.environ.get("MLFLOW_RUN_ID") else (name or run_name(cfg)))
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    mlflow.end_run()


def log_dataset(market: Market, cfg: RunConfig) -> None:
    """Log the merged prices as an MLflow dataset (source: the snapshot's directory), with each
    file's sha256 and path, the snapshot id and the date range as tags (what `data verify` checks)."""
    frame = market.frame.reset_index()
    source = str(Path(next(iter(market.files.values()))[0]).parent)
    snapshot = market.snapshot.id if market.snapshot is not None else ""
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": it is a local path
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=source, name=f"usd-daily{'@' + snapshot if snapshot else ''}")
    file_tags = {f"sha256.{coin.lower()}": digest for coin, (_, digest) in market.files.items()}
    mlflow.log_input(
        dataset,
        context="training",
        tags={"first_date": market.first_date, "last_date": market.last_date, "rows": str(len(frame)),
              "snapshot": snapshot, **file_tags},
    )
    mlflow.set_tags(
        {
            "data.digest": dataset.digest,
            "data.dir": str(Path(cfg.data_dir).resolve()),
            "data.snapshot": snapshot,
            "data.first_date": market.first_date,
            "data.last_date": market.last_date,
            "data.rows": str(len(frame)),
            **{f"data.{key}": digest for key, digest in file_tags.items()},
            **{f"data.file.{coin.lower()}": path for coin, (path, _) in market.files.items()},
        }
    )


def log_split_ranges(result: TrainResult) -> None:
    """Tags with each split's first and last target day and sample count."""
    tags = {}
    for name, samples in result.splits.items():
        dates = np.datetime_as_string(samples.dates, unit="D")
        tags.update({f"split.{name}.first": dates[0], f"split.{name}.last": dates[-1], f"split.{name}.n": str(len(dates))})
    mlflow.set_tags(tags)


def log_figures(market: Market, result: TrainResult) -> None:
    """Price/volume history, forecast vs actual on the evaluation days, learning curves (PNG)."""
    cfg = result.config
    figures = {
        f"plots/{cfg.coin.lower()}_price_volume.png": plots.price_volume(market.frame, cfg.coin),
        "plots/learning_curves.png": plots.learning_curves(result.history, result.best_epoch),
    }
    for split in ("val", "test"):
        samples = getattr(result.splits, split)
        if samples is not None:
            figures[f"plots/forecast_{split}.png"] = plots.forecast_vs_actual(
                samples, result.predictions[split], cfg.coin, split
            )
    for path, fig in figures.items():
        mlflow.log_figure(fig, path)


RUNTIME_PACKAGES = ("keras", "tensorflow-cpu", "tensorflow", "mlflow", "pandas", "numpy", "pandera", "pyyaml")


def _runtime_requirements() -> list[str]:
    """Pinned requirements of the logged model, read from what is installed here (given, not
    inferred: inference starts a subprocess that loads the model again)."""
    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def log_model(result: TrainResult, market: Market) -> None:
    """The forecaster as an MLflow pyfunc under ``model``: raw daily rows in, next-day close in USD
    out. The Keras model and the config are its artifacts; the package travels with it."""
    from cryptolstm.forecaster import LstmForecaster, example_rows, forecast

    cfg = result.config
    example = example_rows(market.frame, cfg.window_len)
    with tempfile.TemporaryDirectory() as tmp:
        keras_path, config_path = Path(tmp) / "lstm.keras", Path(tmp) / "config.json"
        result.model.save(keras_path)
        config_path.write_text(json.dumps(cfg.to_dict()))
        signature = mlflow.models.infer_signature(example, forecast(result.model, example, cfg))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=LstmForecaster(),
            artifacts={"keras_model": str(keras_path), "config": str(config_path)},
            code_paths=[str(Path(__file__).resolve().parent)],
            signature=signature,
            input_example=example,
            pip_requirements=_runtime_requirements(),
        )
    mlflow.set_tag("model_uri", info.model_uri)  # MLflow 3 keeps logged models apart from run artifacts


def tracked_train(
    cfg: RunConfig,
    market: Market,
    experiment_file: str | None = None,
    experiment_name: str | None = None,
    progress: bool = False,
) -> tuple[str, TrainResult]:
    """Train ``cfg`` on ``market`` inside one MLflow run; returns (run id, result)."""
    with run_scope(cfg, experiment_name) as run:
        mlflow.set_tags({"coin": cfg.coin, "protocol": cfg.protocol, "cryptolstm.entry": "train"})
        mlflow.log_params(config_params(cfg))
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        if experiment_file:
            mlflow.log_artifact(experiment_file, "experiment")
            mlflow.set_tag("experiment_file", str(experiment_file))
        log_dataset(market, cfg)
        callbacks: list[keras.callbacks.Callback] = [EpochLogger()]
        if progress:
            from tqdm.keras import TqdmCallback

            callbacks.append(TqdmCallback(epochs=cfg.epochs, verbose=0, desc=f"{cfg.coin} epochs"))
        result = train(cfg, market, callbacks)
        log_split_ranges(result)
        mlflow.log_metrics(result.metrics)
        mlflow.log_metrics({"best_epoch": result.best_epoch + 1, "epochs_run": result.epochs_run})
        log_figures(market, result)
        log_model(result, market)
        return run.info.run_id, result


# --- searches: a parent run per study, a child run per trial ------------------------------

STUDY_TAG = "cryptolstm.study"


def study_parent(study_name: str, tags: dict[str, str], experiment_name: str, run_id: str | None = None) -> str:
    """The study's parent run id, RUNNING but not left active in this process (several workers
    log children to it at once): ``run_id`` if given (a worker that found it through the study),
    else the run found by its study tag (a resumed study), else the run ``mlflow run`` created
    for us, else a new run."""
    client = mlflow.MlflowClient()
    launched = os.environ.get("MLFLOW_RUN_ID")
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
    # MLflow resumes MLFLOW_RUN_ID in *every* start_run without a run id, which would put the
    # first trial into this run; the launch's run id has been used, so it is dropped here.
    os.environ.pop("MLFLOW_RUN_ID", None)
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in {**tags, STUDY_TAG: study_name}.items()])
    client.update_run(run_id, status="RUNNING")
    # Trials become children in the parent's experiment (the study lives where it began).
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
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


def end_study_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the study's parent run FINISHED, FAILED or KILLED."""
    mlflow.MlflowClient().set_terminated(run_id, status)


@contextlib.contextmanager
def trial_run(parent_id: str, name: str, cfg: RunConfig, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
    """A child run of ``parent_id`` for one trial; its tag ``trial_state`` says complete,
    pruned, failed (with ``error``) or interrupted. Pruned trials end FINISHED, failed ones
    FAILED, interrupted ones KILLED."""
    run = mlflow.start_run(run_name=name, nested=True, parent_run_id=parent_id, tags=tags)
    mlflow.log_params(config_params(cfg))
    try:
        yield run
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
