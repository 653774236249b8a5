"""Wall time of a walk-forward backtest with folds fitted in sequence and in parallel processes.

Runs the same backtest with ``workers=1`` and ``workers=2`` (each worker then gets
cores/2 TensorFlow threads) and prints wall time, fits, seconds per fit, and
whether both gave the same forecasts. The defaults are the default backtest of the
2018 configuration (20 quarterly folds over 2019-2023, 3 seeds: 60 fits of a 3x512
LSTM per setting, hours on 2 cores); shrink it with the flags, e.g.

    python bench/backtest_speed.py --data-dir ../shared/data --start 2023-01-01 --seeds 2 --max-epochs 3
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from cryptolstm.backtest.runner import plan, run_backtest
from cryptolstm.options import BacktestOptions
from cryptolstm.config import load_config
from cryptolstm.data import load_market

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--config", default=str(ROOT / "experiments" / "seed-2018.yaml"))
    parser.add_argument("--coin", default="BTC")
    parser.add_argument("--start", default="2019-01-01")
    parser.add_argument("--end", default="2023-12-31")
    parser.add_argument("--fold-months", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=None)
    args = parser.parse_args()
    cfg = load_config(args.config, coin=args.coin, data_dir=args.data_dir)
    market = load_market(cfg.data_dir, cfg.merge_date)
    options = BacktestOptions(start=args.start, end=args.end, fold_months=args.fold_months, seeds=args.seeds,
                              max_epochs=args.max_epochs, arima=False)
    print(f"{cfg.coin}, {args.config}: {args.start}..{args.end}, {args.fold_months}-month folds, {args.seeds} seeds, "
          f"max_epochs {args.max_epochs or cfg.epochs}, {os.cpu_count()} cores")
    forecasts = {}
    for workers in (1, 2):
        started = time.perf_counter()
        result = run_backtest(plan(cfg, market, replace(options, workers=workers)))
        seconds = time.perf_counter() - started
        fits = len(result.folds) * args.seeds
        epochs = sum(v for f in result.folds for k, v in f.fit.items() if k.endswith(".epochs_run"))
        forecasts[workers] = np.concatenate([f.forecasts[k].close() for f in result.folds for k in sorted(f.forecasts) if k.startswith("lstm.")])
        print(f"workers={workers}: {seconds:8.1f} s wall, {fits} fits, {epochs:.0f} epochs, "
              f"{seconds / fits:6.1f} s per fit")
    gap = np.max(np.abs(forecasts[1] / forecasts[2] - 1.0))
    print(f"largest relative difference between the two settings' forecasts: {gap:.2e}")


if __name__ == "__main__":
    main()
