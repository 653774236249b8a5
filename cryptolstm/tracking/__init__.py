"""The MLflow boundary: only these modules and the pyfunc (`cryptolstm.pyfunc`) touch MLflow (an import
contract keeps it so); they attach to the pure cores (train, search, backtest) through their hooks."""

from cryptolstm.tracking.store import use_tracking_uri

__all__ = ["tracked_train", "use_tracking_uri"]


def __getattr__(name: str):
    """``tracked_train`` on first use: it imports Keras, which `evaluate` and `report` do without."""
    if name == "tracked_train":
        from cryptolstm.tracking.train import tracked_train

        return tracked_train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
