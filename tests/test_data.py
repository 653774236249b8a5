import hashlib

import numpy as np
import pandas as pd
import pytest

from cryptolstm.data import coin_file, load_coin, load_market
from cryptolstm.errors import DataError

# From ../shared/data/README.md.
SHA256 = {
    "BTC": "1963456a94e0bd2da3e37ba9a28c6d466f2559937b73ccc06ed50d6bc5ebb291",
    "ETH": "bafcfa5be736f605cb2f177c53d00828340da6d99309acbe2da6f5a34cb57275",
}


def test_shared_files_load_validated_with_their_documented_shape(shared_data):
    btc = load_coin(shared_data, "BTC")
    eth = load_coin(shared_data, "ETH")
    assert (len(btc), len(eth)) == (3899, 3068)
    assert btc.index[0] == pd.Timestamp("2013-04-29") and btc.index[-1] == pd.Timestamp("2023-12-31")
    assert btc.index.is_monotonic_increasing and btc.index.is_unique
    # CoinMarketCap's unreported volume (zeros before 2013-12-27) is missing, not zero.
    assert btc.loc[:"2013-12-26", "volume"].isna().all() and btc.loc["2013-12-27":, "volume"].notna().all()
    assert btc.loc["2017-12-16", "close"] == pytest.approx(19497, rel=1e-3)


def test_market_merges_from_merge_date_and_fingerprints_files(shared_data):
    market = load_market(shared_data, "2016-01-01", "2018-03-12")
    frame = market.frame
    assert (market.first_date, market.last_date) == ("2016-01-01", "2018-03-12")
    assert len(frame) == (pd.Timestamp("2018-03-12") - pd.Timestamp("2016-01-01")).days + 1
    assert list(frame.columns[:5]) == ["BTC_open", "BTC_high", "BTC_low", "BTC_close", "BTC_volume"]
    assert frame.notna().all().all()
    for coin, (path, digest) in market.files.items():
        assert digest == SHA256[coin] == hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_merge_before_volume_was_reported_starts_where_all_volumes_exist(tmp_path, shared_data):
    # A BTC-only style case: both coins with zero volume at the start.
    for coin in ("BTC", "ETH"):
        frame = pd.read_csv(coin_file(shared_data, coin)).tail(40).reset_index(drop=True)
        frame.loc[:4, "volume"] = 0.0
        frame.to_csv(coin_file(tmp_path, coin), index=False)
    market = load_market(tmp_path, "2000-01-01")
    assert len(market.frame) == 35
    assert (market.frame.filter(like="volume") > 0).all().all()


def _write(tmp_path, coin="BTC", rows=10, edit=None):
    """A valid small CSV for ``coin`` (the other coin valid too), with ``edit(frame)`` applied."""
    for c in ("BTC", "ETH"):
        dates = pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d")
        close = np.linspace(100, 110, rows)
        frame = pd.DataFrame(
            {"date": dates, "open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6}
        )
        if c == coin and edit is not None:
            frame = edit(frame)
        frame.to_csv(coin_file(tmp_path, c), index=False)
    return coin_file(tmp_path, coin)


def _set(column, row, value):
    def edit(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return edit


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda f: f.drop(columns=["volume"]), "lacks column(s) volume"),
        (_set("date", 3, "2020-13-45"), "line 5, column date: value '2020-13-45' does not parse"),
        (_set("close", 2, "abc"), "line 4, column close: value 'abc' does not parse"),
        (_set("close", 6, ""), "line 8, column close: value '' is empty"),
        (_set("close", 4, -5.0), "line 6, column close: value -5.0 fails check greater_than(0)"),
        (_set("volume", 1, -1.0), "line 3, column volume"),
        (_set("date", 5, "2020-01-05"), "date 2020-01-05 appears more than once"),
        (_set("high", 7, 1.0), "line 9: the row fails check high >= max(open, close)"),
        (lambda f: f.drop(index=[4]), "missing 1 day(s), the first 2020-01-05"),
    ],
)
def test_malformed_csv_is_named_by_file_line_and_column(tmp_path, edit, words):
    path = _write(tmp_path, edit=edit)
    with pytest.raises(DataError) as info:
        load_market(tmp_path, "2020-01-01")
    message = str(info.value)
    assert words in message and str(path) in message
    assert "\n" not in message


def test_unsorted_rows_are_sorted(tmp_path):
    _write(tmp_path, edit=lambda f: f.iloc[::-1])
    market = load_market(tmp_path, "2020-01-01")
    assert market.frame.index.is_monotonic_increasing and len(market.frame) == 10


def test_gaps_are_filled_only_when_asked(tmp_path):
    _write(tmp_path, edit=lambda f: f.drop(index=[3, 4]))
    with pytest.raises(DataError, match="missing 2 day"):
        load_market(tmp_path, "2020-01-01")
    frame = load_market(tmp_path, "2020-01-01", fill_gaps=True).frame
    assert len(frame) == 10
    assert frame.loc["2020-01-04", "BTC_close"] == frame.loc["2020-01-03", "BTC_close"]


def test_missing_directory_or_file_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match=r"data directory .*nowhere does not exist; fetch prices with `cryptolstm fetch --data-dir DIR`.*import a CSV with `cryptolstm data import FILE --coin BTC --data-dir DIR`, or pass --data-dir"):
        load_market(tmp_path / "nowhere", "2020-01-01")
    _write(tmp_path)
    coin_file(tmp_path, "ETH").unlink()
    with pytest.raises(DataError, match="no eth-usd-daily.csv in data directory .*CRYPTOLSTM_DATA_DIR"):
        load_market(tmp_path, "2020-01-01")


def test_not_a_csv(tmp_path):
    _write(tmp_path)
    coin_file(tmp_path, "BTC").write_bytes(b"\x00\xff\xfe garbage")
    with pytest.raises(DataError, match="btc-usd-daily.csv"):
        load_market(tmp_path, "2020-01-01")


def test_range_without_common_days(tmp_path):
    _write(tmp_path)
    with pytest.raises(DataError, match="no day between 2021-01-01"):
        load_market(tmp_path, "2021-01-01")
