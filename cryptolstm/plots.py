"""Figures as `matplotlib.figure.Figure` objects (no pyplot state, never shown)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.dates import ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cryptolstm.features import closes, raw
from cryptolstm.forecast import Forecast
from cryptolstm.intervals import INTERVALS


def _date_axis(ax) -> None:
    ax.xaxis.set_major_formatter(ConciseDateFormatter(ax.xaxis.get_major_locator()))  # dates' own AutoDateLocator


def _figure(size: tuple[float, float], *grid, **options):
    """A new figure (constrained layout, never shown) and its axes, ``fig.subplots(*grid, **options)``."""
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(*grid, **options)


def price_volume(frame: pd.DataFrame, coin: str) -> Figure:
    """Daily close (USD, log scale) above daily volume (USD bn) for ``coin``."""
    fig, (top, bottom) = _figure((10, 6), 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(frame.index, closes(frame, coin), lw=1)
    top.set(yscale="log", ylabel="close (USD)",
            title=f"{coin} daily close and volume, {frame.index[0]:%Y-%m-%d} to {frame.index[-1]:%Y-%m-%d}")
    bottom.bar(frame.index, raw(frame, coin, "volume") / 1e9, width=1.0)
    bottom.set_ylabel("volume (USD bn)")
    _date_axis(bottom)
    return fig


def headless() -> None:
    """Make pyplot draw to files only, before another library (Optuna) draws through it."""
    matplotlib.use("Agg")


def figure_of(axes) -> Figure:
    """The `Figure` owning ``axes`` (or an array of them) drawn through pyplot, let go by pyplot (memory)."""
    import matplotlib.pyplot as plt  # the caller drew through pyplot (see `headless`)

    fig = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    plt.close(fig)
    return fig


FEW_TRIALS = 20  # below this, parameter importances are noise: their figure says so


def study_history(ax, values) -> None:
    """An Optuna optimisation history made readable: whole trial numbers, and a y range ending below Tukey's
    far-out fence (Q3 + 3 IQR) so one bad trial does not squash the rest, the trials above it as triangles
    on the top edge. ``values``: the trials' values by number."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(finite) < 4:
        return
    q1, q3 = np.quantile(finite, [0.25, 0.75])
    fence = q3 + 3 * (q3 - q1)
    kept = finite[finite <= fence]
    low, high = kept.min(), kept.max()
    top = high + 0.1 * max(high - low, 1e-3 * abs(high) or 1e-12)
    above = np.flatnonzero(np.asarray([v is not None and np.isfinite(v) and v > fence for v in values]))
    if len(above):
        ax.set_ylim(low - 0.1 * (top - low), top)
        ax.plot(above, np.full(len(above), top), marker="^", ls="none", color="tab:red", clip_on=False,
                label=f"{len(above)} trial(s) above the range")
        ax.legend(fontsize=8)


def study_importances(ax, trials: int) -> None:
    """Title parameter importances with the number of trials behind them, and a caveat below `FEW_TRIALS`."""
    caveat = f"; below {FEW_TRIALS} trials these are rough" if trials < FEW_TRIALS else ""
    ax.set_title(f"Hyperparameter importances ({trials} trials{caveat})", fontsize=9)


def study_parallel(ax, objective: str) -> None:
    """Parallel coordinates whose labels neither overlap nor run off the figure (1.2 inches per axis, small
    labels on two staggered rows), the objective named in full in the title."""
    ax.figure.set_size_inches(max(6.4, 1.2 * len(ax.get_xticklabels())), 4.8)
    for each in ax.figure.axes:  # Optuna draws one axis per parameter, each with the same labels
        for i, tick in enumerate(each.xaxis.get_major_ticks()):
            tick.set_pad(3.5 + 11 * (i % 2))
            tick.label1.set_fontsize(8)
            tick.label1.set_rotation(0)  # Optuna slants them; staggered rows keep them apart upright
    ax.set_title(f"Parallel coordinates, coloured by {objective}", fontsize=9)


def plain(fig: Figure) -> Figure:
    """``fig`` (drawn by another library in its own style, Optuna's ggplot grey) on white, labels inside."""
    fig.patch.set_facecolor("white")
    for ax in fig.axes:
        ax.set_facecolor("white")
        ax.grid(True, color="0.9")
    fig.set_layout_engine("constrained")
    try:
        fig.draw_without_rendering()  # constrained layout gives up on some (2 trials' parallel coordinates)
    except (ValueError, ZeroDivisionError):
        fig.set_layout_engine("none")
    return fig


def forecast_vs_actual(forecast: Forecast, actual: np.ndarray, coin: str, split: str, last_days: int = 90) -> Figure:
    """The model beside persistence on ``split``'s days (horizon 1, USD): the last ``last_days`` closes, the
    forecast against the actual move, and the cumulative |error| difference (falling: the model is ahead)."""
    fig = Figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplot_mosaic([["top", "top"], ["left", "right"]])
    top, left, right = axes["top"], axes["left"], axes["right"]
    dates = pd.to_datetime(forecast.dates)
    model, last = forecast.close(), forecast.last_close
    recent = slice(max(0, len(dates) - last_days), len(dates))
    top.plot(dates[recent], actual[recent], label="actual", lw=1.5, color="black", marker=".", ms=3)
    top.plot(dates[recent], model[recent], label="LSTM", lw=1, color="C0")
    top.plot(dates[recent], last[recent], label="persistence (yesterday's close)", lw=1, ls="--", color="C2")
    top.set(ylabel="close (USD)", title=f"{coin}, last {len(dates[recent])} of {len(dates)} {split} days")
    top.legend()
    _date_axis(top)
    moved, said = 100 * (actual / last - 1), 100 * (model / last - 1)
    if forecast.has_intervals:  # the fan: each day's 80 % interval of the move (a pinned median is no move)
        low, high = (100 * (bound / last - 1) for bound in forecast.bounds(80, 1))
        inside = np.mean((moved >= low) & (moved <= high))
        left.vlines(moved, low, high, color="C1", alpha=0.35, lw=1, label=f"80 % interval ({inside:.0%} inside)")
    left.scatter(moved, said, s=6, alpha=0.5, color="C0", label="forecast (median)")
    left.axhline(0, color="C2", ls="--", lw=1, label="persistence: no move")
    left.axline((0, 0), slope=1, color="grey", ls=":", lw=1, label="perfect forecast")
    left.set(xlabel="actual move from the last close (%)", ylabel="forecast move (%)",
             title="forecast against actual move")
    left.legend(fontsize=8)
    gap = np.cumsum(np.abs(model - actual) - np.abs(last - actual))
    right.plot(dates, gap, color="C0")
    right.axhline(0, color="black", lw=0.8)
    right.set_ylabel("cumulative |LSTM error| - |persistence error| (USD)")
    tied = abs(gap[-1]) <= 1e-9 * max(np.sum(np.abs(last - actual)), 1e-12)
    right.set_title("ahead of persistence where it falls (" + ("level with it: the same forecast" if tied else
                    "behind at the end" if gap[-1] > 0 else "ahead at the end") + ")")
    _date_axis(right)
    fig.suptitle(f"{coin} next-day forecast vs persistence on the {split} days")
    return fig


def learning_curves(history: dict[str, list[float]], best_epoch: int | None = None) -> Figure:
    """Training and validation loss per epoch, the restored epoch marked; a log scale when every loss is
    positive (a Gaussian head's negative log-likelihood is not)."""
    fig, ax = _figure((8, 4.5))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], label="train", marker="." if len(epochs) < 30 else None)
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], label="validation", marker="." if len(epochs) < 30 else None)
    if best_epoch is not None:
        ax.axvline(best_epoch + 1, color="grey", ls=":", label=f"kept: epoch {best_epoch + 1}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="loss",
           title=f"Learning curves ({len(epochs)} epoch{'s' if len(epochs) != 1 else ''})")
    if np.all(np.concatenate([history["loss"], history.get("val_loss", [])]) > 0):
        ax.set_yscale("log")
    ax.legend()
    return fig


# --- backtests -----------------------------------------------------------------------------


def fold_forecasts(dates: np.ndarray, actual: np.ndarray, forecasts: dict[str, np.ndarray], title: str, ax=None) -> Figure | None:
    """Actual close and each named USD forecast over a fold's test days (one axis)."""
    fig, ax = _figure((12, 5)) if ax is None else (None, ax)
    dates = pd.to_datetime(dates)
    ax.plot(dates, actual, label="actual", lw=1.5, color="black")
    for name, values in forecasts.items():
        ax.plot(dates, values, label=name, lw=1, ls="--" if name == "persistence" else "-")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("close (USD)")
    _date_axis(ax)
    if fig is not None:
        ax.legend()
    return fig


def backtest_forecasts(folds: list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]], coin: str) -> Figure:
    """A grid of `fold_forecasts` panels, one per ``(label, dates, actual, forecasts)`` fold."""
    cols = min(4, len(folds))
    rows = int(np.ceil(len(folds) / cols))
    fig, axes = _figure((4 * cols, 2.8 * rows), rows, cols, squeeze=False)
    for ax, (label, dates, actual, forecasts) in zip(axes.flat, folds):
        fold_forecasts(dates, actual, forecasts, label, ax)
    for ax in axes.flat[len(folds):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(f"{coin} walk-forward forecasts vs actual, fold by fold")
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))  # below the panels, clear of the title
    return fig


def error_distribution(errors: dict[str, np.ndarray], units: str) -> Figure:
    """Histograms (step outlines) of each forecaster's errors ``forecast - actual``."""
    fig, ax = _figure((9, 5))
    low, high = np.nanpercentile(np.concatenate(list(errors.values())), [0.5, 99.5])
    bins = np.linspace(low, high, 60)
    for name, values in errors.items():
        ax.hist(np.clip(values, low, high), bins=bins, histtype="step", lw=1.2, label=name, density=True)
    ax.set(xlabel=f"forecast - actual ({units}); tails clipped at the 0.5/99.5 percentiles", ylabel="density",
           title="Error distribution over all test days")
    ax.legend()
    return fig


def ratio_per_fold(labels: list[str], seed_ratios: np.ndarray, baseline_ratios: dict[str, np.ndarray]) -> Figure:
    """MAE ratio to persistence per fold: each seed a dot, the seeds' mean with min-max bars, the baselines
    as lines. ``seed_ratios``: (folds, seeds); ``baseline_ratios``: name -> (folds,)."""
    fig, ax = _figure((max(8, 0.55 * len(labels)), 5))
    x = np.arange(len(labels))
    mean = seed_ratios.mean(axis=1)
    ax.errorbar(x, mean, yerr=[mean - seed_ratios.min(axis=1), seed_ratios.max(axis=1) - mean],
                fmt="o", color="C0", capsize=3, label="LSTM (seed mean, min-max)")
    ax.scatter(np.tile(x, seed_ratios.shape[1]), seed_ratios.T.ravel(), s=8, color="C0", alpha=0.4)  # seed by seed
    _beside_one(ax, x, seed_ratios, baseline_ratios, 0.8)
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    ax.set(ylabel="MAE ratio to persistence (USD errors)",
           title="MAE ratio to persistence per fold (below 1 beats persistence)")
    ax.legend(fontsize=8)
    return fig


def _beside_one(ax, x, seed_ratios: np.ndarray, baseline_ratios: dict[str, np.ndarray], lw: float, **line) -> None:
    """The baselines' ratios as lines, the ratio 1 (persistence) dotted and well inside the y range, not on its edge."""
    for i, (name, values) in enumerate(baseline_ratios.items(), start=1):
        ax.plot(x, values, marker=".", lw=lw, color=f"C{i}", label=name)
    ax.axhline(1.0, color="black", lw=0.8, ls=":", **line)
    values = np.concatenate([seed_ratios.ravel(), *[np.ravel(v) for v in baseline_ratios.values()]])
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if len(finite) else (1.0, 1.0)
    pad = max(0.01, 0.15 * (high - low))
    ax.set_ylim(min(low, 1.0) - pad, max(high, 1.0) + pad)


def fan_chart(forecast: Forecast, actual: np.ndarray, coin: str, split: str, last_days: int = 120) -> Figure:
    """The last ``last_days`` days of ``split`` (USD): actual close, forecast, 80 % and 95 % bands and coverage."""
    keep = slice(max(0, len(forecast) - last_days), len(forecast))
    dates = pd.to_datetime(forecast.dates)[keep]
    fig, ax = _figure((12, 5))
    for coverage, shade in zip(sorted(INTERVALS, reverse=True), ("#c6dbef", "#6baed6"), strict=True):
        lower, upper = forecast.bounds(coverage)
        hit = np.mean((actual >= lower) & (actual <= upper))
        ax.fill_between(dates, lower[keep], upper[keep], color=shade, lw=0,
                        label=f"{coverage} % interval (covered {hit:.0%} of {len(forecast)} days)")
    ax.plot(dates, forecast.close()[keep], color="#08306b", lw=1, label="forecast")
    ax.plot(dates, actual[keep], color="black", lw=1.2, marker=".", ms=3, label="actual")
    ax.set(ylabel="close (USD)", title=f"{coin} next-day forecast with intervals, last {len(dates)} {split} days")
    ax.legend(loc="upper left")
    _date_axis(ax)
    return fig


def reliability(observed: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Figure:
    """Observed against nominal coverage of central intervals per forecaster (``name -> (nominal, observed)``)."""
    fig, ax = _figure((6, 6))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="calibrated")
    for name, (nominal, seen) in observed.items():
        ax.plot(nominal, seen, marker="o", ms=3, lw=1.2, label=name)
    ax.set(xlabel="nominal coverage of the central interval", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1),
           title=title)
    ax.legend(loc="upper left")
    return fig


def coverage_per_fold(labels: list[str], coverage: dict[str, np.ndarray], nominal: int) -> Figure:
    """Coverage of the ``nominal`` % interval per fold, one line per forecaster, the nominal level dashed."""
    fig, ax = _figure((10, 4))
    x = np.arange(len(labels))
    for name, values in coverage.items():
        ax.plot(x, values, marker="o", lw=1.2, label=name)
    ax.axhline(nominal / 100, color="grey", ls="--", lw=1, label=f"nominal {nominal} %")
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set(ylabel=f"coverage of the {nominal} % interval", title=f"{nominal} % interval coverage per fold (test days)")
    ax.legend()
    return fig


def ratio_by_horizon(horizons: np.ndarray, seed_ratios: np.ndarray, baseline_ratios: dict[str, np.ndarray],
                     title: str, label: str = "LSTM") -> Figure:
    """MAE ratio to persistence by horizon: the seeds' mean with their min-max band, other lines (baselines,
    or the model on other days). ``seed_ratios``: (seeds, H); ``baseline_ratios``: name -> (H,)."""
    fig, ax = _figure((8, 5))
    seed_ratios = np.atleast_2d(seed_ratios)
    ax.plot(horizons, seed_ratios.mean(axis=0), marker="o", color="C0",
            label=f"{label} (mean of {len(seed_ratios)} seeds)" if len(seed_ratios) > 1 else label)
    if len(seed_ratios) > 1:
        ax.fill_between(horizons, seed_ratios.min(axis=0), seed_ratios.max(axis=0), color="C0", alpha=0.2,
                        label="LSTM seeds, min-max")
    _beside_one(ax, horizons, seed_ratios, baseline_ratios, 1, label="persistence")
    ax.set(xticks=horizons, xlabel="horizon (days ahead)", ylabel="MAE ratio to persistence (USD errors)",
           title=f"MAE ratio to persistence by horizon: {title}")
    ax.legend(fontsize=8)
    return fig


def forecast_paths(forecast: Forecast, history: pd.Series, coin: str, split: str, origins: int = 6) -> Figure:
    """H-day forecast paths (USD) from the last ``origins`` origins of ``split``, H days apart, beside persistence."""
    fig, ax = _figure((12, 5))
    starts = pd.to_datetime(forecast.dates)
    picks = np.unique(np.clip(len(forecast) - 1 - forecast.horizon * np.arange(origins)[::-1], 0, None))
    span = history.loc[starts[picks[0]] - pd.Timedelta(days=7):starts[picks[-1]] + pd.Timedelta(days=forecast.horizon)]
    ax.plot(span.index, span.to_numpy(), color="black", lw=1.2, label="actual")
    for n, i in enumerate(picks):
        days = pd.date_range(starts[i] - pd.Timedelta(days=1), periods=forecast.horizon + 1)
        path = [forecast.last_close[i], *(forecast.close(h)[i] for h in range(1, forecast.horizon + 1))]
        ax.plot(days, path, color="C1", lw=1.2, marker=".", label="LSTM path" if n == 0 else None)
        ax.plot(days, np.full(len(days), forecast.last_close[i]), color="C2", lw=0.8, ls=":",
                label="persistence" if n == 0 else None)
    ax.set(ylabel="close (USD)",
           title=f"{coin} forecasts of {forecast.horizon} days from {len(picks)} origins of the {split} days")
    ax.legend()
    _date_axis(ax)
    return fig


def live_gap(days: pd.DataFrame, coin: str, label: str, window: int = 30) -> Figure:
    """A model against persistence on new days (``days``: `evaluate.daily_table`): the cumulative |error|
    difference (USD, shaded by sign) above the ``window``-day rolling MAE ratio to persistence."""
    fig, (top, bottom) = _figure((12, 7), 2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    dates, gap = pd.to_datetime(days["date"]), days["cumulative_gap"].to_numpy(float)
    top.plot(dates, gap, color="C0", lw=1.2)
    top.fill_between(dates, 0, gap, where=gap <= 0, color="C2", alpha=0.25, label="model ahead of persistence")
    top.fill_between(dates, 0, gap, where=gap > 0, color="C3", alpha=0.25, label="model behind persistence")
    top.axhline(0, color="black", lw=0.8)
    top.set_ylabel("cumulative |model error| - |persistence error| (USD)")
    top.set_title(f"{coin}, {label}: {len(days)} new days, {days['date'].iloc[0]} to {days['date'].iloc[-1]} "
                  f"({'behind' if gap[-1] > 0 else 'ahead'} at the end)")
    top.legend(fontsize=8)
    mae = days[["error", "persistence_error"]].abs().rolling(window).mean()
    bottom.plot(dates, mae["error"] / mae["persistence_error"], color="C0", lw=1)
    bottom.axhline(1, color="C2", ls="--", lw=1, label="persistence")
    bottom.set_ylabel(f"{window}-day MAE ratio")
    bottom.legend(fontsize=8)
    _date_axis(bottom)
    return fig
