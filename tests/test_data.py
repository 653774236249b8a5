import hashlib

import numpy as np
import pandas as pd
import pytest

from cryptolstm.data import coin_file, load_coin, load_market
from cryptolstm.data.schema import PRICE_RANGE, VOLUME_RANGE
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
        (_set("close", 4, -5.0), "line 6, column close: -5 on 2020-01-05 is outside the plausible range "
                                 "(a price is 1e-06 to 1e+09 USD); check the file"),
        (_set("close", 4, 2e9), "line 6, column close: 2000000000 on 2020-01-05 is outside the plausible range"),
        (_set("volume", 1, -1.0), "line 3, column volume: -1 on 2020-01-02 is outside the plausible range"),
        (_set("volume", 2, 1e300), "line 4, column volume: 1e+300 on 2020-01-03 is outside the plausible range "
                                   "(a daily volume is 0 or 1 to 1e+14 USD); check the file"),
        (_set("volume", 2, "inf"), "line 4, column volume: inf on 2020-01-03 is outside the plausible range"),
        (_set("volume", 2, 0.5), "line 4, column volume: 0.5 on 2020-01-03 is outside the plausible range"),
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


def test_the_real_files_pass_every_plausibility_check_without_a_warning(shared_data, caplog):
    with caplog.at_level("WARNING", logger="cryptolstm.data.schema"):
        load_coin(shared_data, "BTC")  # every row from 2013, not only the merged range
        load_coin(shared_data, "ETH")
    assert caplog.records == []


def test_the_real_files_lie_well_inside_the_plausible_ranges(shared_data):
    """PRICE_RANGE and VOLUME_RANGE leave a margin of 1,000 or more below every real value and 250 or
    more above it (the ranges exist to catch broken values, never a real move)."""
    for coin in ("BTC", "ETH"):
        frame = load_coin(shared_data, coin)  # volume 0 ("not reported") is NaN here
        prices, volume = frame[["open", "high", "low", "close"]].to_numpy(), frame["volume"].dropna()
        assert prices.min() >= 1000 * PRICE_RANGE[0] and prices.max() * 250 <= PRICE_RANGE[1], coin
        assert volume.min() >= 1000 * VOLUME_RANGE[0] and volume.max() * 250 <= VOLUME_RANGE[1], coin


def _text(tmp_path, text):
    """Write BTC's file as ``text`` exactly (ETH valid), for cuts pandas cannot write."""
    _write(tmp_path)
    path = coin_file(tmp_path, "BTC")
    path.write_text(text)
    return path


def _lines(tmp_path, rows=10):
    _write(tmp_path, rows=rows, edit=lambda f: f.assign(volume=[4543860224.0] * rows))
    return coin_file(tmp_path, "BTC").read_text().splitlines()


CUT = "the file looks cut off."
SHORT = "every line needs a value for each column."


@pytest.mark.parametrize(
    "cut, words",
    [
        # The last line ends after its close: pandas would fill the volume with nothing.
        (lambda lines: lines[:-1] + [lines[-1].rsplit(",", 1)[0]], f"line 11 has 5 field(s) where the header has 6; {CUT}"),
        (lambda lines: lines[:-1] + [lines[-1][:14]], f"line 11 has 2 field(s) where the header has 6; {CUT}"),
        (lambda lines: lines[:4] + [lines[4][:20]] + lines[5:], f"line 5 has 2 field(s) where the header has 6; {SHORT}"),
        # Cut inside the volume, without a final newline: 4543860224 would be read as 45.
        (lambda lines: lines[:-1] + [lines[-1][:-10]],
         "line 11 looks cut off: the file does not end with a newline and its last volume '45' is below 1/50 "
         "of the line before's ('4543860224.0')."),
    ],
)
def test_a_file_cut_off_is_an_error_naming_the_line(tmp_path, cut, words):
    lines = _lines(tmp_path)
    text = "\n".join(cut(lines))
    path = _text(tmp_path, text if "volume '45'" in words else text + "\n")
    with pytest.raises(DataError) as info:
        load_market(tmp_path, "2020-01-01")
    assert str(info.value) == f"{path} {words}"


def test_a_last_line_without_newline_is_fine_when_its_value_is_plausible(tmp_path):
    lines = _lines(tmp_path)
    _text(tmp_path, "\n".join(lines))  # no final newline, nothing cut
    assert load_market(tmp_path, "2020-01-01").frame["BTC_volume"].iloc[-1] == 4543860224.0


@pytest.mark.parametrize("text", ["", "date,open,high,low,close,volume\n"])
def test_a_file_without_rows_is_one_sentence(tmp_path, text):
    path = _text(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_market(tmp_path, "2020-01-01")
    assert str(info.value) == (f"{path} is empty." if not text else f"{path} has a header but no rows.")


@pytest.mark.parametrize("factor, words", [
    (60.0, "line 7, column close: 6300 on 2020-01-06 is 60.6 times above the day before (104, line 6)"),
    (1 / 51, "line 7, column close: 2.058823529 on 2020-01-06 is 50.5 times below the day before (104, line 6)"),
])
def test_an_implausible_price_jump_is_an_error_naming_line_and_column(tmp_path, factor, words):
    def jump(frame):
        for col in ("open", "high", "low", "close"):  # the whole row, so OHLC stays consistent
            frame.loc[5, col] = frame.loc[5, col] * factor
        return frame

    path = _write(tmp_path, rows=11, edit=jump)
    with pytest.raises(DataError) as info:
        load_market(tmp_path, "2020-01-01")
    assert str(info.value) == f"{path} {words}; a one-day move by more than a factor of 50 is implausible."


def test_an_implausible_volume_jump_is_one_warning_naming_the_lines(tmp_path, caplog):
    def spikes(frame):
        frame["volume"] = 1e6
        frame.loc[[2, 5], "volume"] = [1e9, 1e4]  # up 1000 times on line 4 (and back), down 100 on line 7
        return frame

    path = _write(tmp_path, rows=12, edit=spikes)
    with caplog.at_level("WARNING", logger="cryptolstm.data.schema"):
        frame = load_market(tmp_path, "2020-01-01").frame
    assert frame.loc["2020-01-03", "BTC_volume"] == 1e9  # a warning, not a change
    [record] = caplog.records
    assert record.getMessage() == (
        f"{path}: volume moves by more than a factor of 50 from the day before on 4 line(s): "
        "line 4 (2020-01-03, x1e+03), line 5 (2020-01-04, x1e+03), line 7 (2020-01-06, x100) and 1 more; "
        "check them for cut-off or mistyped values."
    )


def test_first_reported_volume_after_zeros_is_no_jump(tmp_path, caplog):
    _write(tmp_path, edit=_set("volume", [0, 1, 2], 0.0))
    with caplog.at_level("WARNING", logger="cryptolstm.data.schema"):
        load_coin(tmp_path, "BTC")
    assert caplog.records == []
