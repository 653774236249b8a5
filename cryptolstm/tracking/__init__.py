"""The MLflow boundary: everything the harness writes to (or reads from) MLflow happens here,
in `cryptolstm.registry` and in the pyfunc (`cryptolstm.pyfunc`); an import contract in
the tests keeps it so. Workflows (train, search, backtest) are pure cores with hooks, and
these modules attach to them.

- `store`, `store_checks`: the tracking store opened once per command, checked in seconds;
- `runs`: a run's scope and name, params, the data, figures, the model;
- `train`: a training run; `search`: a study's parent run and its trials' child runs;
- `backtest`: a backtest's parent run and its folds' child runs;
- `source`: a configuration read back from a run or a registered model;
- `report`: the Markdown summary of an experiment, `results_page` its HTML page; `describe`: the
  descriptions the UI shows;
- `registry` (`models`, `versions`): model URIs resolved and loaded, runs registered, the champion
  alias moved; the store that `cryptolstm evaluate` and `cryptolstm refit` talk to;
- `evaluate`: an evaluation of a registered model recorded as a run (`cryptolstm evaluate`; its
  metrics keep the names users have, ``live/*``);
- `commands`: the run of a command that trains nothing (register, predict, report).
"""

from cryptolstm.tracking.runs import use_tracking_uri

__all__ = ["tracked_train", "use_tracking_uri"]


def __getattr__(name: str):
    """``tracked_train`` on first use: it imports Keras, which `evaluate` and `report` do without."""
    if name == "tracked_train":
        from cryptolstm.tracking.train import tracked_train

        return tracked_train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
