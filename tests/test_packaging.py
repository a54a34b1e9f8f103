"""The two ways to install (pip via pyproject.toml, conda via environment.yml) must agree."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from course_lib.paths import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages() -> set[str]:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    reqs = list(data["project"]["dependencies"])
    for extra in data["project"]["optional-dependencies"].values():
        reqs += extra
    return {_name(r) for r in reqs}


def environment_packages() -> set[str]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r) for r in pip_list if not r.startswith("-e")}


def test_environment_yml_matches_pyproject():
    assert environment_packages() == pyproject_packages()


def test_environment_yml_installs_the_course_package_and_python():
    text = (REPO_ROOT / "environment.yml").read_text(encoding="utf-8")
    assert "- -e ." in text and "python=3.11" in text


def test_makefile_pins_torch_and_exposes_the_two_commands():
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^TORCH_SPEC\s*\?=\s*torch==\d", makefile, re.M), "torch must be pinned (CPU wheel)"
    for target in ("setup:", "course:", "test:", "lab:", "clean:"):
        assert re.search(rf"^{target}", makefile, re.M), target


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("profile, expected", [("smoke", "outputs/smoke"), ("cpu", "outputs")])
def test_a_smoke_course_run_never_writes_over_the_reference_outputs(profile, expected):
    # make -n prints the recipe without running anything
    dry = subprocess.run(["make", "-n", "-C", str(REPO_ROOT), "course", f"PROFILE={profile}"],
                         capture_output=True, text=True, check=True).stdout
    output_dir = re.search(r"-p output_dir (\S+) ", dry)
    assert output_dir, dry
    assert Path(output_dir.group(1)).resolve() == (REPO_ROOT / expected).resolve()
    assert f"{output_dir.group(1)}/executed/" in dry


def test_ci_runs_make_test():
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_notebooks_are_committed_clean_with_a_parameters_cell():
    import json

    notebooks = sorted(Path(REPO_ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name
        assert "parameters" in code[0].get("metadata", {}).get("tags", []), path.name
        assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name} should open with prose"
