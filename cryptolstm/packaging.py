"""A trained model packaged for the registry's pyfunc (`cryptolstm.pyfunc`): the files it is
made of, checked, and the packages it needs. No MLflow here: the tracking layer logs the package.

A package is a folder of artifacts: each network exported to ONNX (checked against Keras on
validation windows; the .keras file instead where the export fails), the run config, what the
features fitted on training days, the intervals' calibration, and ``training.json`` (the days the
model trained and validated on, and the data it read), so that a loaded model knows what is new to it.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryptolstm.data import Market
from cryptolstm.train import TrainResult
from cryptolstm import features
from cryptolstm.config import COINS
from cryptolstm.windowing import input_rows, min_rows

log = logging.getLogger(__name__)

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # a write the disk refused: an error, never a fallback
ONNX_TOLERANCE = 1e-6  # largest difference of a raw output (a return or a scale) allowed between ONNX Runtime and Keras
PYFUNC_PACKAGES = ("onnxruntime", "mlflow", "pandas", "numpy", "pyyaml")  # what the pyfunc imports
KERAS_PACKAGES = ("keras", "tensorflow-cpu", "tensorflow")  # and without its ONNX artifact


def network_artifact(kind: str, member: int) -> str:
    """The artifact name of ensemble member ``member``'s network of ``kind`` (``onnx_model``,
    ``keras_model``): the first member's has no number (a single model's, as before ensembles)."""
    return kind if member == 0 else f"{kind}_{member}"


def export_onnx(model, path: str, windows: np.ndarray) -> str | None:
    """Save the Keras ``model`` as an ONNX file at ``path`` (Keras' exporter, tf2onnx underneath)
    and check that ONNX Runtime's outputs on the (n, w, f) ``windows`` equal Keras' within
    ``ONNX_TOLERANCE``. Returns None when it is saved and equal, else why not (the file is then
    removed: the model is used through Keras). A disk that refuses the file (full, or over a size
    limit) raises its OSError: a Keras file would not fit either."""
    from cryptolstm.models.network import onnx_network

    try:
        with warnings.catch_warnings():  # tf2onnx's NumPy deprecation notices
            warnings.simplefilter("ignore")
            model.export(path, format="onnx", verbose=False)
        expected = np.asarray(model(windows, training=False), dtype=np.float64)
        got = np.asarray(onnx_network(path)(windows), dtype=np.float64).reshape(expected.shape)
        gap = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        problem = None if gap <= ONNX_TOLERANCE else (f"ONNX Runtime's outputs differ from Keras' by {gap:.2g} "
                                                       f"(more than {ONNX_TOLERANCE:g})")
    except Exception as exc:  # noqa: BLE001 - any exporter failure: the model is used through Keras
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:  # a Keras file would not fit either
            with contextlib.suppress(OSError):
                Path(path).unlink(missing_ok=True)
            raise
        problem = f"ONNX export failed: {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}"
    if problem is not None:
        with contextlib.suppress(OSError):
            Path(path).unlink(missing_ok=True)
    return problem


def runtime_requirements(keras: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """Pinned requirements of the packaged model, read from what is installed here (given, not
    inferred: inference starts a subprocess that loads the model again); Keras and TensorFlow
    only for a model saved without its ONNX network (``keras``)."""
    pins = []
    for name in dict.fromkeys(PYFUNC_PACKAGES + (KERAS_PACKAGES if keras else ()) + extra):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins.append(f"{name}=={importlib.metadata.version(name)}")
    return pins


def training_record(result: TrainResult, market: Market) -> dict:
    """What ``training.json`` says: each period's first and last day, the data the model was trained
    with (first and last day, files' sha256) and its prices: every raw column the model reads, day by
    day (10 significant digits), so that new data can be checked against them on the days they share."""
    periods = {name: {"first": p.first.date().isoformat(), "last": p.last.date().isoformat()}
               for name, p in result.periods.items()}
    cfg = result.config
    read = market.frame[features.required(cfg.feature_names, COINS, cfg.coin)]
    return {"periods": periods,
            "data": {"first_date": market.first_date, "last_date": market.last_date, "rows": len(market.frame),
                     "sha256": {coin: digest for coin, (_, digest) in market.files.items()}},
            "prices": {"first_date": market.first_date,
                       "columns": {c: [float(f"{v:.10g}") for v in read[c].to_numpy()] for c in read.columns}}}


@dataclass
class Package:
    """A packaged model in ``folder``: ``artifacts`` (name -> file), an ``example`` of its input rows,
    its ``requirements``, and ``problems`` (why a network is saved for Keras only)."""

    folder: Path
    artifacts: dict[str, str] = field(default_factory=dict)
    example: pd.DataFrame | None = None
    requirements: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _keras_models(result: TrainResult) -> list:
    """The trained Keras model of each ensemble member (one for a single model)."""
    return [m.model for m in result.forecaster.members]


def _write(folder: Path, name: str, values) -> str:
    path = folder / name
    path.write_text(json.dumps(values))
    return str(path)


def package(result: TrainResult, market: Market, folder: str | Path) -> Package:
    """Write the model of ``result`` into ``folder`` as the pyfunc's artifacts (module docstring)."""
    cfg, net = result.config, result.forecaster
    made = Package(Path(folder))
    made.artifacts["config"] = _write(made.folder, "config.json", cfg.to_dict())
    made.artifacts["training"] = _write(made.folder, "training.json", training_record(result, market))
    if net.calibration is not None:  # the intervals' conformal margins travel with the model
        made.artifacts["calibration"] = _write(made.folder, "calibration.json", net.calibration.to_dict())
    if net.state:  # what the features fitted on training days
        made.artifacts["features"] = _write(made.folder, "features.json", net.state)
    windows = net.windows(result.splits.val.take(slice(0, 64)), _history(result, market))
    for k, model in enumerate(_keras_models(result)):
        onnx = str(made.folder / f"lstm-{k}.onnx")
        problem = export_onnx(model, onnx, windows)
        if problem is None:
            made.artifacts[network_artifact("onnx_model", k)] = onnx
            continue
        log.warning("the model is saved for Keras only (slower to load and to forecast): %s", problem)
        made.problems.append(problem)
        keras_path = made.folder / f"lstm-{k}.keras"
        model.save(keras_path)
        made.artifacts[network_artifact("keras_model", k)] = str(keras_path)
    extra = cfg.head_spec.packages + tuple(p for name in cfg.feature_names for p in features.FEATURES[name].packages)
    made.requirements = runtime_requirements(keras=bool(made.problems), extra=extra)
    made.example = input_rows(market.frame.tail(min_rows(cfg)), cfg)
    return made


def _history(result: TrainResult, market: Market):
    from cryptolstm.models.base import History

    return History(market.frame, result.config.coin)
