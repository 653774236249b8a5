"""`cryptolstm refit`: a registered model's configuration retrained on every day up to the latest,
and the rule that decides whether the refit replaces the champion. No MLflow here: training,
registration and loading go through a `cryptolstm.registry.ModelStore`.

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
(its files or tags gone) is not compared: the refit is registered without the alias. No other
days are fair: every earlier day is the refit's training data, and there is no later day yet.
"""

from __future__ import annotations

import dataclasses
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
    """``cfg`` on every day of ``data_dir`` up to ``end_date`` (None: the last), with no test split
    under the honest protocol (see the module docstring)."""
    changes = {"data_dir": data_dir, "end_date": end_date}
    if cfg.rules.has_test:
        changes["train_frac"] = round(1.0 - cfg.val_frac, 10)
    return dataclasses.replace(cfg, **changes)


@dataclass(frozen=True)
class Refit:
    """What `refit` did: the model it refitted, the new run, its result (None when the same refit had
    been made already: nothing was trained) and registration."""

    info: ModelInfo
    run_id: str
    result: TrainResult | None
    registration: Registration


def refit_key(info: ModelInfo, cfg: RunConfig, market: Market, retrain: str) -> str:
    """What makes two refits the same: the model refitted, the configuration, the data (its files'
    digests and last day) and how it starts; a refit with the same key adds nothing new."""
    import hashlib
    import json

    digests = sorted(f"{coin}:{digest}" for coin, (_, digest) in market.files.items())
    text = json.dumps([info.run_id, cfg.to_dict(), digests, market.last_date, retrain], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refit_name(cfg: RunConfig) -> str:
    """The refit run's name: ``refit-`` and the run name the configuration would have."""
    from cryptolstm.render import run_name

    return f"refit-{run_name(cfg)}"


def refit(store: ModelStore, uri: str, data_dir: str, end_date: str | None = None, force: bool = False,
          fetch_missing: bool = True, on_epoch: Sequence[EpochHook] = (), retrain: str = SCRATCH,
          warm_epochs: int | None = None, sealed_from: str | None = None) -> Refit:
    """Retrain ``uri``'s configuration on ``data_dir`` up to ``end_date``, register it, and promote it
    if it is not worse than the champion on the common evaluation (or ``force``). ``retrain``:
    ``scratch`` (fresh weights) or ``warm`` (the model's own trained weights go on training, at most
    ``warm_epochs`` epochs, default the config's, early-stopped on the new validation tail).
    ``sealed_from``: the seal of the refit (default: the model's own, `ModelInfo.sealed_from`)."""
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
    _check_new_days(store, info, market, data_dir, end_date)
    tags = {"refit.of_model": uri, "refit.of_version": info.version or "", "refit.of_run": info.run_id,
            "init.from": info.label if retrain == WARM else SCRATCH, "refit.key": key}
    init = store.network(info) if retrain == WARM else None
    run_id, result = store.train(cfg, market, refit_name(cfg), tags, on_epoch, init)
    decide = common_evaluation(store, store.resolve(f"runs:/{run_id}/model"), market)
    return Refit(info, run_id, result, store.register(run_id, cfg.coin, force, decide, tags))


def _check_new_days(store: ModelStore, info: ModelInfo, market: Market, data_dir: str, end_date: str | None) -> None:
    """One sentence when the data holds no day after those ``info``'s model, or the champion, trained on."""
    until = f"{data_dir}{' up to ' + end_date if end_date else ''}"
    if market.last_date <= info.data_last:
        raise DataError(f"the data in {until} ends on {market.last_date}, and {info.label} was trained on data up to "
                        f"{info.data_last}: there is no new day to refit on.")
    champion = store.champion(info.config.coin)
    if champion is not None and market.last_date <= champion.data_last:
        raise DataError(f"the data in {until} ends on {market.last_date}, and the champion, {champion.label}, was "
                        f"trained on data up to {champion.data_last}: a refit would add no day it has not seen; "
                        f"nothing was trained or registered.")


def common_evaluation(store: ModelStore, refitted: ModelInfo, market: Market) -> Decision:
    """``champion -> (promote?, why)`` for the refit ``refitted``: both models' one-day-ahead MAE on
    the days of the refit's validation tail after the champion's last training or validation day,
    each forecast by its registered model (see the module docstring)."""
    tail_first, tail_last = refitted.val_first, refitted.trained_until

    def decide(champion: ModelInfo) -> tuple[bool, str]:
        try:
            return compare(champion)
        except CryptoLstmError as exc:  # a champion that cannot be scored: registered, not promoted
            return False, f"not compared with champion version {champion.version}: {exc} Promote it with --force."

    def compare(champion: ModelInfo) -> tuple[bool, str]:
        first = max(tail_first, next_day(champion.trained_until))
        if first > tail_last:
            return False, (f"not compared: champion version {champion.version} trained or validated on every day of "
                           f"this refit's validation tail ({tail_first}..{tail_last}); promote it with --force")
        if champion.config.horizon != refitted.config.horizon:
            return False, (f"not compared: champion version {champion.version} forecasts {champion.config.horizon} "
                           f"day(s), this refit {refitted.config.horizon}; promote it with --force")
        scored = [score_days(store.load(info, refitted.config.coin), info.config, market.frame, first, tail_last,
                             baselines=False) for info in (refitted, champion)]
        (made, mine), (_, theirs) = scored
        days = len(made.table)
        text = (f"on the common evaluation, {first}..{tail_last} ({days} days new to champion "
                f"version {champion.version}), MAE {mine['live/mae']:,.2f} USD against its "
                f"{theirs['live/mae']:,.2f} (ratio to persistence {mine['live/mae_ratio']:.4f} against "
                f"{theirs['live/mae_ratio']:.4f})")
        if mine["live/mae"] <= theirs["live/mae"]:
            return True, f"{text}: not worse, promoted"
        return False, f"{text}: worse, not promoted (promote it with --force)"

    return decide
