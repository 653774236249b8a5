"""Progress bars of the terminal (tqdm), as hooks the cores call: a fit's epochs, a search's trials.
Without progress (``--quiet``), every hook does nothing."""

from __future__ import annotations

from tqdm import tqdm


class EpochBar:
    """A fit's ``on_epoch`` hook: a new bar per fit named ``desc``; ``position`` 1 draws it under another bar."""

    def __init__(self, desc: str, enabled: bool = True, position: int = 0, leave: bool = True) -> None:
        self.desc, self.enabled, self.position, self.leave = desc, enabled, position, leave
        self.bar: tqdm | None = None

    def start(self, total: int | None) -> None:
        if self.enabled:
            self.bar = tqdm(total=total, desc=self.desc, unit="epoch", position=self.position, leave=self.leave)

    def __call__(self, epoch: int, logs: dict) -> None:
        if self.bar is None:
            self.start(None)
        if self.bar is not None:
            self.bar.update(1)
            if "val_loss" in logs:
                self.bar.set_postfix_str(f"val_loss {logs['val_loss']:.4g}")

    def end(self) -> None:
        """Close the bar; one stopped before its total says early stopping ended it (never left at 16/53)."""
        if self.bar is None:
            return
        if self.bar.total and self.bar.n < self.bar.total:
            self.bar.set_description(f"{self.desc} (early stopping: {self.bar.n} of {self.bar.total})")
            self.bar.total = self.bar.n
            self.bar.refresh()
        self.bar.close()
        self.bar = None


class CountBar:
    """A bar of finished items (a backtest's fits, a search's trials), with what is running beside it."""

    def __init__(self, total: int | None, desc: str, unit: str, enabled: bool = True) -> None:
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not enabled)  # disabled: every call does nothing

    def advance(self, note: str | None = None) -> None:
        self.bar.update(1)
        if note:
            self.bar.set_postfix_str(note)

    def close(self) -> None:
        self.bar.close()
