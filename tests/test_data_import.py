"""`cryptolstm data import`: messy but valid exports are read exactly; malformed ones get one sentence."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.data import load_coin, snapshots
from cryptolstm.data.imports import import_csv, parse_prices
from cryptolstm.errors import DataError

CORPUS = Path(__file__).parent / "corpus" / "import"
MALFORMED = yaml.safe_load((CORPUS / "malformed" / "expected.yaml").read_text())
VALID = sorted(p.name for p in (CORPUS / "valid").iterdir() if p.name != "expected.csv")
runner = CliRunner()


def test_the_corpus_has_at_least_eight_malformed_files_each_with_its_error():
    files = {p.name for p in (CORPUS / "malformed").glob("*.csv")}
    assert len(files) >= 8 and files == set(MALFORMED)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_file_is_one_sentence(name):
    path = CORPUS / "malformed" / name
    with pytest.raises(DataError) as caught:
        parse_prices(path, "BTC")
    assert str(caught.value) == MALFORMED[name].format(path=path)


@pytest.mark.parametrize("name", VALID)
def test_messy_export_is_read_as_the_real_rows(name):
    expected = pd.read_csv(CORPUS / "valid" / "expected.csv", index_col="date", parse_dates=True)
    frame = parse_prices(CORPUS / "valid" / name, "BTC")
    assert list(frame.index) == list(expected.index)  # ascending, whatever the file's order
    # CoinMarketCap's export rounds to cents, and volume converted from coins carries float error.
    np.testing.assert_allclose(frame["close"], expected["close"], rtol=0, atol=0.006)
    np.testing.assert_allclose(frame[["open", "high", "low"]], expected[["open", "high", "low"]], rtol=0, atol=0.006)
    np.testing.assert_allclose(frame["volume"], expected["volume"], rtol=1e-6)


def test_import_command_writes_a_snapshot_the_loader_reads(tmp_path):
    data = tmp_path / "data"
    result = runner.invoke(app, ["data", "import", str(CORPUS / "valid" / "coinmarketcap.csv"), "--coin", "btc",
                                 "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "imported" in result.stdout and "2023-12-22..2023-12-31, 10 rows" in result.stdout
    snap = snapshots.current(data)
    assert snap.coins["BTC"].source == "import:coinmarketcap.csv" and snap.coins["BTC"].rows == 10
    stored = load_coin(data, "BTC")
    assert stored.index[-1] == pd.Timestamp("2023-12-31")
    assert snapshots.sha256(snapshots.coin_file(snapshots.resolve(data), "BTC")) == snap.coins["BTC"].sha256
    # Importing ETH next keeps BTC: the new snapshot holds both, the first one is untouched.
    first_dir = snapshots.resolve(data)
    before = {p.name: p.read_bytes() for p in first_dir.iterdir()}
    eth = tmp_path / "eth.csv"
    frame = pd.read_csv(CORPUS / "valid" / "expected.csv")
    frame[["open", "high", "low", "close"]] /= 20
    frame.to_csv(eth, index=False)
    assert runner.invoke(app, ["data", "import", str(eth), "--coin", "ETH", "--data-dir", str(data)]).exit_code == 0
    assert set(snapshots.current(data).coins) == {"BTC", "ETH"} and snapshots.resolve(data) != first_dir
    assert {p.name: p.read_bytes() for p in first_dir.iterdir()} == before
    listed = runner.invoke(app, ["data", "list", "--data-dir", str(data)])
    assert listed.stdout.count("\n") == 2 and listed.stdout.splitlines()[1].startswith("* ")
    missing = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


@pytest.mark.parametrize("args, words", [
    (["data", "list", "--data-dir", "{file}"], "error: data directory {file} is a file, not a directory."),
    (["data", "import", "{dir}", "--coin", "BTC", "--data-dir", "{dir}/d"],
     "error: {dir} is a directory, not a file; import one daily price CSV file."),
    (["data", "import", "{file}", "--coin", "BTC", "--data-dir", "{file}"],
     "error: data directory {file} is a file, not a directory."),
])
def test_a_path_of_the_wrong_kind_is_named_as_such_not_as_missing(tmp_path, args, words):
    """A file where a directory is wanted, or the reverse, is said to be one: "does not exist" would be false."""
    file = tmp_path / "prices.csv"
    file.write_text((CORPUS / "valid" / "coinmarketcap.csv").read_text())
    fill = {"file": file, "dir": tmp_path}
    result = runner.invoke(app, [a.format(**fill) for a in args])
    assert result.exit_code == 2 and result.stderr.strip() == words.format(**fill)
    assert not (tmp_path / "d").exists() and file.is_file()


def test_an_implausible_volume_is_refused_by_the_import_command_and_nothing_is_stored(tmp_path):
    """A volume of 1e300 USD (which would reach training as inf) is one sentence naming value, file,
    line and column, before any snapshot exists."""
    path = CORPUS / "malformed" / "17-implausible-volume.csv"
    result = runner.invoke(app, ["data", "import", str(path), "--coin", "BTC", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == (f"error: {path} line 3, column volume: 1e+300 on 2023-01-02 is outside the "
                                     f"plausible range (a daily volume is 0 or 1 to 1e+14 USD); check the file for "
                                     f"a mistyped or mis-scaled value.")
    assert not (tmp_path / "d" / "manifest.json").exists()


def test_import_command_bad_file_is_one_sentence_and_writes_nothing(tmp_path):
    path = CORPUS / "malformed" / "08-high-below-close.csv"
    result = runner.invoke(app, ["data", "import", str(path), "--coin", "BTC", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: " + MALFORMED["08-high-below-close.csv"].format(path=path)
    assert not (tmp_path / "d" / "manifest.json").exists()
    unknown = runner.invoke(app, ["data", "import", str(path), "--coin", "DOGE"])
    assert unknown.exit_code == 2 and "coin must be one of BTC, ETH; got 'DOGE'." in unknown.stderr


def _tail(shared_data: Path, coin: str, folder: Path, days: int = 60, edit=None) -> Path:
    """The last ``days`` rows of ``coin``'s real file (to 2023-12-31), ``edit(frame)`` applied, as a CSV in ``folder``."""
    frame = pd.read_csv(shared_data / f"{coin.lower()}-usd-daily.csv").tail(days).reset_index(drop=True)
    path = folder / f"{coin.lower()}-tail.csv"
    (edit or (lambda f: f))(frame).to_csv(path, index=False)
    return path


def _store(tmp_path: Path, shared_data: Path, *coins: str) -> Path:
    """A data directory into which the real tails of ``coins`` were imported through the command."""
    data = tmp_path / "data"
    for coin in coins:
        done = runner.invoke(app, ["data", "import", str(_tail(shared_data, coin, tmp_path)), "--coin", coin,
                                   "--data-dir", str(data)])
        assert done.exit_code == 0, done.output
    return data


def _unchanged(data: Path):
    """What a refused import must leave as it was: the manifest's bytes and the snapshots."""
    return (data / "manifest.json").read_bytes(), sorted(p.name for p in (data / "snapshots").iterdir())


def test_the_eth_file_imported_as_btc_is_refused_naming_the_first_differing_day(tmp_path, shared_data):
    data = _store(tmp_path, shared_data, "BTC")
    before = _unchanged(data)
    eth = _tail(shared_data, "ETH", tmp_path)
    done = runner.invoke(app, ["data", "import", str(eth), "--coin", "BTC", "--data-dir", str(data)])
    assert done.exit_code == 2 and "Traceback" not in done.output
    btc, eth_rows = (pd.read_csv(shared_data / f"{c}-usd-daily.csv").set_index("date") for c in ("btc", "eth"))
    day = "2023-11-02"  # the first of the 60 days both hold
    assert done.stderr.strip() == (
        f"error: BTC close on {day} was {btc.loc[day, 'close']:.10g} when stored but eth-tail.csv says "
        f"{eth_rows.loc[day, 'close']:.10g}; nothing was written (check that {eth} holds BTC prices; prices "
        f"from another source go into a data directory of their own, --data-dir).")
    assert _unchanged(data) == before


def test_the_eth_file_imported_as_btc_beside_the_stored_eth_is_refused_as_eth(tmp_path, shared_data):
    data = _store(tmp_path, shared_data, "ETH")
    before = _unchanged(data)
    eth = _tail(shared_data, "ETH", tmp_path)
    done = runner.invoke(app, ["data", "import", str(eth), "--coin", "BTC", "--data-dir", str(data)])
    assert done.exit_code == 2
    assert done.stderr.strip() == (f"error: {eth} holds ETH prices: on all 60 day(s) it shares with the stored ETH, "
                                   f"its prices are the same; nothing was written (import it with --coin ETH).")
    assert _unchanged(data) == before


def test_a_revised_price_on_an_overlapping_day_is_refused_as_fetch_refuses_it(tmp_path, shared_data):
    data = _store(tmp_path, shared_data, "BTC")
    before = _unchanged(data)
    revised = tmp_path / "revised"
    revised.mkdir()

    def revise(frame):  # one high in the middle 1 % up; a week of new days after the stored ones
        frame.loc[30, "high"] *= 1.01
        return frame

    path = _tail(shared_data, "BTC", revised, edit=revise)
    done = runner.invoke(app, ["data", "import", str(path), "--coin", "BTC", "--data-dir", str(data)])
    stored = pd.read_csv(shared_data / "btc-usd-daily.csv").set_index("date").loc["2023-12-02", "high"]
    assert done.exit_code == 2
    assert done.stderr.startswith(f"error: BTC high on 2023-12-02 was {stored:.10g} when stored but btc-tail.csv "
                                  f"says {stored * 1.01:.10g}; nothing was written")
    assert _unchanged(data) == before


@pytest.mark.parametrize("name", VALID)
def test_an_export_of_the_same_days_agrees_with_the_stored_prices_and_is_imported(tmp_path, shared_data, name):
    """Every messy export in the corpus (rounded to the cent, converted from coins...) holds the real BTC
    prices of 2023-12-22..31: the overlap check accepts it over the stored full-precision file."""
    data = _store(tmp_path, shared_data, "BTC")
    done = runner.invoke(app, ["data", "import", str(CORPUS / "valid" / name), "--coin", "BTC",
                               "--data-dir", str(data)])
    assert done.exit_code == 0, done.output
    assert snapshots.current(data).coins["BTC"].source == f"import:{name}"


def test_rows_dated_after_today_are_refused(tmp_path, shared_data):
    path = _tail(shared_data, "BTC", tmp_path, days=5)
    with pytest.raises(DataError) as caught:
        import_csv(path, "BTC", tmp_path / "data", today=dt.date(2023, 12, 29))
    assert str(caught.value) == (f"{path} line 5: date 2023-12-30 is after today (2023-12-29, UTC) (and 1 more "
                                 f"line(s)); a daily price file cannot hold days still to come.")
    assert not (tmp_path / "data").exists()
    assert import_csv(path, "BTC", tmp_path / "data", today=dt.date(2023, 12, 31)).coins["BTC"].rows == 5
    future = tmp_path / "future.csv"  # through the command, against the real clock
    future.write_text(path.read_text().replace("2023-12-31", "2099-12-31"))
    done = runner.invoke(app, ["data", "import", str(future), "--coin", "BTC", "--data-dir", str(tmp_path / "d2")])
    assert done.exit_code == 2 and f"{future} line 6: date 2099-12-31 is after today (" in done.stderr
    assert not (tmp_path / "d2").exists()
