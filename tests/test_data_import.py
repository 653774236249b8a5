"""`cryptolstm data import`: messy but valid exports are read exactly; malformed ones get one sentence."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cryptolstm.cli import app
from cryptolstm.data import load_coin, snapshots
from cryptolstm.data.imports import parse_prices
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


def test_import_command_bad_file_is_one_sentence_and_writes_nothing(tmp_path):
    path = CORPUS / "malformed" / "08-high-below-close.csv"
    result = runner.invoke(app, ["data", "import", str(path), "--coin", "BTC", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: " + MALFORMED["08-high-below-close.csv"].format(path=path)
    assert not (tmp_path / "d" / "manifest.json").exists()
    unknown = runner.invoke(app, ["data", "import", str(path), "--coin", "DOGE"])
    assert unknown.exit_code == 2 and "coin must be one of BTC, ETH; got 'DOGE'." in unknown.stderr
