"""What every tracked run shares: its scope and name, params, data, record, model."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities import RunStatus

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.errors import error_tag
from cryptolstm.processes import interrupt_after
from cryptolstm.render import NOTE, run_name
from cryptolstm.tracking.describe import describe_experiment
from cryptolstm.tracking.store import process_tags, use_tracking_uri

if TYPE_CHECKING:
    from cryptolstm.outputs import RunRecord
    from cryptolstm.packaging import Package
    from cryptolstm.train import TrainResult

log = logging.getLogger(__name__)

UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
SEALED_FROM = "sealed_from"  # the tag of a run (and a model version) whose data stopped before a sealed period


def coin_experiment(coin: str) -> str:
    """One experiment per coin, so the UI compares like with like: ``cryptolstm-btc``."""
    return f"cryptolstm-{coin.lower()}"


def ui_url(experiment_id: str, run_id: str | None = None, server: str = UI) -> str:
    """The UI page of an experiment's runs, or of one run (MLflow 3's routes)."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")


def where(run_id: str, uri: str) -> str:
    """One line: the run's experiment, its id, and the run's page in the UI (the server's own when
    ``uri`` is an MLflow server; else what `mlflow ui` would serve)."""
    experiment_id = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    name = mlflow.MlflowClient().get_experiment(experiment_id).name
    if uri.startswith(("http://", "https://")):
        return f"experiment {name} (id {experiment_id}): {ui_url(experiment_id, run_id, uri)}"
    return (f"experiment {name} (id {experiment_id}); to look: mlflow ui --backend-store-uri {uri}, "
            f"then {ui_url(experiment_id, run_id)}")


def config_params(cfg: RunConfig, data_last: str) -> dict[str, str]:
    """The config's values used as params ``config.<name>`` (``data_last`` for an open ``end_date``, no
    ``sealed_from`` without a seal: no param is blank or "None"); under ``mlflow run`` the plain names
    already hold what ``-P`` gave, and MLflow params cannot change."""
    used = {k: data_last if k == "end_date" and v is None else v for k, v in cfg.to_dict().items()}
    return {f"config.{k}": str(v) for k, v in used.items() if v is not None}


EPOCH_METRICS = {"loss": "train/loss", "val_loss": "val/loss", "mae": "train/epoch_mae", "val_mae": "val/epoch_mae"}


def log_epoch(epoch: int, logs: dict) -> None:
    """An ``on_epoch`` hook: ``train/loss`` and ``val/loss`` (and MAEs in return units) of the active run;
    an ensemble's further members' as ``member<k>/val/loss``... (a Ctrl-C meanwhile waits for the write)."""
    prefix = f"member{logs['member']}/" if logs.get("member") else ""
    with interrupt_after():
        mlflow.log_metrics({prefix + EPOCH_METRICS[k]: float(v) for k, v in logs.items() if k in EPOCH_METRICS},
                           step=epoch)


@contextlib.contextmanager
def run_scope(cfg: RunConfig, experiment_name: str | None, name: str | None = None,
              launched: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Start the run (or resume ``launched``, the one ``mlflow run`` made) and end it FINISHED, KILLED
    (Ctrl-C) or FAILED (any other exception): no run is left RUNNING."""
    if launched:  # `mlflow run` gave it a random name: name it as `cryptolstm train` would
        run = mlflow.start_run(run_id=launched)
        mlflow.set_tag("mlflow.runName", name or run_name(cfg))
    else:
        mlflow.set_experiment(experiment_name or coin_experiment(cfg.coin))
        run = mlflow.start_run(run_name=name or run_name(cfg))
    mlflow.set_tags(process_tags())
    describe_experiment(mlflow.MlflowClient(), run.info.experiment_id)
    try:
        yield run
    except BaseException as exc:
        end_failed(exc)
        raise
    mlflow.end_run()


def end_failed(exc: BaseException) -> None:
    """End the active run KILLED (Ctrl-C, SIGTERM) or FAILED with the reason as its ``error`` tag.
    If even that cannot be written (a full disk), the run is left to the reaper of the next command."""
    killed = isinstance(exc, KeyboardInterrupt)
    try:
        run = mlflow.active_run()
        if not killed:  # the sentence the user saw, not a raw "[Errno 28] ..." from deep below
            mlflow.set_tags({"error": error_tag(exc), NOTE: f"Failed: {error_tag(exc)}",
                             "mlflow.runName": f"failed · {run.info.run_name}" if run else "failed"})
        else:
            mlflow.set_tags({NOTE: "Interrupted (Ctrl-C or kill): ended KILLED.",
                             "mlflow.runName": f"interrupted · {run.info.run_name}" if run else "interrupted"})
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED if killed else RunStatus.FAILED))
    except Exception as again:  # noqa: BLE001 - the first error is the one to report
        log.warning("the run could not be ended (%s); the next command marks it KILLED", again)


def write_record(made: RunRecord) -> None:
    """A run's record (`cryptolstm.outputs.RunRecord`) on the active run: params, tags, metrics, texts, figures."""
    mlflow.log_params(made.params)
    mlflow.set_tags(made.tags)
    mlflow.log_metrics(made.metrics)
    for path, text in made.texts.items():
        mlflow.log_text(text, path)
    for path, fig in made.figures.items():
        mlflow.log_figure(fig, path)


def log_dataset(market: Market, cfg: RunConfig) -> None:
    """Log the merged prices as an MLflow dataset (source: the snapshot's directory), with each file's
    sha256 and path, the snapshot id, the date range (what `data verify` checks) and any seal as tags."""
    frame = market.frame.reset_index()
    source = str(Path(next(iter(market.files.values()))[0]).parent)
    snapshot = market.snapshot.id if market.snapshot is not None else ""
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": it is a local path
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=source, name=f"usd-daily{'@' + snapshot if snapshot else ''}")
    file_tags = {f"sha256.{coin.lower()}": digest for coin, (_, digest) in market.files.items()}
    dates = {"first_date": market.first_date, "last_date": market.last_date, "rows": str(len(frame))}
    mlflow.log_input(dataset, context="training", tags={**dates, "snapshot": snapshot, **file_tags})
    mlflow.set_tags({
        "data.digest": dataset.digest,
        "data.dir": str(Path(cfg.data_dir).resolve()),
        "data.snapshot": snapshot,
        **{f"data.{key}": value for key, value in (dates | file_tags).items()},
        **{f"data.file.{coin.lower()}": path for coin, (path, _) in market.files.items()},
        **({SEALED_FROM: market.sealed_from} if market.sealed_from else {}),
    })


PYFUNC = "model"  # the logged model's name in its run


def log_model(made: Package, result: TrainResult) -> None:
    """The packaged model as an MLflow pyfunc under ``model`` (raw daily rows in, USD closes out), and
    each Keras model as ``keras/lstm.keras`` (``lstm-1.keras``...: an ensemble's): what a warm start reads."""
    from mlflow.types import ColSpec, Schema

    from cryptolstm.pyfunc import PARAMS, LstmForecaster, forecast, load_forecaster

    with warnings.catch_warnings():  # "integer column" hint: `horizon` is never missing
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        output = forecast(load_forecaster(made.artifacts), made.example)
        signature = mlflow.models.infer_signature(made.example, output, params=PARAMS)
    # Every input column optional: MLflow's own check of a missing one answers with the whole input
    # frame; the model's says which columns it needs in one sentence (`cryptolstm.rows.prepare_rows`).
    signature.inputs = Schema([ColSpec(c.type, c.name, required=False) for c in signature.inputs.inputs])
    info = mlflow.pyfunc.log_model(name=PYFUNC, python_model=LstmForecaster(), artifacts=made.artifacts,
                                   code_paths=[str(Path(__file__).resolve().parents[1])],  # the cryptolstm package
                                   signature=signature, input_example=made.example, pip_requirements=made.requirements)
    for k, member in enumerate(result.forecaster.members):
        path = made.folder / ("lstm.keras" if k == 0 else f"lstm-{k}.keras")
        member.model.save(path)
        mlflow.log_artifact(str(path), "keras")  # for Keras users: not copied on every load of the model
    mlflow.set_tag("model_uri", info.model_uri)  # MLflow 3 keeps logged models apart from run artifacts


def tag_error(run_id: str, message: str) -> None:
    """Say in ``run_id`` (the run ``mlflow run`` made) why its entry point's command (main: train) failed."""
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
        entry = run.data.tags.get("mlflow.project.entryPoint", "")
        command = {"main": "train"}.get(entry, entry) or "command"
        client.set_tag(run_id, "error", message)
        client.set_tag(run_id, NOTE, f"`cryptolstm {command}` failed before it trained or logged anything: {message}")
        client.set_tag(run_id, "mlflow.runName", f"failed · {command}")
        describe_experiment(client, run.info.experiment_id)
    except Exception:  # noqa: BLE001 - the sentence on stderr is what matters
        pass


def verify_run_data(run_id: str, data_dir: str | None, tracking_uri: str | None):
    """`cryptolstm.data.verify.verify` of run ``run_id`` against ``data_dir`` (default: the one it read)."""
    from cryptolstm.data.verify import verify
    from cryptolstm.errors import CryptoLstmError

    use_tracking_uri(tracking_uri, read_only=True)
    try:
        found = mlflow.MlflowClient().get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - an unknown run id
        raise CryptoLstmError(f"cannot read run {run_id}: {str(exc).splitlines()[0][:200]}") from None
    directory = data_dir or found.data.tags.get("data.dir") or found.data.params.get("config.data_dir")
    if not directory:
        raise CryptoLstmError(f"run {run_id} does not say which data directory it read; pass --data-dir.")
    return verify(run_id, found.data.tags, directory)
