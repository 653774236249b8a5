"""The recurrent cells a network stacks, declared once: the config's value (``cell``), the Keras
layer it builds and what one step of it costs. Nothing else spells a cell's name; the network
builder, the throughput benchmark's FLOP count and the run names ask the declaration. This module
imports no Keras (the config validates against it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """``name``: the config's value and the prefix of its layers' names (``lstm_0``); ``layer``: the
    `keras.layers` class; ``gates``: weight blocks per unit (a step's multiply-adds are ``gates`` x
    units x (inputs + units + 1)); ``display``: its name in prose."""

    name: str
    layer: str
    gates: int
    display: str


CELLS = {cell.name: cell for cell in (Cell("lstm", "LSTM", 4, "LSTM"), Cell("gru", "GRU", 3, "GRU"))}
NAMES = tuple(CELLS)
DEFAULT = CELLS["lstm"]  # the 2018 tutorial's


def get(name: str) -> Cell:
    """The declared cell called ``name`` (the config has validated it)."""
    return CELLS[name]
