"""The MLflow boundary: everything the harness writes to (or reads from) MLflow happens here,
in `cryptolstm.registry` and in the pyfunc (`cryptolstm.forecaster`); an import contract in
the tests keeps it so. Workflows (train, search, backtest) are pure cores with hooks, and
these modules attach to them.

- `runs`: the store, a run's scope and name, params, the data, figures, the model;
- `train`: a training run; `search`: a study's parent run and its trials' child runs;
- `backtest`: a backtest's parent run and its folds' child runs;
- `source`: a configuration read back from a run or a registered model;
- `report`: the Markdown summary of an experiment.
"""

from cryptolstm.tracking.runs import use_tracking_uri
from cryptolstm.tracking.train import tracked_train

__all__ = ["tracked_train", "use_tracking_uri"]
