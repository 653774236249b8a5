"""The shape of the code: the MLflow boundary, one option per field everywhere, short functions."""

import ast
import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from cryptolstm import options
from cryptolstm.cli import app
from cryptolstm.config import FIELD_NAMES

ROOT = Path(__file__).resolve().parents[1]
# entry point -> (its options dataclass, whether it also takes every RunConfig field)
ENTRY_POINTS = {"main": ("train", options.TrainOptions, True), "search": ("search", options.SearchOptions, False),
                "register": ("register", options.RegisterOptions, False),
                "predict": ("predict", options.PredictOptions, False),
                "backtest": ("backtest", options.BacktestOptions, False),
                "report": ("report", options.ReportOptions, False), "fetch": ("fetch", options.FetchOptions, False)}
CLI_ONLY = {"experiment_name", "follower"}  # mlflow run chooses the experiment itself; follower is internal


def test_the_import_contract_keeps_mlflow_behind_the_tracking_layer():
    """import-linter's contracts (pyproject.toml): only tracking, registry and the pyfunc import mlflow."""
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is part of the test extra"
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


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
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in ("seed", "honest")
                                                    for c in [node.left, *node.comparators]):
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
    package = ROOT / "cryptolstm"
    found = {str(p.relative_to(package)) for p in package.rglob("*.py") if _imports_mlflow(p)}
    assert found and all(p.startswith("tracking/") or p in ("registry.py", "forecaster.py") for p in found), found


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_mlproject_parameters_cli_options_and_fields_agree(entry):
    command_name, cls, run_config = ENTRY_POINTS[entry]
    spec = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry]
    fields = {f.name for f in dataclasses.fields(cls)} | (set(FIELD_NAMES) if run_config else set())
    parameters = set(spec["parameters"])
    assert not parameters - fields and fields - parameters <= CLI_ONLY, parameters ^ fields
    for name in parameters:  # each parameter reaches the option of its own name
        assert f"--{name.replace('_', '-')} {{{name}}}" in spec["command"], name
    for name in parameters & fields - set(FIELD_NAMES):  # one default, the field's (or "": not given)
        default = spec["parameters"][name].get("default", "")
        field_default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
        assert default in ("", str(field_default)), (name, default, field_default)
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
