"""The three dependency lists (pyproject, python_env.yaml, conda.yaml) stay the same."""

import tomllib

import yaml

from tests.conftest import ROOT


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_python_env_and_conda_match_pyproject():
    deps = _pyproject()["project"]["dependencies"]
    python_env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    assert python_env["dependencies"] == deps
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_deps = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert pip_deps == deps
    assert f"python={python_env['python']}" in conda["dependencies"]


def test_console_script_and_ignored_paths():
    assert _pyproject()["project"]["scripts"]["cryptolstm"] == "cryptolstm.cli:app"
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"mlflow.db", "mlruns/", "data/"} <= set(ignored)
