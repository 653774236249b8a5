"""A backtest in MLflow: one parent run (``config.*`` and ``backtest.*`` params, the data, then its record)
and a child run per fold, each written from its record (`cryptolstm.backtest.record` makes them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlflow
import pandas as pd

from cryptolstm.backtest import record
from cryptolstm.backtest.runner import BacktestResult, FoldResult, Plan, run_backtest
from cryptolstm.models.lstm import training_device
from cryptolstm.tracking.runs import config_params, log_dataset, run_scope, write_record


def tracked_backtest(plan: Plan, source_tags: dict[str, str], on_fold: Callable[[FoldResult], None] | None = None,
                     launched: str | None = None,
                     on_epoch: Sequence = ()) -> tuple[str, BacktestResult, pd.DataFrame, str]:
    """Run the ``plan`` inside one parent run; returns (run id, result, metrics table, Markdown). ``on_fold``
    after each fold is logged, ``on_epoch`` in the fits."""
    cfg, fold_cfg, options, market = plan.source, plan.config, plan.options, plan.market
    with run_scope(fold_cfg, options.experiment_name, name=record.parent_name(cfg, options), launched=launched) as run:
        parent_id = run.info.run_id
        mlflow.set_tags({"coin": cfg.coin, "cryptolstm.entry": "backtest", "protocol": "walk-forward",
                         "device": training_device(), "backtest.source_protocol": cfg.protocol, **source_tags})
        mlflow.log_params(config_params(fold_cfg, market.last_date))
        mlflow.log_params(record.backtest_params(options, fold_cfg) | {"backtest.folds": len(plan.folds)})
        mlflow.log_dict(fold_cfg.to_dict(), "config.yaml")
        log_dataset(market, fold_cfg)

        def fold_done(fold: FoldResult) -> None:  # the fold's child run
            made = record.fold(fold)
            with mlflow.start_run(run_name=made.tags["mlflow.runName"], nested=True, parent_run_id=parent_id):
                write_record(made)
            if on_fold is not None:
                on_fold(fold)

        result = run_backtest(plan, fold_done, on_epoch)
        made, table, markdown = record.summary(result)
        write_record(made)
    return parent_id, result, table, markdown
