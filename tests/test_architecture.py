"""The shape of the code: the floors and the MLflow boundary, no import circle, heads and features
named only where they are declared, one option per field everywhere, short functions."""

import ast
import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from cryptolstm import features, heads, options
from cryptolstm.cli import app
from cryptolstm.config import FIELD_NAMES

ROOT = Path(__file__).resolve().parents[1]
# entry point -> (its options dataclass, whether it also takes every RunConfig field)
ENTRY_POINTS = {"main": ("train", options.TrainOptions, True), "search": ("search", options.SearchOptions, False),
                "register": ("register", options.RegisterOptions, False),
                "predict": ("predict", options.PredictOptions, False),
                "backtest": ("backtest", options.BacktestOptions, False),
                "report": ("report", options.ReportOptions, False), "fetch": ("fetch", options.FetchOptions, False),
                "evaluate": ("evaluate", options.EvaluateOptions, False), "refit": ("refit", options.RefitOptions, False)}
CLI_ONLY = {"experiment_name", "follower"}  # mlflow run chooses the experiment itself; follower is internal


PACKAGE = ROOT / "cryptolstm"


def _modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.slow  # import-linter runs as its command: in-process, its progress display outlives pytest's capture
def test_the_import_contracts_keep_the_floors_and_mlflow_behind_the_tracking_layer():
    """import-linter's contracts (pyproject.toml): cli -> workflows -> tracking -> cores, never upwards,
    and the cores on floors in the order they build on (heads under windowing under forecasting under
    train...); only the tracking layer and the pyfunc import mlflow, and no core reaches it indirectly."""
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is part of the test extra"
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The cryptolstm modules a module imports (anywhere in it, TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cryptolstm"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cryptolstm")}
    return found


def test_the_package_has_no_import_circle():
    """No two modules import each other, directly or around a loop (a type-only import counts too)."""
    modules = {("cryptolstm." + path.removesuffix(".py").replace("/", ".")).removesuffix(".__init__"): tree
               for path, tree in _modules().items()}
    graph = {name: {d for d in _imports(name, tree) if d in modules and d != name} for name, tree in modules.items()}
    circles = []
    for start in graph:  # a depth-first search for a path back to ``start``
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.append(" -> ".join(path + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    assert not circles, circles[:5]


def _strings(tree: ast.Module) -> list[ast.Constant]:
    """The string constants of a module that are not docstrings (names said in code, not prose)."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_module_but_the_heads_module_names_a_head():
    """A head is asked (`cryptolstm.heads`), never compared by name: no other module spells one."""
    named = [f"{path}:{n.lineno} {n.value!r}" for path, tree in _modules().items() if path != "heads.py"
             for n in _strings(tree) if n.value in heads.NAMES]
    assert not named, named


FORECASTER_MODULES = {"models/baselines.py", "models/interval_baselines.py", "models/har.py", "models/network.py"}


def _forecaster_labels() -> set[str]:
    """Every declared forecaster's label but persistence's (also a word of metric and column names:
    ``persistence_mae``), and the network's (``lstm``, ``lstm.mean``...; a GRU's too)."""
    from cryptolstm.models.network import MEAN, STD, NetworkForecaster
    from cryptolstm.models.baselines import POINT
    from cryptolstm.models.interval_baselines import INTERVAL

    return {b.name for b in (*POINT, *INTERVAL)} | {NetworkForecaster.name, MEAN, STD}


def test_no_module_but_its_declaring_one_names_a_forecaster():
    """A forecaster's label (``drift``, ``garch``, ``lstm.mean``, ``lstm.seed202``) is spelled where it is
    declared only; everything else iterates the declarations (``garch`` also names a feature set, in
    the features module)."""
    from cryptolstm import cells

    labels = _forecaster_labels() - set(features.SETS) - set(cells.NAMES)  # the cells' test covers ``lstm``
    named = [f"{path}:{n.lineno} {n.value!r}" for path, tree in _modules().items() if path not in FORECASTER_MODULES
             for n in _strings(tree) if n.value in labels or n.value.startswith(("lstm.mean", "lstm.std", "lstm.seed"))]
    assert not named, named


def _spelled(names: set[str], allowed: set[str]) -> list[str]:
    return [f"{path}:{n.lineno} {n.value!r}" for path, tree in _modules().items() if path not in allowed
            for n in _strings(tree) if n.value in names]


def test_cells_retrain_modes_and_units_are_spelled_where_they_are_declared():
    """A cell (`cryptolstm.cells`), a retrain mode (`cryptolstm.options`) and the units
    (`cryptolstm.forecast`) are asked for by their declarations; ``lstm`` is the network's label too."""
    from cryptolstm.forecast import UNITS
    from cryptolstm import cells

    assert not _spelled(set(cells.NAMES), {"cells.py", "models/network.py"})
    assert not _spelled(set(options.RETRAIN), {"options.py"})
    assert not _spelled(set(UNITS) - {"return"}, {"forecast.py"})
    compared = [f"{path}:{node.lineno}" for path, tree in _modules().items() if path != "forecast.py"
                for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and any(isinstance(c, ast.Constant) and c.value in UNITS for c in [node.left, *node.comparators])]
    assert not compared, compared


RAW_COLUMN = re.compile(r"^([A-Z]{3})?_(" + "|".join(features.FIELDS) + r")$")


def test_no_module_but_the_features_module_names_a_raw_column():
    """``BTC_close`` and its kin are built by `cryptolstm.features.column` only."""
    named = [f"{path}:{n.lineno} {n.value!r}" for path, tree in _modules().items() if path != "features.py"
             for n in _strings(tree) if RAW_COLUMN.match(n.value)]
    assert not named, named


def _calls_environ(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv") and
               isinstance(n.value, ast.Name) and n.value.id == "os" for n in ast.walk(tree))


def test_only_the_command_line_reads_the_environment():
    readers = {p.name for p in (ROOT / "cryptolstm").rglob("*.py") if _calls_environ(p)}
    assert readers == {"cli.py"}, readers


def test_nothing_branches_on_a_protocols_name():
    """What differs between protocols is declared in protocols.py, not asked for elsewhere."""
    found = []
    for path in (ROOT / "cryptolstm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            compared = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
            compared += [e for c in compared if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts]
            if any(isinstance(c, ast.Constant) and c.value in ("seed", "honest") for c in compared):
                found.append(f"{path.name}:{node.lineno}")
    assert not found, found


def _imports_mlflow(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if any(n.split(".")[0] == "mlflow" for n in names):
            return True
    return False


def test_the_modules_that_import_mlflow_are_exactly_the_boundary():
    found = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if _imports_mlflow(p)}
    assert "pyfunc.py" in found and all(p.startswith("tracking/") or p == "pyfunc.py" for p in found), found


def test_every_mlproject_entry_point_is_checked_against_its_command():
    assert set(yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]) == set(ENTRY_POINTS)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_mlproject_parameters_cli_options_and_fields_agree(entry):
    command_name, cls, run_config = ENTRY_POINTS[entry]
    spec = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry]
    fields = {f.name for f in dataclasses.fields(cls)} | (set(FIELD_NAMES) if run_config else set())
    # Declared: the options with a default of their own (MLflow logs each on the run), with that
    # default; every other one is passed only when given (`-P x_y=v` -> `--x_y v`, read as --x-y).
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    parameters = set(spec.get("parameters") or {})
    assert parameters == {name for name, default in defaults.items() if default is not None} - CLI_ONLY
    for name in parameters:  # each reaches the option of its own name, with the option's default
        assert f"--{name.replace('_', '-')} {{{name}}}" in spec["command"], name
        assert spec["parameters"][name]["default"] == str(defaults[name]), name
    command = get_command(app).commands[command_name]
    cli_options = {p.name for p in command.params} - {"quiet", "help"}
    assert cli_options == fields


def test_no_function_in_the_package_is_over_about_50_lines():
    long = []
    for path in (ROOT / "cryptolstm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 55:
                long.append(f"{path.name}:{node.name}")
    assert not long, long


INNER = '''
import subprocess

import numpy as np
import pytest


def test_starts_a_process_unmarked():
    subprocess.run(["true"], check=True)


def test_trains_unmarked():
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    model.fit(np.zeros((4, 1)), np.zeros((4, 1)), epochs=1, verbose=0)


@pytest.mark.slow
def test_starts_a_process_marked():
    subprocess.run(["true"], check=True)


def test_neither():
    assert sum(range(4)) == 6
'''


@pytest.mark.slow  # it starts a process (inside the inner run), so the check below applies to it too
def test_a_test_that_starts_a_process_or_trains_a_network_fails_unless_marked_slow(pytester):
    """What `slow` means is checked, not trusted: the quick subset stays free of processes and training."""
    pytester.makeconftest("from tests.conftest import pytest_runtest_call, pytest_runtest_setup\n")
    pytester.makeini("[pytest]\nmarkers =\n    slow: trains or starts a process\n")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*test_starts_a_process_unmarked started a process (subprocess.Popen true) but is "
                                 "not marked slow*", "*test_trains_unmarked trained a network (keras.Model.fit) but "
                                 "is not marked slow*"], consecutive=False)
