"""Trials per minute of one study with 1 and 2 worker processes on PostgreSQL.

Each setting gets a fresh Optuna database and a fresh MLflow store (MLflow writes straight to
PostgreSQL too), then starts the workers with the same `cryptolstm search` command and times
them from start until every one has exited.

    CRYPTOLSTM_TEST_POSTGRES=postgresql://user:pw@127.0.0.1:5432/postgres python bench/scaleout.py [--trials 12]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
SPACE = """base: {base}
space:
  dropout: {{type: float, low: 0.0, high: 0.4}}
  learning_rate: {{type: float, low: 0.0005, high: 0.005, log: true}}
"""


def database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("CRYPTOLSTM_TEST_POSTGRES"))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    if not args.postgres:
        sys.exit("error: give --postgres or set CRYPTOLSTM_TEST_POSTGRES to a PostgreSQL server's URL.")
    tmp = Path(tempfile.mkdtemp(prefix="scaleout-"))
    (tmp / "base.yaml").write_text(f"merge_date: '2022-01-01'\nlayers: 1\nneurons: 16\nepochs: {args.epochs}\nbatch_size: 32\n")
    (tmp / "space.yaml").write_text(SPACE.format(base=tmp / "base.yaml"))
    print(f"{args.trials} trials of a 1x16 LSTM, {args.epochs} epochs each, BTC 2022-2023, {os.cpu_count()} cores")
    for workers in (1, 2):
        tag = uuid.uuid4().hex[:8]
        storage, store = database(args.postgres, f"bench_optuna_{tag}"), database(args.postgres, f"bench_mlflow_{tag}")
        env = {**os.environ, "MLFLOW_TRACKING_URI": store, "CRYPTOLSTM_OFFLINE": "1"}
        command = [sys.executable, "-m", "cryptolstm", "search", "--space", str(tmp / "space.yaml"), "--study-name",
                   "bench", "--storage", storage, "--n-trials", str(args.trials), "--data-dir", args.data_dir,
                   "--prune", "false", "--register", "false", "--heartbeat", "10", "--quiet"]
        started = time.perf_counter()
        logs = [open(tmp / f"w{workers}-{i}.err", "w") for i in range(workers)]
        procs = [subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=log) for log in logs]
        codes = [p.wait() for p in procs]
        for code, log in zip(codes, logs):
            if code:
                print(f"  a worker failed: {Path(log.name).read_text().strip().splitlines()[-1]}")
        minutes = (time.perf_counter() - started) / 60
        study = optuna.load_study(study_name="bench", storage=storage)
        complete = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        print(f"workers={workers}: {complete} complete trials in {minutes * 60:6.1f} s -> "
              f"{complete / minutes:5.1f} trials/min (exit codes {codes})")


if __name__ == "__main__":
    main()
