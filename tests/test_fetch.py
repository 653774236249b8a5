"""Fetching through ccxt against Coinbase Exchange's real wire format (offline, `responses`),
snapshots and their manifest, incremental updates, and `data verify`."""

import datetime as dt
import json
import os
import socket
import stat
import time

import mlflow
import pandas as pd
import pytest
import responses
from mlflow import MlflowClient
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.data import load_market, snapshots
from cryptolstm.data.fetch import PAGE_DAYS, NetworkUnavailable, RetryPolicy, fetch, make_exchange
from cryptolstm.errors import DataError
from tests.coinbase_fake import API, LISTED, FakeCoinbase, candle

FAST = RetryPolicy(attempts=3, first_wait=0.01)
runner = CliRunner()


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=dt.UTC)


@pytest.fixture
def coinbase():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_full_history_is_paginated_and_stops_before_the_unfinished_day(coinbase, tmp_path):
    fake = FakeCoinbase(coinbase)
    report = fetch(str(tmp_path), now=at("2020-03-01", hour=23), retry=FAST)
    btc = [c for c in fake.calls if c["product"] == "BTC-USD"]
    # 2015-01-01 .. 2020-02-29 in pages of at most 300 days, each asked for once, back to back.
    assert len(btc) == -(-(dt.date(2020, 3, 1) - dt.date(2015, 1, 1)).days // PAGE_DAYS)
    starts = [pd.Timestamp(c["start"]).date() for c in btc]
    assert starts[0] == dt.date(2015, 1, 1) and all((b - a).days == PAGE_DAYS for a, b in zip(starts, starts[1:]))
    market = load_market(tmp_path, "2016-01-01")
    assert market.last_date == "2020-02-29"  # 2020-03-01 has not ended in UTC at 23:00
    assert report.new_days == {"BTC": (dt.date(2020, 3, 1) - LISTED["BTC-USD"]).days,
                               "ETH": (dt.date(2020, 3, 1) - LISTED["ETH-USD"]).days}
    day = dt.date(2019, 6, 1)
    expected = candle("BTC-USD", day)
    row = market.frame.loc[pd.Timestamp(day)]
    assert (row["BTC_low"], row["BTC_high"], row["BTC_open"], row["BTC_close"]) == tuple(expected[1:5])
    assert row["BTC_volume"] == pytest.approx(expected[5] * expected[4])  # coins -> USD at the close


def test_manifest_names_a_read_only_snapshot_with_fingerprints(coinbase, tmp_path):
    FakeCoinbase(coinbase)
    snap = fetch(str(tmp_path), now=at("2019-01-10"), retry=FAST).snapshot
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["current"] == f"snapshots/{snap.id}"
    entry = manifest["snapshots"][snap.id]
    assert entry["source"] == "coinbaseexchange" and entry["last_date"] == "2019-01-09"
    assert entry["coins"]["BTC"]["symbol"] == "BTC/USD" and entry["coins"]["ETH"]["first_date"] == "2016-05-18"
    for coin in ("BTC", "ETH"):
        path = snapshots.coin_file(tmp_path / manifest["current"], coin)
        assert snapshots.sha256(path) == entry["coins"][coin]["sha256"]
        assert entry["coins"][coin]["rows"] == len(pd.read_csv(path))
        assert not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert json.loads((tmp_path / manifest["current"] / "snapshot.json").read_text())["id"] == snap.id


def test_a_rate_limit_is_retried_with_backoff(coinbase, tmp_path):
    fake = FakeCoinbase(coinbase, rate_limited=2)
    fetch(str(tmp_path), coins=("ETH",), now=at("2016-07-01"), retry=FAST)
    starts = [c["start"][:10] for c in fake.calls]
    assert starts == ["2015-01-01"] * 3 + ["2015-10-28"]  # the first page: two 429s, then it; then page two
    assert load_market_days(tmp_path, "ETH") == (dt.date(2016, 7, 1) - LISTED["ETH-USD"]).days


def load_market_days(path, coin):
    return len(pd.read_csv(snapshots.coin_file(snapshots.resolve(path), coin)))


def test_update_fetches_only_new_days_and_checks_the_overlap(coinbase, tmp_path):
    fake = FakeCoinbase(coinbase)
    first = fetch(str(tmp_path), now=at("2020-01-01"), retry=FAST).snapshot
    fake.calls.clear()
    report = fetch(str(tmp_path), now=at("2020-01-06"), retry=FAST)
    assert report.mode == {"BTC": "update", "ETH": "update"} and report.new_days == {"BTC": 5, "ETH": 5}
    assert [pd.Timestamp(c["start"]).date() for c in fake.calls] == [dt.date(2019, 12, 31)] * 2  # the overlap day on
    assert report.snapshot.coins["BTC"].last_date == "2020-01-05"
    assert report.snapshot.coins["BTC"].rows == first.coins["BTC"].rows + 5
    old = pd.read_csv(snapshots.coin_file(tmp_path / "snapshots" / first.id, "BTC"))
    new = pd.read_csv(snapshots.coin_file(snapshots.resolve(tmp_path), "BTC"))
    pd.testing.assert_frame_equal(new.iloc[: len(old)], old)
    # Nothing new yet: no new snapshot.
    assert fetch(str(tmp_path), now=at("2020-01-06", hour=20), retry=FAST).snapshot is None
    # --full for one coin takes that coin's whole history again and keeps the other coin as it was.
    eth = report.snapshot.coins["ETH"]
    full = fetch(str(tmp_path), coins=("BTC",), full=True, now=at("2020-01-07"), retry=FAST)
    assert full.mode == {"BTC": "full"} and full.snapshot.coins["BTC"].first_date == "2015-07-20"
    assert full.snapshot.coins["BTC"].last_date == "2020-01-06" and full.snapshot.coins["ETH"].sha256 == eth.sha256


def test_a_revised_overlap_day_is_reported_not_merged(coinbase, tmp_path):
    FakeCoinbase(coinbase)
    fetch(str(tmp_path), now=at("2020-01-01"), retry=FAST)
    before = (tmp_path / "manifest.json").read_text()
    coinbase.reset()
    FakeCoinbase(coinbase, revised={dt.date(2019, 12, 31): 1.01})
    with pytest.raises(DataError, match=r"BTC close on 2019-12-31 was [0-9.]+ when stored but coinbaseexchange now says [0-9.]+; nothing was written"):
        fetch(str(tmp_path), now=at("2020-01-03"), retry=FAST)
    assert (tmp_path / "manifest.json").read_text() == before
    assert len(list((tmp_path / "snapshots").iterdir())) == 1


def test_a_network_failure_half_way_leaves_the_previous_data_intact(coinbase, tmp_path):
    FakeCoinbase(coinbase)
    fetch(str(tmp_path), now=at("2019-01-01"), retry=FAST)
    current = snapshots.resolve(tmp_path)
    files = {p.name: p.read_bytes() for p in current.iterdir()}
    manifest = (tmp_path / "manifest.json").read_text()
    coinbase.reset()
    FakeCoinbase(coinbase, fail_after=3)  # the fourth page never arrives
    with pytest.raises(NetworkUnavailable, match="coinbaseexchange cannot be reached .*Network is unreachable"):
        fetch(str(tmp_path), full=True, now=at("2021-01-01"), retry=FAST)
    assert (tmp_path / "manifest.json").read_text() == manifest
    assert {p.name: p.read_bytes() for p in current.iterdir()} == files
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == [current.name]  # no half-written snapshot


def _name_not_found(host: str) -> Exception:
    """What requests raises when ``host`` does not resolve (offline, a typo): a ConnectionError
    holding urllib3's NameResolutionError, raised from the resolver's socket.gaierror."""
    import requests
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as exc:
            raise NameResolutionError(host, None, exc) from exc
    except NameResolutionError as exc:
        return requests.ConnectionError(MaxRetryError(None, "/currencies", exc))


PATIENT = RetryPolicy(attempts=5, first_wait=1.0)  # the default's shape: 15 s of waits before giving up


def test_a_host_that_does_not_resolve_is_not_retried(coinbase, tmp_path):
    """Promise: no retry for what waiting does not cure; offline, the fetch fails at once."""
    coinbase.add(responses.GET, f"{API}/currencies", body=_name_not_found("api.exchange.coinbase.com"))
    started = time.monotonic()
    with pytest.raises(NetworkUnavailable, match=r"cannot be reached \(NetworkError: Name or service not known\)"):
        fetch(str(tmp_path), now=at("2020-01-01"), retry=PATIENT)
    assert time.monotonic() - started < 1.0 and len(coinbase.calls) == 1
    assert not (tmp_path / "manifest.json").exists()


def test_a_refused_connection_is_not_retried(tmp_path):
    """A real socket: nothing listens on a closed loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exchange = make_exchange()
    exchange.urls["api"] = {"public": f"http://127.0.0.1:{port}", "private": f"http://127.0.0.1:{port}"}
    started = time.monotonic()
    with pytest.raises(NetworkUnavailable, match=r"cannot be reached \(NetworkError: Connection refused\)"):
        fetch(str(tmp_path), coins=("BTC",), exchange=exchange, now=at("2020-01-01"), retry=PATIENT)
    assert time.monotonic() - started < 1.0


def test_fetch_command_offline_is_one_sentence(coinbase, tmp_path, monkeypatch):
    FakeCoinbase(coinbase, fail_after=0)
    monkeypatch.setattr("cryptolstm.data.fetch.DEFAULT_RETRY", RetryPolicy(attempts=3, first_wait=0.01))
    result = runner.invoke(app, ["fetch", "--data-dir", str(tmp_path / "d"), "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: coinbaseexchange cannot be reached")
    assert "Network is unreachable" in lines[0] and "cryptolstm data import FILE --coin BTC" in lines[0]
    # Without --quiet each retry is announced first.
    told = runner.invoke(app, ["fetch", "--data-dir", str(tmp_path / "d")]).stderr.strip().splitlines()
    assert [line.endswith(f"(attempt {n} of 3)") for n, line in enumerate(told[:2], start=2)] == [True, True]
    assert told[2] == lines[0] and not (tmp_path / "d" / "manifest.json").exists()
    bad = runner.invoke(app, ["fetch", "--coins", "BTC,DOGE", "--data-dir", str(tmp_path / "d")])
    assert bad.exit_code == 2 and "coin must be one of BTC, ETH; got 'DOGE'." in bad.stderr
    empty = runner.invoke(app, ["fetch", "--coins", ",", "--data-dir", str(tmp_path / "d")])
    assert empty.exit_code == 2 and "coins must name at least one of BTC, ETH." in empty.stderr


@pytest.mark.slow
def test_train_fetches_missing_data_first_and_logs_its_snapshot_then_verify(coinbase, tracking, tmp_path, monkeypatch):
    FakeCoinbase(coinbase)
    monkeypatch.delenv("CRYPTOLSTM_OFFLINE")
    data = tmp_path / "fresh"
    args = ["train", "--data-dir", str(data), "--merge-date", "2025-06-01", "--layers", "1", "--neurons", "2",
            "--epochs", "1", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    snap = snapshots.current(data)
    run = MlflowClient().search_runs([mlflow.get_experiment_by_name("cryptolstm-btc").experiment_id])[0]
    tags = run.data.tags
    assert tags["data.snapshot"] == snap.id and tags["data.sha256.btc"] == snap.coins["BTC"].sha256
    assert run.inputs.dataset_inputs[0].dataset.name == f"usd-daily@{snap.id}"
    verified = runner.invoke(app, ["data", "verify", "--run", run.info.run_id])
    assert verified.exit_code == 0 and "is the data run" in verified.stdout
    # A newer snapshot: the run's data is no longer current, but still kept.
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    monkeypatch.setattr("cryptolstm.data.fetch.dt.datetime", type("Later", (dt.datetime,), {"now": staticmethod(lambda tz=None: tomorrow)}))
    assert runner.invoke(app, ["fetch", "--data-dir", str(data)]).exit_code == 0
    verified = runner.invoke(app, ["data", "verify", "--run", run.info.run_id])
    assert verified.exit_code == 1 and f"its snapshot {snap.id} is still in" in verified.stdout
    # Files that match nothing.
    plain = tmp_path / "plain"
    plain.mkdir()
    for coin in ("BTC", "ETH"):
        frame = pd.read_csv(snapshots.coin_file(snapshots.resolve(data), coin))
        frame.iloc[:-1].to_csv(snapshots.coin_file(plain, coin), index=False)
    verified = runner.invoke(app, ["data", "verify", "--run", run.info.run_id, "--data-dir", str(plain)])
    assert verified.exit_code == 1 and "no snapshot there matches it: BTC" in verified.stdout
    unknown = runner.invoke(app, ["data", "verify", "--run", "0" * 32])
    assert unknown.exit_code == 2 and "cannot read run" in unknown.stderr


def test_no_data_and_no_network_is_one_sentence_and_no_run(coinbase, tracking, tmp_path, monkeypatch):
    FakeCoinbase(coinbase, fail_after=0)
    monkeypatch.delenv("CRYPTOLSTM_OFFLINE")
    monkeypatch.setattr("cryptolstm.data.fetch.DEFAULT_RETRY", RetryPolicy(attempts=3, first_wait=0.01))
    result = runner.invoke(app, ["train", "--data-dir", str(tmp_path / "none"), "--epochs", "1", "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "there is no price data in" in lines[0] and "cryptolstm data import" in lines[0]
    assert MlflowClient().search_experiments(filter_string="name = 'cryptolstm-btc'") == []
