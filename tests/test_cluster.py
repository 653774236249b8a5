"""Backtests on a Dask cluster (`--cluster tcp://HOST:PORT`): a local cluster of two worker processes
on 127.0.0.1 forecasts what one process forecasts, and a worker killed mid-run has its jobs rerun;
a cluster left with no worker, or whose scheduler dies, fails the backtest in one sentence."""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster
from mlflow import MlflowClient

from cryptolstm.backtest.runner import plan, run_backtest
from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError
from cryptolstm.options import BacktestOptions
from cryptolstm.workflows import Environment, backtest

pytestmark = pytest.mark.slow

CFG = RunConfig(merge_date="2021-01-01", layers=1, neurons=4, epochs=2, batch_size=64, seed=7)
OPTIONS = dict(start="2021-07-01", end="2021-08-31", fold_months=1, seeds=2, arima=False)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as made:
        yield made


@pytest.fixture(scope="module")
def local(synthetic_market):
    return run_backtest(plan(CFG, synthetic_market, BacktestOptions(**OPTIONS)))


def _forecasts(result):
    table = result.forecasts.table.sort_values(["forecaster", "period", "origin", "horizon"])
    return table["forecast"].to_numpy(), table["forecaster"].tolist()


def test_a_backtest_on_two_workers_forecasts_what_one_process_does(cluster, local, synthetic_market):
    remote = run_backtest(plan(CFG, synthetic_market, BacktestOptions(**OPTIONS, cluster=cluster.scheduler_address)))
    (mine, names), (theirs, their_names) = _forecasts(local), _forecasts(remote)
    assert names == their_names and {"lstm.seed7", "lstm.seed8", "drift"} <= set(names)
    np.testing.assert_allclose(theirs, mine, rtol=1e-5, atol=1e-7)
    assert remote.scores.row("all", "lstm.seed7")["usd/mae"] == pytest.approx(
        local.scores.row("all", "lstm.seed7")["usd/mae"], rel=1e-5)


def test_a_worker_killed_mid_run_has_its_jobs_rerun(cluster, local, synthetic_market):
    """SIGKILL one worker process as soon as it runs a job: the scheduler reruns its jobs on the
    workers left (the nanny restarts the killed one), and the forecasts are the same."""
    client = Client(cluster.scheduler_address)
    pids = client.run(os.getpid)  # worker address -> its process
    done: dict = {}
    options = BacktestOptions(**OPTIONS, cluster=cluster.scheduler_address)
    thread = threading.Thread(target=lambda: done.update(result=run_backtest(plan(CFG, synthetic_market, options))))
    thread.start()
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and thread.is_alive():
        busy = [address for address, tasks in client.processing().items() if tasks]
        if busy:
            killed = pids[busy[0]]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    thread.join(timeout=600)
    client.close()
    assert killed is not None, "no job ran on the cluster"
    np.testing.assert_allclose(_forecasts(done["result"])[0], _forecasts(local)[0], rtol=1e-5, atol=1e-7)


def test_an_address_where_no_scheduler_answers_is_one_sentence(synthetic_market):
    """A refused connection is said at once (a host that does not resolve too, untested here: no test
    asks a name server)."""
    started = time.time()
    with pytest.raises(ConfigError, match=r"^nothing listens at tcp://127\.0\.0\.1:1 \(connection refused\); start"):
        run_backtest(plan(CFG, synthetic_market, BacktestOptions(**OPTIONS, cluster="tcp://127.0.0.1:1")))
    assert time.time() - started < 10  # at once: the 15 s wait is for an address that does not answer


def test_the_cluster_option_takes_a_scheduler_address_only():
    with pytest.raises(ConfigError, match="cluster must be a Dask scheduler's address"):
        BacktestOptions(cluster="127.0.0.1:8786")


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill_when_busy(address: str, process: subprocess.Popen, running: threading.Thread) -> bool:
    """SIGKILL ``process`` as soon as the scheduler at ``address`` says a job runs; whether it did."""
    with Client(address, timeout="30s") as client:
        deadline = time.time() + 120
        while time.time() < deadline and running.is_alive():
            if any(client.processing().values()):
                process.kill()
                return True
            time.sleep(0.2)
    return False


def _in_thread(call) -> tuple[threading.Thread, dict]:
    done: dict = {}

    def run():
        try:
            done["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - what the test checks
            done["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done


@pytest.fixture
def scheduler_only():
    """A Dask scheduler on 127.0.0.1 with no worker."""
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=":0") as made:
        yield made.scheduler_address


def test_a_cluster_with_no_worker_says_so_and_gives_up(scheduler_only, synthetic_market, caplog):
    options = BacktestOptions(**OPTIONS, cluster=scheduler_only, worker_wait=2)
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError) as refused:
        run_backtest(plan(CFG, synthetic_market, options))
    assert str(refused.value) == (f"no Dask worker was connected to {scheduler_only} for 2 s; start one with "
                                  f"`dask worker {scheduler_only}` and run the same command (--worker-wait sets how "
                                  f"long to wait).")
    assert f"no Dask worker is connected to {scheduler_only}; waiting up to 2 s for one" in caplog.text


def test_the_only_worker_killed_mid_run_fails_the_backtest_in_one_sentence(scheduler_only, synthetic_market):
    worker = _start("distributed.cli.dask_worker", scheduler_only, "--no-nanny", "--nthreads", "1", "--no-dashboard")
    try:
        with Client(scheduler_only, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        options = BacktestOptions(**OPTIONS, cluster=scheduler_only, worker_wait=3)
        thread, done = _in_thread(lambda: run_backtest(plan(CFG, synthetic_market, options)))
        killed = _kill_when_busy(scheduler_only, worker, thread)
        thread.join(timeout=120)
    finally:
        worker.kill()
    assert killed and not thread.is_alive(), "the backtest waited for ever"
    assert isinstance(done.get("error"), ConfigError), done
    assert str(done["error"]).startswith(f"no Dask worker was connected to {scheduler_only} for 3 s")


def test_the_scheduler_dying_mid_run_is_the_runs_error_tag(tracking, tmp_path, synthetic_data, capfd):
    address = f"tcp://127.0.0.1:{_free_port()}"
    scheduler = _start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                       "--no-dashboard")
    worker = _start("distributed.cli.dask_worker", address, "--no-nanny", "--nthreads", "1", "--no-dashboard")
    (tmp_path / "tiny.yaml").write_text("merge_date: 2021-01-01\nlayers: 1\nneurons: 4\nepochs: 2\nbatch_size: 64\n"
                                       "seed: 7\n")
    options = BacktestOptions(config=str(tmp_path / "tiny.yaml"), coin="BTC", data_dir=str(synthetic_data),
                              **OPTIONS, cluster=address)
    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=60)
        thread, done = _in_thread(lambda: backtest(options, Environment(progress=False)))
        killed = _kill_when_busy(address, scheduler, thread)
        thread.join(timeout=120)
    finally:
        worker.kill()
        scheduler.kill()
    assert killed and not thread.is_alive(), "the backtest waited for ever"
    sentence = (f"the Dask scheduler at {address} went away during the backtest; start it and its workers again, "
                f"then run the same command.")
    assert isinstance(done.get("error"), ConfigError) and str(done["error"]) == sentence, done
    (run,) = MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()])
    assert (run.info.status, run.data.tags["error"]) == ("FAILED", sentence)
    assert "Traceback" not in capfd.readouterr().err
