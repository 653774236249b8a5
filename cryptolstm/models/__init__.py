"""Forecasters: the Keras LSTM and the baselines it must beat, with one interface."""
