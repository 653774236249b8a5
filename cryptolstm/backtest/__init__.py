"""Expanding-window walk-forward evaluation of a configuration against baselines (the MLflow side
is `cryptolstm.tracking.backtest`)."""
