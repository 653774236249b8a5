#!/usr/bin/env bash
# Re-run the commands behind the figures the README and docs/results.md print, each in a fresh
# directory (its own mlflow.db), and print what each command printed. Takes about 30 minutes on
# 2 CPU cores. Usage, from the project root with the venv active:
#   bash bench/reproduce.sh [../shared/data]
# Compare the printed lines with docs/results.md (the 2018 reproduction, the honest runs, one
# backtest fold, an interval run and its forecast, a horizon run, and evaluate's check against
# training); docs/results.md says when they were last re-run.
set -euo pipefail
data=$(cd "${1:-../shared/data}" && pwd)
root=$(pwd)
fresh() { local d; d=$(mktemp -d); cd "$d"; export MLFLOW_TRACKING_URI="sqlite:///$d/mlflow.db"; }
run() { echo "+ cryptolstm $*"; cryptolstm "$@"; }

for coin in BTC ETH; do
  fresh; run train --experiment "$root/experiments/default.yaml" --coin $coin --data-dir "$data" --quiet
done
fresh; run train --experiment "$root/experiments/seed-2018.yaml" --coin BTC --data-dir "$data" --end-date 2018-03-12 --quiet
fresh; run backtest --config "$root/experiments/seed-2018.yaml" --coin BTC --seeds 1 --start 2019-01-01 \
  --end 2019-03-31 --data-dir "$data" --quiet
fresh; run train --experiment "$root/experiments/intervals.yaml" --coin BTC --data-dir "$data" --quiet
run register --coin BTC --quiet
run predict --coin BTC --data-dir "$data" --quiet
fresh; run train --coin BTC --horizon 3 --head quantile --layers 1 --neurons 16 --epochs 5 --merge-date 2019-01-01 \
  --data-dir "$data" --quiet
fresh; run train --experiment "$root/experiments/default.yaml" --coin BTC --data-dir "$data" --end-date 2022-12-31 --quiet
run register --coin BTC --quiet
run evaluate --model models:/cryptolstm-btc@champion --data-dir "$data" --since 2021-12-13 --until 2022-12-31 --quiet
