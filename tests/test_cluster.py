"""Backtests on a Dask cluster (`--cluster tcp://HOST:PORT`): a local cluster of two worker processes
on 127.0.0.1 forecasts what one process forecasts, and a worker killed mid-run has its jobs rerun."""

import os
import signal
import threading
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster

from cryptolstm.backtest.runner import run_backtest
from cryptolstm.config import RunConfig
from cryptolstm.errors import ConfigError
from cryptolstm.options import BacktestOptions

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
    return run_backtest(CFG, synthetic_market, BacktestOptions(**OPTIONS))


def _forecasts(result):
    table = result.forecasts.table.sort_values(["forecaster", "period", "origin", "horizon"])
    return table["forecast"].to_numpy(), table["forecaster"].tolist()


def test_a_backtest_on_two_workers_forecasts_what_one_process_does(cluster, local, synthetic_market):
    remote = run_backtest(CFG, synthetic_market, BacktestOptions(**OPTIONS, cluster=cluster.scheduler_address))
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
    thread = threading.Thread(target=lambda: done.update(result=run_backtest(CFG, synthetic_market, options)))
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
        run_backtest(CFG, synthetic_market, BacktestOptions(**OPTIONS, cluster="tcp://127.0.0.1:1"))
    assert time.time() - started < 10  # at once: the 15 s wait is for an address that does not answer


def test_the_cluster_option_takes_a_scheduler_address_only():
    with pytest.raises(ConfigError, match="cluster must be a Dask scheduler's address"):
        BacktestOptions(cluster="127.0.0.1:8786")
