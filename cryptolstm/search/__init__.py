"""Hyperparameter search: one space file, two engines (Optuna, keras-tuner), one trial runner."""
