"""Expanding-window walk-forward evaluation of a configuration against baselines.

`runner` plans the folds (`cryptolstm.splits.folds`) and runs every forecaster through the one
forecasting loop, `tables` lays the scores out per fold and pooled; the MLflow side is
`cryptolstm.tracking.backtest`.
"""
