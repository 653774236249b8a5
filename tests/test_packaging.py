"""The dependency lists (pyproject ranges, python_env.yaml and conda.yaml pins) agree."""

import tomllib

import yaml
from packaging.requirements import Requirement

from tests.conftest import ROOT


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _by_name(requirements):
    return {(Requirement(r).name, str(Requirement(r).marker)): Requirement(r) for r in requirements}


def test_python_env_pins_fall_inside_pyproject_ranges_and_conda_matches():
    ranges = _by_name(_pyproject()["project"]["dependencies"])
    python_env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    pins = _by_name(python_env["dependencies"])
    assert pins.keys() == ranges.keys()
    for key, pin in pins.items():
        (spec,) = pin.specifier
        assert spec.operator == "==", f"{key[0]} is not pinned"
        assert ranges[key].specifier.contains(spec.version), f"{key[0]}=={spec.version} is outside {ranges[key]}"
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    assert next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict)) == python_env["dependencies"]
    assert f"python={python_env['python']}" in conda["dependencies"]


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
