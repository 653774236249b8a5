"""Figures a user reads: what they show, their labels, and that no other library's style leaks in."""

from __future__ import annotations

import io
import warnings

import matplotlib
import numpy as np
import optuna
import pandas as pd
import pytest

from cryptolstm import plots
from cryptolstm.forecast import Forecast


def _forecast(n: int = 120) -> tuple[Forecast, np.ndarray]:
    rng = np.random.default_rng(0)
    dates = pd.date_range("2023-01-01", periods=n).to_numpy()
    last = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    actual = last * np.exp(rng.normal(0, 0.02, n))
    return Forecast(dates, last, last, rng.normal(0, 0.01, n)), actual


def test_the_forecast_figure_shows_the_gap_to_persistence():
    forecast, actual = _forecast()
    fig = plots.forecast_vs_actual(forecast, actual, "BTC", "test", last_days=30)
    top, scatter, gap = fig.axes
    assert len(top.lines[0].get_xdata()) == 30  # the zoomed recent window
    assert scatter.get_xlabel() == "actual move from the last close (%)"
    expected = np.cumsum(np.abs(forecast.close() - actual) - np.abs(forecast.last_close - actual))
    np.testing.assert_allclose(gap.lines[0].get_ydata(), expected)


def test_a_pinned_forecast_shows_its_fan_and_a_tie_reads_as_one():
    """A head whose median is the last close: its figure draws each day's 80 % interval of the move
    (not a collapsed scatter on zero), and the cumulative gap, level at 0, says so."""
    from scipy import stats

    from cryptolstm.intervals import LEVELS

    forecast, actual = _forecast()
    spread = stats.norm.ppf(np.asarray(LEVELS)) * 0.02  # a Gaussian of the moves around no move
    pinned = Forecast(forecast.dates, forecast.reference, forecast.last_close, np.zeros(len(actual))).with_quantiles(
        np.broadcast_to(spread, (len(actual), 1, len(LEVELS))).copy(), LEVELS)
    fig = plots.forecast_vs_actual(pinned, actual, "BTC", "test")
    _, scatter, gap = fig.axes
    (fan,) = scatter.collections[:1]
    assert len(fan.get_segments()) == len(actual) and "inside)" in fan.get_label()
    assert gap.get_title() == "ahead of persistence where it falls (level with it: the same forecast)"


def test_learning_curves_have_whole_epochs_and_a_linear_scale_for_a_negative_loss():
    fig = plots.learning_curves({"loss": [-1.0, -2.0, -2.5], "val_loss": [-0.5, -1.0, -0.9]}, best_epoch=1)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear" and all(float(t).is_integer() for t in ax.get_xticks())
    assert plots.learning_curves({"loss": [1.0, 0.5], "val_loss": [1.0, 0.7]}).axes[0].get_yscale() == "log"


def test_optuna_plots_name_the_objective_mark_persistence_and_keep_their_style_to_themselves():
    from cryptolstm.search.optuna_engine import OptunaEngine
    from cryptolstm.search.optuna_study import StudyHandle

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val/mae_ratio"])
    study.optimize(lambda t: 1.0 + t.suggest_float("dropout", 0, 0.5) - t.suggest_int("layers", 1, 3) / 10, n_trials=6)
    def style() -> dict:  # every setting but the backend, which `plots.headless` sets on purpose
        return {k: v for k, v in matplotlib.rcParams.items() if not k.startswith("backend")}

    before = style()
    engine = OptunaEngine(StudyHandle(study, True, "sqlite://", None, None), options=None, max_epochs=2)
    figures = engine.figures()
    history = figures["plots/optuna_optimization_history.png"].axes[0]
    assert history.get_ylabel() == "val/mae_ratio"
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in history.lines)  # the persistence line
    assert style() == before  # Optuna's ggplot style did not stay behind
    assert set(figures) == {f"plots/optuna_{name}.png" for name in ("optimization_history", "param_importances",
                                                                     "parallel_coordinate")}
    for path, fig in figures.items():  # each can be saved, as the study's run logs it
        saved = io.BytesIO()
        fig.savefig(saved, format="png")
        assert saved.getvalue().startswith(b"\x89PNG"), path


def test_a_small_studys_figures_read_right_whole_trials_one_outlier_marked_and_importances_caveated():
    from cryptolstm.search.optuna_engine import OptunaEngine
    from cryptolstm.search.optuna_study import StudyHandle

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val/mae_ratio"])
    values = iter([1.01, 0.99, 1.02, 9.0, 1.00, 1.03])  # one bad trial
    study.optimize(lambda t: next(values) + 0 * t.suggest_float("dropout", 0, 0.5) * t.suggest_int("layers", 1, 3),
                   n_trials=6)
    figures = OptunaEngine(StudyHandle(study, True, "sqlite://", None, None), options=None, max_epochs=2).figures()
    history = figures["plots/optuna_optimization_history.png"].axes[0]
    history.figure.draw_without_rendering()
    ticks = [t for t in history.get_xticks() if history.get_xlim()[0] <= t <= history.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # trial 0, 1, 2... never 0.5
    low, high = history.get_ylim()
    assert high < 2.0 and low > 0.9  # the other trials fill the axis; the 9.0 is marked on the top edge
    assert any(line.get_label() == "1 trial(s) above the range" for line in history.lines)
    importances = figures["plots/optuna_param_importances.png"].axes[0]
    assert importances.get_title() == "Hyperparameter importances (6 trials; below 20 trials these are rough)"
    parallel = figures["plots/optuna_parallel_coordinate.png"]
    parallel.draw_without_rendering()
    labels = [label for ax in parallel.axes for label in ax.get_xticklabels() if label.get_text()]
    shown = {label.get_text(): label for label in labels}  # each axis Optuna drew repeats them
    assert set(shown) == {"val/mae_ratio", "dropout", "layers"}
    boxes = [label.get_window_extent() for label in shown.values()]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    width, height = parallel.canvas.get_width_height()
    assert all(0 <= box.x0 and box.x1 <= width and 0 <= box.y0 for box in boxes)  # none cut at the edge


def test_the_live_figure_shows_where_the_model_gained_or_lost_against_persistence():
    from cryptolstm.evaluate import daily_table

    forecast, actual = _forecast(90)
    days = daily_table(forecast, actual[:, None])
    fig = plots.live_gap(days, "BTC", "cryptolstm-btc version 1", window=30)
    top, bottom = fig.axes
    gap = np.cumsum(np.abs(forecast.close() - actual) - np.abs(forecast.last_close - actual))
    np.testing.assert_allclose(top.lines[0].get_ydata(), gap)
    ahead = "behind" if gap[-1] > 0 else "ahead"
    assert top.get_title() == f"BTC, cryptolstm-btc version 1: 90 new days, 2023-01-01 to 2023-03-31 ({ahead} at the end)"
    ratio = bottom.lines[0].get_ydata()
    assert np.isnan(ratio[:29]).all()  # a ratio needs 30 days
    errors = np.abs(forecast.close() - actual)[-30:].mean() / np.abs(forecast.last_close - actual)[-30:].mean()
    assert ratio[-1] == pytest.approx(errors)


def test_the_parallel_coordinates_of_the_default_space_keep_every_label_apart():
    """The default space's seven dimensions: their names do not overlap or run off the figure."""
    from cryptolstm.search.optuna_engine import OptunaEngine
    from cryptolstm.search.optuna_study import StudyHandle

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = ["window_len", "layers", "neurons", "dropout", "batch_size", "activation", "learning_rate"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(lambda t: sum(t.suggest_float(n, 0, 1) for n in names), n_trials=8)
    figures = OptunaEngine(StudyHandle(study, True, "sqlite://", None, None), options=None, max_epochs=2).figures()
    parallel = figures["plots/optuna_parallel_coordinate.png"]
    parallel.draw_without_rendering()
    shown = {label.get_text(): label.get_window_extent() for ax in parallel.axes for label in ax.get_xticklabels()
             if label.get_text()}
    assert set(names) <= set(shown)
    boxes, (width, _) = list(shown.values()), parallel.canvas.get_width_height()
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert all(0 <= box.x0 and box.x1 <= width and 0 <= box.y0 for box in boxes)
