"""Training throughput of the 2018 model (3 x 512 LSTM, window 7, 4 features) on this machine.

Prints the device Keras trains on, then, for batch 12 and 128: samples per second,
training FLOP per sample (forward multiply-adds x 3, the usual forward + backward
estimate), achieved GFLOP/s, and that as a share of the machine's float32
matrix-multiply peak measured with numpy (on a CPU; on a GPU the share is left out).

    python bench/train_throughput.py [--data-dir ../shared/data] [--epochs 3] [--experiment FILE]

``--experiment experiments/default.yaml`` measures the same network with sigmoid gates,
which TensorFlow runs with the cuDNN LSTM kernel on a GPU (the seed protocol's
hard-sigmoid gates never do). Any Keras backend works (``KERAS_BACKEND=jax``...).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from cryptolstm.config import load_config
from cryptolstm.data import load_market
from cryptolstm.models.lstm import build_lstm, flops_per_sample, set_seed, training_device
from cryptolstm.splits import make_splits

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` float32 GEMM rate (GFLOP/s) of numpy's BLAS on an n x n product."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def train_rate(cfg, X: np.ndarray, y: np.ndarray, batch_size: int, epochs: int) -> float:
    """Samples per second over ``epochs`` epochs after one warm-up epoch (graph tracing excluded)."""
    set_seed(cfg.seed)
    model = build_lstm(cfg, X.shape[1], X.shape[2])
    model.fit(X, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False)
    return epochs * len(X) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--experiment", default=str(ROOT / "experiments" / "seed-2018.yaml"))
    args = parser.parse_args()

    cfg = load_config(args.experiment, data_dir=args.data_dir, end_date="2018-03-12")
    device = training_device()
    market = load_market(cfg.data_dir, cfg.merge_date, cfg.end_date)
    train = make_splits(market.frame, cfg).train
    flop = 3 * flops_per_sample(cfg, cfg.window_len, train.X.shape[2])
    peak = matmul_peak_gflops()
    print(f"device: {device}; machine: {os.cpu_count()} cores; numpy float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"model: {cfg.layers} x {cfg.neurons} LSTM, window {cfg.window_len}, gates {cfg.recurrent_activation}; "
          f"{len(train)} training samples; {flop / 1e6:.1f} MFLOP per training sample (3 x forward)")
    print(f"{'batch':>6} {'samples/s':>10} {'GFLOP/s':>9} {'% of peak':>10}")
    for batch in (12, 128):
        rate = train_rate(cfg, train.X, train.y, batch, args.epochs)
        achieved = rate * flop / 1e9
        share = f"{100 * achieved / peak:>9.1f}%" if device.endswith("CPU") else "(GPU)"
        print(f"{batch:>6} {rate:>10.1f} {achieved:>9.1f} {share:>10}")


if __name__ == "__main__":
    main()
