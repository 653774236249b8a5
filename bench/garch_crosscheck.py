"""Cross-check of the interval baselines against the figures issue 14 states.

GARCH(1,1) with Student-t innovations and a constant mean on daily log returns in percent,
fitted on 2016-01-01..2022-12-31 and filtered through 2023 with its parameters fixed, beside
every other declared interval baseline (HAR, the empirical quantiles of the last 365 daily
returns, the rolling Gaussian, the GARCH+HAR combination), each fitted on the same days.
Prints, for the 2023 days, CRPS in percent (simple returns x 100) and the coverage of the
central 80 % and 95 % intervals. Issue 14 expects for BTC: GARCH CRPS about 1.18 %, coverage
0.81 / 0.92; empirical about 1.19 %, 0.85 / 0.96.

    python bench/garch_crosscheck.py                # BTC
    python bench/garch_crosscheck.py --coin ETH
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cryptolstm.config import RunConfig
from cryptolstm.data import load_market
from cryptolstm.metrics import distribution_scores
from cryptolstm.models.base import History
from cryptolstm.models.interval_baselines import INTERVAL, Garch
from cryptolstm.splits import Period
from cryptolstm.windowing import samples as windows

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--coin", default="BTC")
    parser.add_argument("--start", default="2016-01-01", help="first training day")
    parser.add_argument("--test-start", default="2023-01-01", help="first forecast day")
    parser.add_argument("--test-end", default="2023-12-31", help="last forecast day")
    args = parser.parse_args()

    market = load_market(args.data_dir, args.start, args.test_end)
    frame, first = market.frame, pd.Timestamp(args.test_start)
    closes = frame[f"{args.coin}_close"]
    samples = windows(frame, RunConfig(coin=args.coin, window_len=2, merge_date=args.start),
                      Period("test", first, pd.Timestamp(args.test_end)))
    history = closes.loc[: first - pd.Timedelta(days=1)]

    days = pd.DatetimeIndex(samples.dates)
    print(f"{args.coin}: fit {history.index[0].date()}..{history.index[-1].date()} ({len(history) - 1} returns), "
          f"forecast {len(samples)} days {days[0].date()}..{days[-1].date()}")
    past = History(frame.loc[: first - pd.Timedelta(days=1)], args.coin)
    garch = Garch().fit(past)
    print("GARCH(1,1)-t params (percent log returns): "
          + ", ".join(f"{k}={v:.4f}" for k, v in garch.params.items()))
    actual = 100.0 * (samples.actual(1) / samples.ref_close - 1.0)  # percent simple returns of the next day
    print(f"{'forecaster':<18}{'CRPS %':>8}{'cov80':>8}{'cov95':>8}{'width80 %':>11}{'width95 %':>11}")
    for model in (garch, *(b().fit(past) for b in INTERVAL if b is not Garch)):
        forecast = model.predict(samples, History(frame, args.coin))
        scores = distribution_scores(100.0 * forecast.quantiles[:, 0, :], actual, forecast.levels)
        print(f"{model.name:<18}{scores['crps']:>8.3f}{scores['coverage_80']:>8.3f}{scores['coverage_95']:>8.3f}"
              f"{scores['width_80']:>11.2f}{scores['width_95']:>11.2f}")


if __name__ == "__main__":
    main()
