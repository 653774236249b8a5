"""What the MLflow UI shows as descriptions: of the experiments, registered models and versions.

MLflow shows the tag ``mlflow.note.content`` of an experiment (or run) as its description, and
a registered model's or version's ``description`` field. Each says what it holds and that every
number stands beside persistence ("tomorrow = today") on the same days.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities import Run

from cryptolstm.config import COINS

NOTE = "mlflow.note.content"
PERSISTENCE = ("Every error is beside persistence (\"tomorrow = today\") on the same days, in the same units: "
               "`<split>/mae_ratio` is the model's MAE over persistence's, below 1 beats it. Selection uses "
               "`val/mae_ratio` only; the test days are scored once, after selection.")


def experiment_text(name: str) -> str:
    """The description of the experiment ``name`` (``cryptolstm-btc``: BTC's runs)."""
    coin = name.removeprefix("cryptolstm-").upper()
    whose = f"{coin} runs" if name.startswith("cryptolstm-") and coin in COINS else "Runs"
    return (f"{whose} of cryptolstm, close forecasts by an LSTM (the next day, or the next H days, with or "
            "without prediction intervals): training runs (named "
            "coin-protocol-window-layers x neurons-dropout-batch-seed), searches (a parent run per study, "
            "named after it, with a child run per trial), walk-forward backtests (a child run per fold), and "
            f"the records of `register`, `predict` and `report`. {PERSISTENCE}")


def describe_experiment(client: MlflowClient, experiment_id: str) -> None:
    """Give experiment ``experiment_id`` its description, unless it has one (a user's stays)."""
    experiment = client.get_experiment(experiment_id)
    if not experiment.tags.get(NOTE):
        client.set_experiment_tag(experiment_id, NOTE, experiment_text(experiment.name))


def model_text(name: str) -> str:
    """The description of the registered model ``name`` (``cryptolstm-btc``)."""
    coin = name.removeprefix("cryptolstm-").upper()
    return (f"cryptolstm's {coin} close forecaster (an MLflow pyfunc: the last days' raw daily rows in, one row "
            f"per forecast day out, the close in USD and, for a distribution head, its intervals). Each version is one registered run; the alias @champion is the "
            f"version with the lowest validation MAE ratio to persistence among those evaluated on the same "
            f"days. {PERSISTENCE}")


def _ratio(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "not measured"
    return f"{value:.4f} ({'beats' if value < 1 else 'does not beat'} persistence)"


def version_text(run: Run) -> str:
    """The description of a version registered from ``run``: coin, protocol, source, ratios."""
    tags, metrics = run.data.tags, run.data.metrics
    coin = tags.get("coin") or run.data.params.get("config.coin", "?")
    return (f"{coin} LSTM, {tags.get('protocol', '?')} protocol, from run {run.info.run_id} "
            f"({run.info.run_name}, experiment id {run.info.experiment_id}), data "
            f"{tags.get('data.first_date', '?')}..{tags.get('data.last_date', '?')}. MAE ratio to persistence: "
            f"validation {_ratio(metrics, 'val/mae_ratio')}, test {_ratio(metrics, 'test/mae_ratio')}.")


def live_text(first: str, last: str, days: int, ratio: float, dm_p: float, run_id: str) -> str:
    """One sentence of a version's score on new days (`cryptolstm evaluate`)."""
    return (f"On {days} new days after its training, {first}..{last}, one day ahead: MAE ratio to persistence "
            f"{ratio:.4f} ({'beats' if ratio < 1 else 'does not beat'} persistence, DM p {dm_p:.3g}; "
            f"evaluation run {run_id}).")


def describe_registered(client: MlflowClient, name: str, version: str, run: Run) -> None:
    """Describe the registered model ``name`` and its ``version``, registered from ``run``."""
    client.update_registered_model(name, description=model_text(name))
    client.update_model_version(name, version, description=version_text(run))


def result_text(metrics: dict[str, float]) -> str:
    """One sentence of a run's result beside persistence: the validation and test MAE ratios and,
    where logged, the intervals' test coverage and CRPS ratio to GARCH."""
    text = (f"MAE ratio to persistence: validation {_ratio(metrics, 'val/mae_ratio')}, "
            f"test {_ratio(metrics, 'test/mae_ratio')}.")
    if "test/coverage_80" in metrics:
        text += (f" Intervals on the test days: coverage {metrics['test/coverage_80']:.2f} / "
                 f"{metrics['test/coverage_95']:.2f} (80 % / 95 %), CRPS ratio to GARCH "
                 f"{metrics.get('test/crps_ratio_garch', float('nan')):.3f}.")
    return text


def trial_text(name: str, values: str, objective: str) -> str:
    """The description of a search trial: what it tried; its objective is among its metrics."""
    return f"{name}: {values}. Scored on the validation days only ({objective}); the test days are never read."


def study_text(study: str, objective: str, best: float, best_values: dict, metrics: dict[str, float]) -> str:
    """The description of a study's parent: the best trial's values and the chosen config's result."""
    chosen = ", ".join(f"{k}={v}" for k, v in best_values.items())
    return (f"Study {study}: its trials are this run's children. Best {objective} {best:.4f} with {chosen}; "
            f"that config was re-trained and scored on the test days once. {result_text(metrics)} {PERSISTENCE}")
