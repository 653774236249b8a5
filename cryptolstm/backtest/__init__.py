"""Expanding-window walk-forward evaluation of a configuration against baselines.

`folds` cuts the days, `runner` fits and forecasts, `metrics` scores,
`tracked` logs to MLflow, `source` finds the configuration to test.
"""
