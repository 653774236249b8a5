"""The dependency lists (pyproject ranges, requirements.txt's pins, python_env.yaml and conda.yaml)
agree, and the installed versions are the pins."""

import tomllib
from importlib.metadata import version

import yaml
from packaging.requirements import Requirement

from tests.conftest import ROOT


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _by_name(requirements):
    return {(Requirement(r).name, str(Requirement(r).marker)): Requirement(r) for r in requirements}


def _pins() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_requirements_pin_every_dependency_inside_its_range_and_the_environments_install_them():
    ranges = _by_name(_pyproject()["project"]["dependencies"])
    pins = _by_name(_pins())
    extras = {(f"{name}-{extra}", marker): ranges[name, marker]  # a constraint has no extras: psycopg-binary
              for name, marker in ranges for extra in ranges[name, marker].extras}
    assert pins.keys() == ranges.keys() | extras.keys()
    for key, pin in pins.items():
        (spec,) = pin.specifier
        assert spec.operator == "==" and not pin.extras, f"{key[0]} is not pinned as a constraint can be"
        within = (ranges | extras)[key].specifier
        assert within.contains(spec.version), f"{key[0]}=={spec.version} is outside {within}"
    python_env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    assert python_env["dependencies"] == ["-r requirements.txt"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    assert next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict)) == _pins()
    assert f"python={python_env['python']}" in conda["dependencies"]


def test_the_installed_versions_are_the_pins():
    """What `mlflow run --env-manager uv` installs is what the tests ran: a store made by a newer
    MLflow than the environment's cannot be opened by it (CI failed so when MLflow 3.18 came out)."""
    wrong = {pin.name: version(pin.name) for pin in map(Requirement, _pins())
             if not pin.specifier.contains(version(pin.name))}
    assert not wrong, f"installed {wrong}, not requirements.txt's pins: install with `-c requirements.txt`"


def test_console_script_and_ignored_paths():
    assert _pyproject()["project"]["scripts"]["cryptolstm"] == "cryptolstm.__main__:main"
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"/mlflow.db", "/mlruns/", "/data/"} <= set(ignored)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if "uv pip install -e '.[test]'" in line]
    assert lines and lines[0].startswith("python3 -m venv .venv") and lines[0].endswith("pytest -p no:cacheprovider -n 2 --durations=25")
    assert "grep -m1 -F \"uv pip install -e '.[test]'\" README.md" in (ROOT / ".ci" / "run").read_text()
    first_block = readme.split("```bash\n")[1]
    assert first_block.startswith("python3 -m venv .venv") and "mlflow run . -P coin=BTC" in first_block


def test_the_gpu_extra_adds_cuda_to_the_same_tensorflow():
    project = _pyproject()["project"]
    base = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "tensorflow")
    (gpu,) = (Requirement(r) for r in project["optional-dependencies"]["gpu"])
    assert gpu.name == "tensorflow" and gpu.extras == {"and-cuda"} and gpu.specifier == base.specifier
    assert base.marker is None  # one TensorFlow distribution everywhere: no tensorflow-cpu beside it
    assert not any(Requirement(r).name == "tensorflow-cpu" for r in project["dependencies"])
