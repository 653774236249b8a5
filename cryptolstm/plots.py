"""Figures as `matplotlib.figure.Figure` objects (no pyplot state, never shown)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from cryptolstm.windowing import WindowSet


def _date_axis(ax) -> None:
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def price_volume(frame: pd.DataFrame, coin: str) -> Figure:
    """Daily close (USD, log scale) above daily volume (USD bn) for ``coin``."""
    fig = Figure(figsize=(10, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(frame.index, frame[f"{coin}_close"], lw=1)
    top.set_yscale("log")
    top.set_ylabel("close (USD)")
    top.set_title(f"{coin} daily close and volume, {frame.index[0]:%Y-%m-%d} to {frame.index[-1]:%Y-%m-%d}")
    bottom.bar(frame.index, frame[f"{coin}_volume"] / 1e9, width=1.0)
    bottom.set_ylabel("volume (USD bn)")
    _date_axis(bottom)
    return fig


def forecast_vs_actual(samples: WindowSet, pred_return: np.ndarray, coin: str, split: str) -> Figure:
    """Actual close, model forecast and persistence (USD) on ``split``'s target days."""
    fig = Figure(figsize=(12, 5), layout="constrained")
    ax = fig.subplots()
    dates = pd.to_datetime(samples.dates)
    ax.plot(dates, samples.target_close, label="actual", lw=1.5, color="black")
    ax.plot(dates, samples.ref_close * (1.0 + pred_return), label="LSTM", lw=1)
    ax.plot(dates, samples.last_close(), label="persistence", lw=1, ls="--")
    ax.set_ylabel("close (USD)")
    ax.set_title(f"{coin} forecast vs actual on the {split} days ({len(samples)} days)")
    ax.legend()
    _date_axis(ax)
    return fig


def learning_curves(history: dict[str, list[float]], best_epoch: int | None = None) -> Figure:
    """Training and validation loss per epoch, with the restored epoch marked."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], label="train")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch + 1, color="grey", ls=":", label=f"best epoch {best_epoch + 1}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    return fig
