"""`cryptolstm refit`: a model's configuration retrained on every day up to the latest.

The refit is a training run like any other (named ``refit-...``, tagged with the model it
refits), registered as a new version of the same registered model, tagged ``refit.of_*``.
Under the honest protocol it has no test days: the validation tail keeps the original
``val_frac`` of the days, the most recent ones, and training takes every day before it
(``train_frac = 1 - val_frac``); under the seed protocol the fractions stay as they are.

Promotion (`common_evaluation`): the refit becomes champion only if its one-day-ahead MAE is
not worse than the champion's on the same days: the days of the refit's validation tail
that the champion never trained or validated on. Neither model fitted its weights on those
days; the refit chose its early-stopping epoch on them (the one way they favour it), the
champion forecasts them as a model does after its training. A champion that cannot be scored
(its files or tags gone) is not compared: the refit is registered without the alias. No other days are fair: every
earlier day is the refit's training data, and there is no later day yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from cryptolstm import registry
from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.data.prepare import prepare_market
from cryptolstm.errors import ConfigError, CryptoLstmError, DataError
from cryptolstm.live import next_day, score_live
from cryptolstm.models.lstm import EpochHook
from cryptolstm.tracking.models import ModelRef, config_of, every_day, load_model, model_ref
from cryptolstm.tracking.runs import coin_experiment, run_name
from cryptolstm.tracking.source import config_values_of_run
from cryptolstm.tracking.train import tracked_train
from cryptolstm.train import TrainResult


def refit_config(cfg: RunConfig, data_dir: str, end_date: str | None) -> RunConfig:
    """``cfg`` on every day of ``data_dir`` up to ``end_date`` (None: the last), with no test split
    under the honest protocol (see the module docstring)."""
    changes = {"data_dir": data_dir, "end_date": end_date}
    if cfg.rules.has_test:
        changes["train_frac"] = round(1.0 - cfg.val_frac, 10)
    return dataclasses.replace(cfg, **changes)


@dataclass(frozen=True)
class Refit:
    """What `refit` did: the model it refitted, the new run, its result and registration."""

    ref: ModelRef
    run_id: str
    result: TrainResult
    registration: registry.Registration


def refit(model_uri: str, data_dir: str, end_date: str | None = None, force: bool = False,
          launched: str | None = None, fetch_missing: bool = True, on_epoch: Sequence[EpochHook] = ()) -> Refit:
    """Retrain ``model_uri``'s configuration on ``data_dir`` up to ``end_date``, log and register it,
    and promote it if it is not worse than the champion on the common evaluation (or ``force``)."""
    ref = model_ref(model_uri)
    cfg = refit_config(RunConfig(**config_values_of_run(ref.run.info.run_id)), data_dir, end_date)
    if ref.name and ref.name != registry.model_name(cfg.coin):
        raise ConfigError(f"{ref.label} is not one of cryptolstm's registered models: a refit is registered as a "
                          f"new version of {registry.model_name(cfg.coin)}; pass --model runs:/"
                          f"{ref.run.info.run_id}/model to refit its configuration there.")
    market = prepare_market(cfg, fetch_missing)
    data_last = ref.trained_until()[1]
    if market.last_date <= data_last:
        raise DataError(f"the data in {data_dir}{' up to ' + end_date if end_date else ''} ends on {market.last_date}, "
                        f"and {ref.label} was trained on data up to {data_last}: there is no new day to refit on.")
    tags = {"refit.of_model": model_uri, "refit.of_version": ref.version or "", "refit.of_run": ref.run.info.run_id}
    run_id, result = tracked_train(cfg, market, None, coin_experiment(cfg.coin), on_epoch, launched,
                                   f"refit-{run_name(cfg)}", tags)
    run = MlflowClient().get_run(run_id)
    decide = common_evaluation(run_id, cfg, market)
    registration = registry.register(run, cfg.coin, force, decide, tags)
    return Refit(ref, run_id, result, registration)


def common_evaluation(run_id: str, cfg: RunConfig, market: Market) -> registry.Decision:
    """``champion -> (promote?, why)`` for the refit run ``run_id``: both models' one-day-ahead MAE on
    the days of the refit's validation tail after the champion's last training or validation day,
    each forecast by its registered pyfunc (see the module docstring)."""
    client = MlflowClient()
    tags = client.get_run(run_id).data.tags
    tail_first, tail_last = tags["split.val.first"], tags["split.val.last"]

    def decide(champion: ModelVersion) -> tuple[bool, str]:
        try:
            return compare(champion)
        except CryptoLstmError as exc:  # a champion that cannot be scored: registered, not promoted
            return False, f"not compared with champion version {champion.version}: {exc} Promote it with --force."

    def compare(champion: ModelVersion) -> tuple[bool, str]:
        theirs_ref = model_ref(f"models:/{champion.name}/{champion.version}")
        first = max(tail_first, next_day(theirs_ref.trained_until()[0]))
        if first > tail_last:
            return False, (f"not compared: champion version {champion.version} trained or validated on every day of "
                           f"this refit's validation tail ({tail_first}..{tail_last}); promote it with --force")
        champion_model = load_model(theirs_ref, cfg.coin)
        if (theirs := config_of(champion_model)).horizon != cfg.horizon:
            return False, (f"not compared: champion version {champion.version} forecasts {theirs.horizon} day(s), "
                           f"this refit {cfg.horizon}; promote it with --force")
        mine_model = load_model(model_ref(f"runs:/{run_id}/model"), cfg.coin)
        mine_result, theirs_result = (score_live(every_day(model), config_of(model), market.frame, first, tail_last)
                                      for model in (mine_model, champion_model))
        mine, theirs = mine_result.metrics, theirs_result.metrics
        text = (f"on the common evaluation, {first}..{tail_last} ({mine_result.n_days} days new to champion "
                f"version {champion.version}), MAE {mine['live/mae']:,.2f} USD against its "
                f"{theirs['live/mae']:,.2f} (ratio to persistence {mine['live/mae_ratio']:.4f} against "
                f"{theirs['live/mae_ratio']:.4f})")
        if mine["live/mae"] <= theirs["live/mae"]:
            return True, f"{text}: not worse, promoted"
        return False, f"{text}: worse, not promoted (promote it with --force)"

    return decide
