"""cryptolstm: next-day BTC/ETH price forecasts with LSTMs, tracked in MLflow, always beside persistence."""

__version__ = "0.1.0"
