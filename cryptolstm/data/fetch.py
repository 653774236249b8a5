"""Daily USD candles from Coinbase Exchange through ccxt, into a new snapshot (under the data lock).

Coinbase: real USD books, history back to 2015, no key (Kraken gives 720 days, yfinance scrapes).
Its volume in coins is stored as ``volume * close`` USD, one exchange's, so an update extends
only a snapshot of this same source. Days are UTC days; the unfinished one is never stored.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptolstm.config import COINS
from cryptolstm.data import snapshots
from cryptolstm.data.schema import check_overlap
from cryptolstm.errors import DataError, lasting_network_error

log = logging.getLogger(__name__)

SOURCE = "coinbaseexchange"
SYMBOLS = {"BTC": "BTC/USD", "ETH": "ETH/USD"}
HISTORY_START = dt.date(2015, 1, 1)  # before either market opened: the first pages are empty
PAGE_DAYS = 300  # Coinbase's most candles per call


class NetworkUnavailable(DataError):
    """The source cannot be reached (after retries)."""


def _ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def make_exchange(timeout_ms: int = 10_000):
    """A ccxt Coinbase Exchange client with ccxt's own rate limiting on."""
    import ccxt

    return ccxt.coinbaseexchange({"enableRateLimit": True, "timeout": timeout_ms})


def _may_pass(exc: BaseException) -> bool:
    """Whether waiting may cure ``exc``: a network error, but not an unresolved host or a refused connection."""
    import ccxt

    return isinstance(exc, ccxt.NetworkError) and lasting_network_error(exc) is None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one call on errors that may pass (`_may_pass`): ``attempts`` in all, waiting
    ``first_wait * 2**k`` seconds (at most ``max_wait``) before attempt k + 2."""

    attempts: int = 5
    first_wait: float = 1.0
    max_wait: float = 30.0

    def call(self, func: Callable, *args, **kwargs):
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        def tell(state) -> None:
            log.info("%s: %s; retrying in %.1f s (attempt %d of %d)", SOURCE, _reason(state.outcome.exception()),
                     state.next_action.sleep, state.attempt_number + 1, self.attempts)

        retrying = Retrying(retry=retry_if_exception(_may_pass),  # RateLimitExceeded, RequestTimeout...
                            wait=wait_exponential(multiplier=self.first_wait, max=self.max_wait),
                            stop=stop_after_attempt(self.attempts), before_sleep=tell, reraise=True)
        return retrying(func, *args, **kwargs)


DEFAULT_RETRY = RetryPolicy()


def _candles_frame(candles: list[list]) -> pd.DataFrame:
    """ccxt candles ``[ms, open, high, low, close, volume in coins]`` -> daily frame in USD."""
    raw = np.asarray(candles, dtype=np.float64).reshape(-1, 6)
    frame = pd.DataFrame(raw[:, 1:5], columns=["open", "high", "low", "close"])
    frame["volume"] = raw[:, 5] * raw[:, 4]
    frame.index = pd.to_datetime(raw[:, 0].astype(np.int64), unit="ms").normalize().rename("date")
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def _reason(exc: Exception) -> str:
    """ccxt's message without its "exchange GET url" prefix, on one line of at most 200 characters."""
    lasting = lasting_network_error(exc)
    if lasting is not None:
        return lasting.strerror or str(lasting)
    text = re.sub(r"^\S+ (GET|POST) \S+\s*", "", " ".join(str(exc).split()))
    cause = exc.__cause__ or exc.__context__
    if not text and cause is not None:  # ccxt keeps the socket's own words in the cause
        text = " ".join(str(cause).split())
    return (text or "no reply")[:200].rstrip(".")


def fetch_daily(exchange, coin: str, first: dt.date, today: dt.date, retry: RetryPolicy | None = None) -> pd.DataFrame:
    """Complete UTC days ``first .. today - 1`` of ``coin``, page by page (oldest first)."""
    import ccxt

    retry = retry or DEFAULT_RETRY
    symbol = SYMBOLS[coin]
    pages, cursor = [], first
    try:
        retry.call(exchange.load_markets)
        while cursor < today:
            stop = min(cursor + dt.timedelta(days=PAGE_DAYS), today)
            candles = retry.call(exchange.fetch_ohlcv, symbol, "1d", since=_ms(cursor), limit=PAGE_DAYS,
                                 params={"until": _ms(stop) - 1})
            pages.append(_candles_frame([c for c in candles if _ms(cursor) <= c[0] < _ms(stop)]))
            cursor = stop
    except ccxt.NetworkError as exc:
        raise NetworkUnavailable(f"{SOURCE} cannot be reached ({type(exc).__name__}: {_reason(exc)}); check the "
                                 f"network and run the fetch again, or import a CSV with "
                                 f"`cryptolstm data import FILE --coin {coin}`.") from None
    except ccxt.BaseError as exc:
        raise DataError(f"{SOURCE} refused the request for {symbol}: {_reason(exc)}.") from None
    frame = pd.concat(pages) if pages else _candles_frame([])
    return frame[frame.index < pd.Timestamp(today)]


@dataclass(frozen=True)
class FetchReport:
    """What a fetch did: the new snapshot (None when already up to date) and per-coin new days."""

    snapshot: snapshots.Snapshot | None
    new_days: dict[str, int]
    mode: dict[str, str]
    data_dir: str = ""


def fetch(data_dir: str, coins: tuple[str, ...] = COINS, full: bool = False, exchange=None,
          now: dt.datetime | None = None, retry: RetryPolicy | None = None) -> FetchReport:
    """Fetch ``coins`` into a new snapshot of ``data_dir``, all under its lock: the days after the last
    stored one of a snapshot of this source (checking the overlap day), else the full history.
    ``now``: the time (UTC) whose unfinished day is not stored (default: now)."""
    if not coins:
        raise DataError(f"coins must name at least one of {', '.join(SYMBOLS)}.")
    if unknown := [coin for coin in coins if coin not in SYMBOLS]:
        raise DataError(f"coin must be one of {', '.join(SYMBOLS)}; got {unknown[0]!r}.")
    exchange = exchange or make_exchange()
    with snapshots.locked(data_dir):
        now = now or dt.datetime.now(dt.UTC)
        frames, sources, symbols = snapshots.carried(data_dir)
        new_days, mode = {}, {}
        for coin in coins:
            frames[coin], new_days[coin], mode[coin] = _fetch_coin(exchange, coin, frames.get(coin),
                                                                   sources.get(coin), full, now, retry)
        if all(m == "update" and n == 0 for m, n in zip(mode.values(), new_days.values())):
            return FetchReport(None, new_days, mode, str(data_dir))
        sources.update({c: SOURCE for c in coins})
        symbols.update({c: SYMBOLS[c] for c in coins})
        note = ", ".join(f"{c}: {m}" for c, m in mode.items())
        snapshot = snapshots.write_snapshot(data_dir, frames, SOURCE, symbols, sources, note=note, now=now)
    return FetchReport(snapshot, new_days, mode, str(data_dir))


def _fetch_coin(exchange, coin: str, stored: pd.DataFrame | None, source: str | None, full: bool,
                now: dt.datetime, retry: RetryPolicy | None) -> tuple[pd.DataFrame, int, str]:
    """``coin``'s frame after the fetch, how many days it added and how (``update`` or ``full``)."""
    today = now.astimezone(dt.UTC).date()
    if not full and stored is not None and source == SOURCE:
        day = stored.index[-1]  # fetched again, to check that its prices are the same
        fetched = fetch_daily(exchange, coin, day.date(), today, retry)
        if day not in fetched.index:
            raise DataError(f"{SOURCE} returned no {coin} candle for {day.date()}, the last stored day, so the update "
                            f"cannot be checked against it; nothing was written (`cryptolstm fetch --full` takes a "
                            f"fresh snapshot).")
        check_overlap(coin, stored.loc[[day]], fetched, f"{SOURCE} now says",
                      "`cryptolstm fetch --full` takes a fresh snapshot")
        added = fetched[fetched.index > day]
        return pd.concat([stored, added]), len(added), "update"
    fetched = fetch_daily(exchange, coin, HISTORY_START, today, retry)
    if fetched.empty:
        raise DataError(f"{SOURCE} returned no daily candles for {SYMBOLS[coin]}.")
    return fetched, len(fetched), "full"


def describe(report: FetchReport) -> str:
    """What a fetch stored, as the command prints it."""
    if report.snapshot is None:
        return f"{report.data_dir} is up to date: no complete UTC day after the last stored one ({SOURCE})."
    lines = [f"snapshot {report.snapshot.id} is now current in {report.data_dir}:"]
    for coin, info in sorted(report.snapshot.coins.items()):
        added = f", {report.new_days[coin]} new day(s) ({report.mode[coin]})" if coin in report.new_days else ""
        lines.append(f"  {coin}: {info.first_date}..{info.last_date}, {info.rows} rows, sha256 {info.sha256[:16]}{added}")
    return "\n".join(lines)
