"""The run ``mlflow run`` made for a command that trains nothing (register, predict, report), made the
record of what it did. MLflow cannot move a run, so one launched in Default is copied into the coin's
experiment and left there as ``<record>-launch`` (``mlflow run`` ends it: a deleted run cannot be ended)."""

from __future__ import annotations

import time

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from cryptolstm.render import NOTE
from cryptolstm.tracking.describe import describe_experiment
from cryptolstm.tracking.runs import coin_experiment
from cryptolstm.tracking.store import process_tags

DEFAULT_EXPERIMENT_ID = "0"


def record(launched: str, experiment_name: str, name: str, note: str, tags: dict[str, str],
           metrics: dict[str, float] | None = None, files: dict[str, str] | None = None) -> str:
    """Make ``launched`` the record ``name`` of a command, with ``note`` as its description, ``tags``,
    ``metrics`` and ``files`` (path -> text); returns the record's run id."""
    client = MlflowClient()
    target = command_run(launched, experiment_name)
    now = int(time.time() * 1000)
    client.log_batch(target, metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                     tags=[RunTag(k, str(v)) for k, v in {**tags, NOTE: note, "mlflow.runName": name}.items()])
    for path, text in (files or {}).items():
        client.log_text(target, text, path)
    finish(target, launched)
    return target


def command_run(launched: str | None, experiment_name: str) -> str:
    """The run a command records itself in (end it with `finish`): ``launched`` (a copy in
    ``experiment_name`` when it is in Default), else a new run in ``experiment_name`` tied to this process."""
    client = MlflowClient()
    if launched:
        run, target = client.get_run(launched), launched
        if run.info.experiment_id == DEFAULT_EXPERIMENT_ID and experiment_name != "Default":  # copied over
            experiment_id = mlflow.set_experiment(experiment_name).experiment_id
            tags = {k: v for k, v in run.data.tags.items() if k != "mlflow.runName"} | process_tags()
            target = client.create_run(experiment_id, tags=tags).info.run_id
            client.log_batch(target, params=[Param(k, v) for k, v in run.data.params.items()])
    else:
        experiment_id = mlflow.set_experiment(experiment_name).experiment_id
        target = client.create_run(experiment_id, tags=process_tags()).info.run_id
    describe_experiment(client, client.get_run(target).info.experiment_id)
    return target


def finish(target: str, launched: str | None, error: str | None = None, killed: bool = False) -> None:
    """End a `command_run` ``target`` FINISHED, KILLED (``killed``) or FAILED with ``error`` as its tag;
    a launched run that was copied is renamed and points at the record (``mlflow run`` ends it)."""
    client = MlflowClient()
    if error is not None and not killed:
        client.set_tag(target, "error", error[:500])
    if target != launched:
        client.set_terminated(target, "KILLED" if killed else "FAILED" if error is not None else "FINISHED")
    if launched and target != launched:
        record = client.get_run(target)
        where = client.get_experiment(record.info.experiment_id).name
        client.log_batch(launched, tags=[
            RunTag("mlflow.runName", f"{record.info.run_name}-launch"), RunTag("cryptolstm.record_run", target),
            RunTag(NOTE, f"`mlflow run` made this run in the Default experiment before the command started; MLflow "
                         f"cannot move a run, so the command's record is run {target} in experiment {where}.")])


def record_register(launched: str, registration, coin: str, experiment_name: str | None, line: str) -> str:
    """The record of `cryptolstm register` of a `cryptolstm.registry.Registration` (``line``: what was printed)."""
    version = MlflowClient().get_model_version(registration.name, registration.version)
    tags = {"cryptolstm.entry": "register", "coin": coin.upper(), "registered.model": registration.name,
            "registered.version": registration.version, "registered.champion": str(registration.promoted).lower(),
            "registered.added": str(registration.added).lower(), "registered.reason": registration.reason[:5000],
            "registered.source_run": version.tags.get("source_run", version.run_id or "")}
    return record(launched, experiment_name or coin_experiment(coin), f"register-{coin.lower()}", line, tags,
                  {"registered/mae_ratio": registration.ratio})


def record_predict(launched: str, forecast: pd.DataFrame, coin: str, label: str, line: str) -> str:
    """The record of `cryptolstm predict`: the forecast as metrics and ``forecast.csv``."""
    row = forecast.iloc[0]
    metrics = {k: float(row[k]) for k in ("forecast_close", "forecast_return", "last_close") if k in row}
    if len(forecast) > 1:  # a model of several days: each day's forecast too
        metrics |= {f"h{int(r['horizon'])}/forecast_close": float(r["forecast_close"]) for _, r in forecast.iterrows()}
    tags = {"cryptolstm.entry": "predict", "coin": coin.upper(), "model": label, "forecast.date": str(row["date"])}
    return record(launched, coin_experiment(coin), f"predict-{coin.lower()}", line, tags, metrics,
                  {"forecast.csv": forecast.to_csv(index=False)})


def record_report(launched: str, experiment_name: str, text: str, page: str | None = None) -> str:
    """The record of `cryptolstm report` in the experiment reported on: ``report.md``, ``results.html``."""
    tags = {"cryptolstm.entry": "report", "report.experiment": experiment_name}
    files = {"report.md": text} | ({"results.html": page} if page else {})
    return record(launched, experiment_name, f"report-{experiment_name}",
                  f"The report of experiment {experiment_name}: {', '.join(files)}.", tags, files=files)
