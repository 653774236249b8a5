"""The recurrent cells a network stacks, declared once (nothing else spells a cell's name): the config's value,
the Keras layer and what a step costs. It imports no Keras (the config validates against it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """``name``: the config's value and its layers' prefix (``lstm_0``); ``layer``: the `keras.layers` class;
    ``gates``: weight blocks per unit (a step's multiply-adds: ``gates`` x units x (inputs + units + 1))."""

    name: str
    layer: str
    gates: int


CELLS = {cell.name: cell for cell in (Cell("lstm", "LSTM", 4), Cell("gru", "GRU", 3))}
NAMES = tuple(CELLS)
DEFAULT = CELLS["lstm"]  # the 2018 tutorial's
