"""`cryptolstm refit`: a registered model's configuration retrained on every day up to the latest, registered
as a new version, and made champion only if not worse on the days of its validation tail the champion never
saw (`common_evaluation`: every earlier day is the refit's training data, and there is no later day yet).
No MLflow here: training, registration and loading go through a `cryptolstm.registry.ModelStore`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptolstm.config import RunConfig
from cryptolstm.data import Market
from cryptolstm.data.prepare import prepare_market
from cryptolstm.errors import ConfigError, CryptoLstmError, DataError
from cryptolstm.evaluate import check_prices, score_days
from cryptolstm.models.lstm import WARM_PATIENCE, EpochHook
from cryptolstm.options import SCRATCH, WARM
from cryptolstm.registry import Decision, ModelInfo, ModelStore, Registration, model_name, next_day
from cryptolstm.train import TrainResult


def refit_config(cfg: RunConfig, data_dir: str, end_date: str | None) -> RunConfig:
    """``cfg`` on every day of ``data_dir`` up to ``end_date`` (None: the last), with no test split where its
    protocol has one: the validation tail keeps its ``val_frac``, training takes every day before it."""
    split = {"train_frac": round(1.0 - cfg.val_frac, 10)} if cfg.rules.has_test else {}
    return dataclasses.replace(cfg, data_dir=data_dir, end_date=end_date, **split)


@dataclass(frozen=True)
class Refit:
    """What `refit` did: the model refitted, the new run, its result (None: made already) and registration."""

    info: ModelInfo
    run_id: str
    result: TrainResult | None
    registration: Registration


def refit_key(info: ModelInfo, cfg: RunConfig, market: Market, retrain: str) -> str:
    """What makes two refits the same: the model, the configuration, the data's digests and last day, the start."""
    digests = sorted(f"{coin}:{digest}" for coin, (_, digest) in market.files.items())
    text = json.dumps([info.run_id, cfg.to_dict(), digests, market.last_date, retrain], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refit(store: ModelStore, uri: str, data_dir: str, end_date: str | None = None, force: bool = False,
          fetch_missing: bool = True, on_epoch: Sequence[EpochHook] = (), retrain: str = SCRATCH,
          warm_epochs: int | None = None, sealed_from: str | None = None) -> Refit:
    """Retrain ``uri``'s configuration on ``data_dir`` up to ``end_date``, register it and promote it by the
    common evaluation (or ``force``). ``retrain``: ``scratch``, or ``warm`` (from the model's trained weights,
    at most ``warm_epochs`` epochs); ``sealed_from``: the refit's seal (default: the model's)."""
    from cryptolstm.render import run_name

    info = store.resolve(uri)
    cfg = refit_config(info.config, data_dir, end_date).replace(sealed_from=sealed_from or info.sealed_from)
    if retrain == WARM:
        if cfg.ensemble > 1:
            raise ConfigError(f"{info.label} is an ensemble of {cfg.ensemble} networks; refit it with --retrain scratch.")
        cfg = cfg.replace(epochs=warm_epochs or cfg.epochs, patience=min(cfg.patience, WARM_PATIENCE))
    if info.name and info.name != model_name(cfg.coin):
        raise ConfigError(f"{info.label} is not one of cryptolstm's registered models: a refit is registered as a "
                          f"new version of {model_name(cfg.coin)}; pass --model runs:/{info.run_id}/model to refit "
                          f"its configuration there.")
    market = prepare_market(cfg, fetch_missing)
    check_prices(info, market.frame, data_dir)
    key = refit_key(info, cfg, market, retrain)
    done = store.find_refit(key, cfg.coin)
    if done is not None:  # the same refit was made already (a rerun after a crash, or twice): nothing new
        registration = store.register(done[0], cfg.coin, force=True) if force and not done[1].promoted else done[1]
        return Refit(info, done[0], None, registration)
    until = f"{data_dir}{' up to ' + end_date if end_date else ''}"  # the data must hold a day neither model saw
    if market.last_date <= info.data_last:
        raise DataError(f"the data in {until} ends on {market.last_date}, and {info.label} was trained on data up to "
                        f"{info.data_last}: there is no new day to refit on.")
    champion = store.champion(info.config.coin)
    if champion is not None and market.last_date <= champion.data_last:
        raise DataError(f"the data in {until} ends on {market.last_date}, and the champion, {champion.label}, was "
                        f"trained on data up to {champion.data_last}: a refit would add no day it has not seen; "
                        f"nothing was trained or registered.")
    tags = {"refit.of_model": uri, "refit.of_version": info.version or "", "refit.of_run": info.run_id,
            "init.from": info.label if retrain == WARM else SCRATCH, "refit.key": key}
    init = store.network(info) if retrain == WARM else None
    run_id, result = store.train(cfg, market, f"refit-{run_name(cfg)}", tags, on_epoch, init)
    decide = common_evaluation(store, store.resolve(f"runs:/{run_id}/model"), market)
    return Refit(info, run_id, result, store.register(run_id, cfg.coin, force, decide, tags))


def common_evaluation(store: ModelStore, refitted: ModelInfo, market: Market) -> Decision:
    """``champion -> (promote?, why)`` for the refit ``refitted``: both models' one-day-ahead MAE on the
    days of the refit's validation tail after the champion's last training or validation day. Neither
    fitted its weights on them; the refit chose its early-stopping epoch on them (the one way they favour it)."""
    tail_first, tail_last = refitted.val_first, refitted.trained_until

    def decide(champion: ModelInfo) -> tuple[bool, str]:
        first = max(tail_first, next_day(champion.trained_until))
        if first > tail_last:
            return False, (f"not compared: champion version {champion.version} trained or validated on every day of "
                           f"this refit's validation tail ({tail_first}..{tail_last}); promote it with --force")
        if champion.config.horizon != refitted.config.horizon:
            return False, (f"not compared: champion version {champion.version} forecasts {champion.config.horizon} "
                           f"day(s), this refit {refitted.config.horizon}; promote it with --force")
        try:
            (made, mine), (_, theirs) = [score_days(store.load(info, refitted.config.coin), info.config, market.frame,
                                                    first, tail_last, baselines=False) for info in (refitted, champion)]
        except CryptoLstmError as exc:  # a champion that cannot be scored: registered, not promoted
            return False, f"not compared with champion version {champion.version}: {exc} Promote it with --force."
        text = (f"on the common evaluation, {first}..{tail_last} ({len(made.table)} days new to champion "
                f"version {champion.version}), MAE {mine['live/mae']:,.2f} USD against its "
                f"{theirs['live/mae']:,.2f} (ratio to persistence {mine['live/mae_ratio']:.4f} against "
                f"{theirs['live/mae_ratio']:.4f})")
        if mine["live/mae"] <= theirs["live/mae"]:
            return True, f"{text}: not worse, promoted"
        return False, f"{text}: worse, not promoted (promote it with --force)"

    return decide
