"""Cold start and forecast latency of registered models, in a fresh process, in process and served.

For each model (an MLflow pyfunc logged by `cryptolstm train`) it prints:

1. cold start in a fresh Python process (median of ``--repeats`` processes, after one
   unmeasured process that warms the disk cache and any bytecode cache): wall time of
   ``import mlflow.pyfunc``, of ``mlflow.pyfunc.load_model(uri)`` and of the first forecast
   of one window, their total, the whole process's wall time, and which of tensorflow, keras
   and onnxruntime ended up in ``sys.modules``;
2. warm in-process latency of ``model.predict(rows)`` for one window (p50 and p99 of
   ``--calls`` calls after ``--warmup``);
3. ``mlflow models serve --env-manager local``: seconds until ``/ping`` answers, the first
   POST ``/invocations`` of one window, then p50 and p99 of ``--requests`` more after
   ``--warmup`` (the server is killed, with its process group, however the run ends);
4. where the model takes the ``every_day`` parameter (models logged since the ONNX export),
   the wall time of one call forecasting every one of the ``--year-days`` days up to ``--end``
   (365 origins, 365 + window_len - 1 rows, in one call).

It also prints reference floors: fresh processes that only ``import mlflow.pyfunc``,
``import onnxruntime`` or ``import tensorflow``. Every model runs in its own processes, none
of which imports cryptolstm before loading it: a loaded model runs its own copy of the
package (MLflow code_paths), which an earlier import would shadow.

    python bench/serve_latency.py --data-dir ../shared/data \\
        --model before=runs:/0dda.../model --model after=models:/cryptolstm-btc/1

    # or train the models first (2 to 5 minutes each; into --workdir's tracking store
    # unless MLFLOW_TRACKING_URI is set): the code of this checkout, and an older checkout
    git worktree add /tmp/before 60a5800
    python bench/serve_latency.py --data-dir ../shared/data --train before=/tmp/before --train after

``--train LABEL[=CODE_DIR]`` runs ``python -m cryptolstm train --coin BTC --end-date
2022-12-31`` with the default experiment (3 x 512 LSTM) and CODE_DIR first on PYTHONPATH (this
checkout's installed package without it), from ``--workdir``, and measures ``runs:/<id>/model``.
Timings only: nothing is asserted. An environment without .pyc files (``PYTHONDONTWRITEBYTECODE=1``
and a read-only or never-compiled site-packages) compiles every imported module from source in
every process, seconds of a cold start; ``--pycache DIR`` gives the children a bytecode cache
outside the environment (``PYTHONPYCACHEPREFIX``) to measure what an ordinary install sees.
"""

from __future__ import annotations

# Standard library only up here: the same file runs as the measured child process, whose
# first import of mlflow (and numpy, pandas) must be the one it times.
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WATCHED = ("tensorflow", "keras", "onnxruntime")  # the heavy modules a cold start may import
COINS = ("BTC", "ETH")


def child(uri: str, rows_csv: str, warm: bool, calls: int, warmup: int, year_days: int) -> None:
    """The measured process: import, load, first forecast of one window (timed), then with
    ``warm`` the in-process latency and the ``every_day`` year; prints one ``RESULT`` JSON line."""
    started = time.perf_counter()
    import mlflow.pyfunc

    imported = time.perf_counter()
    model = mlflow.pyfunc.load_model(uri)
    loaded = time.perf_counter()
    import pandas as pd

    frame = pd.read_csv(rows_csv, dtype={"date": str})
    window_len = model.unwrap_python_model().lstm.cfg.window_len
    rows = frame.tail(window_len).reset_index(drop=True)
    before_first = time.perf_counter()
    first = model.predict(rows)
    done = time.perf_counter()
    cryptolstm = sys.modules.get("cryptolstm")
    result = {"import_s": imported - started, "load_s": loaded - imported, "first_s": done - before_first,
              "window_len": window_len, "forecast": float(first["forecast_close"].iloc[0]),
              "modules": [m for m in WATCHED if m in sys.modules],
              "cryptolstm": getattr(cryptolstm, "__file__", None)}
    if warm:
        for _ in range(warmup):
            model.predict(rows)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            model.predict(rows)
            times.append(time.perf_counter() - t)
        result["warm_s"] = times
        schema = model.metadata.get_params_schema()
        if schema is not None and "every_day" in {p.name for p in schema.params}:
            year = frame.tail(year_days + window_len - 1).reset_index(drop=True)
            t = time.perf_counter()
            out = model.predict(year, params={"every_day": True})
            result["every_day_s"] = time.perf_counter() - t
            result["every_day_rows"], result["every_day_origins"] = len(year), len(out)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(args: argparse.Namespace, uri: str, rows_csv: Path, env: dict, warm: bool) -> dict:
    """One fresh child process for ``uri``: its RESULT dict, plus its whole wall time ``process_s``."""
    command = [sys.executable, __file__, "--child", uri, "--rows-csv", str(rows_csv), "--calls", str(args.calls),
               "--warmup", str(args.warmup), "--year-days", str(args.year_days)] + (["--warm"] if warm else [])
    started = time.perf_counter()
    done = subprocess.run(command, cwd=args.workdir, env=env, capture_output=True, text=True, timeout=900)
    process_s = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child for {uri} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "process_s": process_s}


def floor(code: str, env: dict, repeats: int) -> float:
    """Median wall time of ``repeats`` fresh ``python -c code`` processes (after one unmeasured)."""
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def market_rows(data_dir: str, end: str, path: Path) -> Path:
    """The model's input rows (date, {COIN}_close, {COIN}_volume) from 2016-01-01 to ``end``,
    written to ``path`` as CSV (the children read their window or their year from its tail)."""
    import pandas as pd

    frames = []
    for coin in COINS:
        raw = pd.read_csv(Path(data_dir) / f"{coin.lower()}-usd-daily.csv", usecols=["date", "close", "volume"])
        frames.append(raw.rename(columns={"close": f"{coin}_close", "volume": f"{coin}_volume"}).set_index("date"))
    frame = frames[0].join(frames[1:], how="inner").sort_index().loc["2016-01-01":end]
    frame.reset_index().to_csv(path, index=False)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> float:
    """Seconds of one POST of JSON ``body`` to ``url`` (the response read in full)."""
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def serve(args: argparse.Namespace, uri: str, rows_csv: Path, window_len: int, env: dict) -> dict:
    """``mlflow models serve`` of ``uri``: seconds to a /ping answer, the first request's and
    the p50/p99 of ``args.requests`` later requests' seconds for one window; the server's
    process group is killed at the end, error or not."""
    import urllib.request

    import pandas as pd

    rows = pd.read_csv(rows_csv, dtype={"date": str}).tail(window_len)
    body = json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)}).encode()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(Path(args.workdir) / f"serve-{port}.log", "w")
    started = time.perf_counter()
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "-p", str(port),
                               "-h", "127.0.0.1"], cwd=args.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited ({server.returncode}); see {log.name}")
            if time.perf_counter() - started > args.serve_timeout:
                raise RuntimeError(f"no /ping answer in {args.serve_timeout} s; see {log.name}")
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        ready_s = time.perf_counter() - started
        first_s = post(base + "/invocations", body)
        for _ in range(args.warmup):
            post(base + "/invocations", body)
        times = [post(base + "/invocations", body) for _ in range(args.requests)]
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    return {"ready_s": ready_s, "first_s": first_s, "p50_s": percentile(times, 50), "p99_s": percentile(times, 99)}


def train(spec: str, args: argparse.Namespace, env: dict) -> tuple[str, str]:
    """Train the default BTC model with the code of ``spec`` (``LABEL`` or ``LABEL=CODE_DIR``) into
    the tracking store; returns (label, ``runs:/<id>/model``)."""
    label, _, code_dir = spec.partition("=")
    env = dict(env)
    if code_dir:
        code_dir = str(Path(code_dir).resolve())
        env["PYTHONPATH"] = code_dir + os.pathsep + env.get("PYTHONPATH", "")
    where = subprocess.run([sys.executable, "-c", "import cryptolstm; print(cryptolstm.__file__)"], cwd=args.workdir,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if code_dir and not where.startswith(code_dir + os.sep):
        raise SystemExit(f"--train {spec}: python imports cryptolstm from {where}, not from {code_dir}")
    experiment = Path(code_dir or ROOT) / "experiments" / "default.yaml"
    print(f"training {label} with {Path(where).parent} ({experiment})...", flush=True)
    done = subprocess.run([sys.executable, "-m", "cryptolstm", "train", "--coin", "BTC", "--data-dir", args.data_dir,
                           "--end-date", "2022-12-31", "--experiment", str(experiment), "-q"], cwd=args.workdir,
                          env=env, capture_output=True, text=True)
    found = re.search(r"^run ([0-9a-f]+) ", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise SystemExit(f"training {label} failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    print(f"  run {found.group(1)}", flush=True)
    return label, f"runs:/{found.group(1)}/model"


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "--model-uri", dest="models", action="append", default=[], metavar="LABEL=URI",
                        help="a model to measure (repeatable); a bare URI is its own label")
    parser.add_argument("--train", action="append", default=[], metavar="LABEL[=CODE_DIR]",
                        help="train a model first with the cryptolstm in CODE_DIR (default: this checkout's)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--workdir", default="/tmp/serve_bench", help="cwd of every child (mlruns/, server logs)")
    parser.add_argument("--end", default="2023-12-31", help="last day of the forecast window and of the year")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per cold start (median)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--year-days", type=int, default=365, help="origins of the every_day forecast")
    parser.add_argument("--serve-timeout", type=float, default=300.0)
    parser.add_argument("--pycache", metavar="DIR", help="give the children a bytecode cache in DIR "
                        "(PYTHONPYCACHEPREFIX, PYTHONDONTWRITEBYTECODE unset): for an environment without .pyc files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows-csv", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    """Measure every model and print the tables."""
    args = parse_args()
    if args.child:
        child(args.child, args.rows_csv, args.warm, args.calls, args.warmup, args.year_days)
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if args.pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(args.pycache).resolve())
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(args.workdir).resolve()}/mlflow.db")
    models = [train(spec, args, env) for spec in args.train]
    models += [tuple(m.split("=", 1)) if re.match(r"^\w+=", m) else (m, m) for m in args.models]
    if not models:
        raise SystemExit("no model: give --model LABEL=URI or --train LABEL[=CODE_DIR]")
    rows_csv = market_rows(args.data_dir, args.end, Path(args.workdir) / "rows.csv")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
          f"python {sys.version.split()[0]}; tracking {env['MLFLOW_TRACKING_URI']}")
    print(f"bytecode: PYTHONDONTWRITEBYTECODE={env.get('PYTHONDONTWRITEBYTECODE', '')!r}, "
          f"PYTHONPYCACHEPREFIX={env.get('PYTHONPYCACHEPREFIX', '')!r}")
    for label, uri in models:
        print(f"  {label}: {uri}")
    floors = {code: floor(code, env, args.repeats) for code in
              ("import mlflow.pyfunc", "import onnxruntime", "import tensorflow")}
    print(f"\nreference floors, fresh process wall, median of {args.repeats} (after one unmeasured): "
          + "; ".join(f'python -c "{code}" {s:.2f} s' for code, s in floors.items()))

    width = max(len(label) for label, _ in models)
    print(f"\ncold start in a fresh process, seconds, median of {args.repeats} processes (after one unmeasured)")
    print(f"{'model':<{width}}  import mlflow.pyfunc  load_model  first forecast  total  process  modules loaded")
    results = {}
    for label, uri in models:
        runs = [run_child(args, uri, rows_csv, env, warm=False) for _ in range(args.repeats + 1)][1:]
        median = {k: statistics.median(r[k] for r in runs) for k in ("import_s", "load_s", "first_s", "process_s")}
        total = statistics.median(r["import_s"] + r["load_s"] + r["first_s"] for r in runs)
        results[label] = runs[0]
        print(f"{label:<{width}}  {median['import_s']:20.2f}  {median['load_s']:10.2f}  {median['first_s']:14.3f}  "
              f"{total:5.2f}  {median['process_s']:7.2f}  {','.join(runs[0]['modules']) or '-'}")
    for label, _ in models:
        print(f"  {label}: cryptolstm from {results[label]['cryptolstm']}; forecast {results[label]['forecast']:.2f} USD")

    print(f"\nwarm latency, one window: in process ({args.calls} predict calls after {args.warmup}) and served "
          f"({args.requests} POST /invocations after {args.warmup}, 127.0.0.1)")
    print(f"{'model':<{width}}  predict p50 ms  p99 ms  serve ready s  first POST ms  POST p50 ms  p99 ms")
    years = {}
    for label, uri in models:
        warm = run_child(args, uri, rows_csv, env, warm=True)
        served = serve(args, uri, rows_csv, warm["window_len"], env)
        ms = [1000 * s for s in warm["warm_s"]]
        print(f"{label:<{width}}  {percentile(ms, 50):14.2f}  {percentile(ms, 99):6.2f}  {served['ready_s']:13.2f}  "
              f"{1000 * served['first_s']:13.1f}  {1000 * served['p50_s']:11.2f}  {1000 * served['p99_s']:6.2f}",
              flush=True)
        years[label] = warm

    print(f"\nevery_day: one predict(params={{'every_day': True}}) over {args.year_days} origins to {args.end}")
    for label, warm in years.items():
        if "every_day_s" in warm:
            print(f"  {label}: {warm['every_day_s'] * 1000:.1f} ms ({warm['every_day_rows']} rows in, "
                  f"{warm['every_day_origins']} forecasts out)")
        else:
            print(f"  {label}: n/a (the model does not take every_day)")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
