"""Coinbase Exchange's public REST API, as `responses` mocks in its real wire format.

Formats (docs.cdp.coinbase.com/exchange/reference): ``GET /currencies`` and ``GET /products``
return JSON lists of objects; ``GET /products/{id}/candles?granularity=86400&start=ISO&end=ISO``
returns ``[[time (s), low, high, open, close, volume], ...]`` newest first, at most 300.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import responses

API = "https://api.exchange.coinbase.com"
LISTED = {"BTC-USD": dt.date(2015, 7, 20), "ETH-USD": dt.date(2016, 5, 18)}

CURRENCIES = [
    {"id": cur, "name": name, "min_size": "0.00000001", "status": "online", "message": "",
     "max_precision": "0.00000001", "convertible_to": [], "details": {"type": "crypto", "symbol": "",
     "network_confirmations": 2, "sort_order": 3, "crypto_address_link": "", "crypto_transaction_link": "",
     "push_payment_methods": ["crypto"]}, "default_network": cur.lower(), "supported_networks": []}
    for cur, name in (("BTC", "Bitcoin"), ("ETH", "Ether"))
] + [{"id": "USD", "name": "United States Dollar", "min_size": "0.01", "status": "online", "message": "",
      "max_precision": "0.01", "convertible_to": [], "details": {"type": "fiat", "symbol": "$",
      "sort_order": 1, "push_payment_methods": []}, "default_network": "", "supported_networks": []}]

PRODUCTS = [
    {"id": pid, "base_currency": pid[:3], "quote_currency": "USD", "quote_increment": "0.01",
     "base_increment": "0.00000001", "display_name": pid.replace("-", "/"), "min_market_funds": "1",
     "margin_enabled": False, "post_only": False, "limit_only": False, "cancel_only": False,
     "status": "online", "status_message": "", "trading_disabled": False, "fx_stablecoin": False,
     "max_slippage_percentage": "0.02000000", "auction_mode": False, "high_bid_limit_percentage": ""}
    for pid in LISTED
]


def candle(product: str, day: dt.date, revision: float = 1.0) -> list:
    """A deterministic daily candle for ``day`` (prices follow a smooth made-up path)."""
    n = (day - dt.date(2015, 1, 1)).days
    base = (300.0 if product == "BTC-USD" else 10.0) * (1.0 + 0.001 * n) * (1.0 + 0.05 * np.sin(n / 9.0))
    close = base * 1.01 * revision
    return [int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()),
            base * 0.97, max(base, close) * 1.02, base, close, 1000.0 + n]


class FakeCoinbase:
    """Registers the endpoints on a ``responses.RequestsMock``; counts candle calls; can fail
    the first ``rate_limited`` candle calls with HTTP 429, revise a day, or drop the network
    after ``fail_after`` candle calls."""

    def __init__(self, mock: responses.RequestsMock, rate_limited: int = 0, fail_after: int | None = None,
                 revised: dict[dt.date, float] | None = None):
        self.calls: list[dict] = []
        self.rate_limited, self.fail_after, self.revised = rate_limited, fail_after, revised or {}
        mock.add(responses.GET, f"{API}/currencies", json=CURRENCIES)
        mock.add(responses.GET, f"{API}/products", json=PRODUCTS)
        mock.add_callback(responses.GET, re.compile(rf"{API}/products/[A-Z]+-USD/candles.*"), callback=self._candles)

    def _candles(self, request):
        url = urlparse(request.url)
        product = url.path.split("/")[2]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.calls.append({"product": product, **query})
        if self.rate_limited:
            self.rate_limited -= 1
            return 429, {}, json.dumps({"message": "Public rate limit exceeded"})
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            import requests

            raise requests.ConnectionError("Failed to establish a new connection: [Errno 101] Network is unreachable")
        start = dt.datetime.fromisoformat(query["start"].replace("Z", "+00:00")).date()
        end = dt.datetime.fromisoformat(query["end"].replace("Z", "+00:00"))
        assert int(query["granularity"]) == 86400
        days = []
        day = max(start, LISTED[product])
        while dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) <= end and len(days) < 300:
            days.append(candle(product, day, self.revised.get(day, 1.0)))
            day += dt.timedelta(days=1)
        return 200, {}, json.dumps(days[::-1])  # newest first, as Coinbase sends them
