"""The market data a workflow needs: fetched if the directory holds none, loaded, and checked to hold
enough days for every configuration that will use it (before any run exists)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from cryptolstm.config import RunConfig
from cryptolstm.data import HOW_TO_SUPPLY, Market, load_market, snapshots
from cryptolstm.data import fetch as fetching
from cryptolstm.errors import CryptoLstmError, DataError
from cryptolstm.windowing import protocol_samples

log = logging.getLogger(__name__)


def ensure_data(data_dir: str, fetch_missing: bool = True) -> None:
    """Fetch prices into ``data_dir`` if it holds none and ``fetch_missing``; a network failure is one sentence."""
    if snapshots.has_data(data_dir) or not fetch_missing:
        return
    made = not Path(data_dir).exists()
    try:
        with snapshots.locked(data_dir):  # two commands on one empty directory fetch once
            if snapshots.has_data(data_dir):
                return
            log.info("no price data in %s: fetching it first", data_dir)
            report = fetching.fetch(data_dir, retry=replace(fetching.DEFAULT_RETRY, attempts=2))
    except fetching.NetworkUnavailable as exc:
        if made:  # nothing was fetched: leave no empty directory behind
            shutil.rmtree(data_dir, ignore_errors=True)
        raise CryptoLstmError(f"there is no price data in {data_dir} and it could not be fetched ({exc}); "
                              f"{HOW_TO_SUPPLY}") from None
    log.info("fetched snapshot %s", report.snapshot.id)


def prepare_market(cfg: RunConfig, fetch_missing: bool = True, checks: Iterable[RunConfig] | None = None,
                   to_last_day: bool = False) -> Market:
    """``cfg``'s merged market data (to its ``end_date``, or the data's last day with ``to_last_day``; never
    a sealed day), with the splits of every config in ``checks`` (default: ``cfg``) built to check they fit."""
    ensure_data(cfg.data_dir, fetch_missing)
    market = load_market(cfg.data_dir, cfg.merge_date, None if to_last_day else cfg.end_date,
                         cfg.fill_gaps, sealed_from=cfg.sealed_from)
    try:
        for each in (cfg,) if checks is None else checks:
            protocol_samples(market.frame, each)
    except DataError as exc:
        if cfg.sealed_from is None or (cfg.end_date or cfg.sealed_from) < cfg.sealed_from:
            raise  # no seal, or one after the days asked for: the seal took nothing away
        raise DataError(f"{str(exc).rstrip('.')}, or seal a later day than {cfg.sealed_from} (the seal ends the "
                        f"data on {market.last_date}).") from None
    return market
