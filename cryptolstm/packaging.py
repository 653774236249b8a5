"""A trained model packaged for the registry's pyfunc (`cryptolstm.pyfunc`): its artifacts (each network
in ONNX, checked against Keras, the config, features' state, calibration, ``training.json``) and the
packages it needs. No MLflow here: the tracking layer logs the package."""

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


def export_onnx(model, path: str, windows: np.ndarray) -> str | None:
    """Save the Keras ``model`` as ONNX at ``path`` and check ONNX Runtime's outputs on the (n, w, f)
    ``windows`` against Keras'; None when saved and equal, else why not (the file is removed). A full
    disk raises its OSError."""
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


def training_record(result: TrainResult, market: Market) -> dict:
    """What ``training.json`` says: each period's first and last day, the data (days, files' sha256) and
    every raw column the model read, day by day (10 significant digits), to check new data against."""
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


def package(result: TrainResult, market: Market, folder: str | Path) -> Package:
    """Write the model of ``result`` into ``folder`` as the pyfunc's artifacts."""
    from cryptolstm.models.base import History

    cfg, net = result.config, result.forecaster
    made = Package(Path(folder))
    records = {"config": cfg.to_dict(), "training": training_record(result, market),
               "calibration": net.calibration and net.calibration.to_dict(),  # the intervals' conformal margins
               "features": net.state}  # what the features fitted on training days
    for name, values in records.items():
        if values:  # no calibration without intervals, no state without fitted features
            (made.folder / f"{name}.json").write_text(json.dumps(values))
            made.artifacts[name] = str(made.folder / f"{name}.json")
    windows = net.windows(result.splits.val.take(slice(0, 64)), History(market.frame, cfg.coin))
    for k, member in enumerate(net.members):
        suffix = f"_{k}" if k else ""  # the first member's artifacts have no number (a single model's)
        path = made.folder / f"lstm-{k}.onnx"
        problem = export_onnx(member.model, str(path), windows)
        if problem is not None:
            log.warning("the model is saved for Keras only (slower to load and to forecast): %s", problem)
            made.problems.append(problem)
            path = path.with_suffix(".keras")
            member.model.save(path)
        made.artifacts[f"{'keras' if problem else 'onnx'}_model{suffix}"] = str(path)
    extra = cfg.head_spec.packages + tuple(p for name in cfg.feature_names for p in features.FEATURES[name].packages)
    # pinned to what is installed here, not inferred (MLflow's inference would load the model again in a subprocess)
    for name in dict.fromkeys(PYFUNC_PACKAGES + (KERAS_PACKAGES if made.problems else ()) + extra):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            made.requirements.append(f"{name}=={importlib.metadata.version(name)}")
    made.example = input_rows(market.frame.tail(min_rows(cfg)), cfg)
    return made
