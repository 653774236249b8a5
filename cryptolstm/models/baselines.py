"""Baselines with the model's interface: ``predict(samples) -> (n,) target returns``."""

from __future__ import annotations

import numpy as np

from cryptolstm.windowing import WindowSet


class Persistence:
    """"Tomorrow = today": the target day's close equals the window's last close."""

    name = "persistence"

    def predict(self, samples: WindowSet) -> np.ndarray:
        """(n,) return relative to ``samples.ref_close`` that keeps the last close."""
        return np.asarray(samples.persistence, dtype=np.float64)
