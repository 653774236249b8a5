"""Training throughput of the 2018 model (3 x 512 LSTM, window 7, 4 features) on this machine.

Prints the device Keras trains on, then, for batch 12 and 128: samples per second,
training FLOP per sample (forward multiply-adds x 3, the usual forward + backward
estimate), achieved GFLOP/s, and that as a share of the machine's float32
matrix-multiply peak measured with numpy (on a CPU; on a GPU the share is left out).

    python bench/train_throughput.py [--data-dir ../shared/data] [--epochs 3] [--experiment FILE]
        [--variant NAME ...]

``--variant`` measures the ways of running the same network that bench/README.md reports
(``default``: what training uses; ``loop``: Keras' recurrent loop, the default before; ``unroll``,
``xla``, ``unroll+xla``, ``threads-2-1``, ``threads-1-1``, ``steps-8``, ``no-onednn``: one change
each from ``loop``); each runs in its own process, since TensorFlow's thread and
oneDNN settings are fixed once a process has started it. ``--experiment
experiments/default.yaml`` measures the same network with sigmoid gates. Any Keras backend
works (``KERAS_BACKEND=jax``...).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LOOP = {"unroll": False}  # Keras' own default, the harness's before #22; the variants below change one thing from it
VARIANTS = {  # name -> (environment, build options, compile options, TensorFlow threads (intra, inter))
    "default": ({}, {}, {}, None),  # what training uses: unrolled on a CPU (`default_unroll`)
    "loop": ({}, LOOP, {}, None),
    "unroll": ({}, {"unroll": True}, {}, None),
    "xla": ({}, {**LOOP, "jit_compile": True}, {}, None),
    "unroll+xla": ({}, {"unroll": True, "jit_compile": True}, {}, None),
    "threads-2-1": ({}, LOOP, {}, (2, 1)),
    "threads-1-1": ({}, LOOP, {}, (1, 1)),
    "steps-8": ({}, LOOP, {"steps_per_execution": 8}, None),
    "no-onednn": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, LOOP, {}, None),
}


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


def training_windows(experiment: str, data_dir: str):
    """(config, X, y) of the 2018 range's training samples."""
    from cryptolstm.config import load_config
    from cryptolstm.data import load_market
    from cryptolstm.windowing import inputs, protocol_samples

    cfg = load_config(experiment, data_dir=data_dir, end_date="2018-03-12")
    frame = load_market(cfg.data_dir, cfg.merge_date, cfg.end_date).frame
    _, made = protocol_samples(frame, cfg)
    return cfg, inputs(frame, cfg, {}, made["train"]), made["train"].y


def train_rate(cfg, X: np.ndarray, y: np.ndarray, batch_size: int, epochs: int, variant: str) -> float:
    """Samples per second over ``epochs`` epochs after one warm-up epoch (graph tracing excluded)."""
    from cryptolstm.models.lstm import build_lstm, set_seed

    _, build, compile_options, _ = VARIANTS[variant]
    set_seed(cfg.seed)
    model = build_lstm(cfg, X.shape[1], X.shape[2], **build)
    if compile_options:
        model.compile(loss=model.loss, optimizer=model.optimizer, **compile_options)
    model.fit(X, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False)
    return epochs * len(X) / (time.perf_counter() - start)


def measure(variant: str, args) -> dict:
    """This process's measurement of ``variant`` (its threads set before TensorFlow runs anything)."""
    threads = VARIANTS[variant][3]
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(threads[1])
    from cryptolstm.models.lstm import flops_per_sample, training_device

    cfg, X, y = training_windows(args.experiment, args.data_dir)
    rates = {batch: train_rate(cfg, X, y, batch, args.epochs, variant) for batch in (12, 128)}
    return {"device": training_device(), "samples": len(X), "flop": 3 * flops_per_sample(cfg, cfg.window_len, X.shape[2]),
            "rates": rates, "gates": cfg.recurrent_activation, "model": f"{cfg.layers} x {cfg.neurons}",
            "window": cfg.window_len}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--experiment", default=str(ROOT / "experiments" / "seed-2018.yaml"))
    parser.add_argument("--variant", nargs="+", default=["default"], choices=list(VARIANTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process measuring one variant
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    peak = matmul_peak_gflops()
    print(f"machine: {os.cpu_count()} cores; numpy float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'variant':<13}{'batch':>6} {'samples/s':>10} {'GFLOP/s':>9} {'% of peak':>10}")
    for variant in args.variant:
        env = {**os.environ, **VARIANTS[variant][0]}
        out = subprocess.run([sys.executable, __file__, "--one", variant, "--data-dir", args.data_dir, "--epochs",
                              str(args.epochs), "--experiment", args.experiment], capture_output=True, text=True, env=env)
        if out.returncode:
            print(f"{variant:<13} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        got = json.loads(out.stdout.strip().splitlines()[-1])
        for batch, rate in got["rates"].items():
            achieved = rate * got["flop"] / 1e9
            share = f"{100 * achieved / peak:>9.1f}%" if got["device"].endswith("CPU") else "(GPU)"
            print(f"{variant:<13}{batch:>6} {rate:>10.1f} {achieved:>9.1f} {share:>10}")
    print(f"({got['device']}; model {got['model']} LSTM, window {got['window']}, gates {got['gates']}; "
          f"{got['samples']} training samples; {got['flop'] / 1e6:.1f} MFLOP per training sample (3 x forward))")


if __name__ == "__main__":
    main()
