"""The two ways to install (pip via pyproject.toml, conda via environment.yml) must agree, and
the Makefile's commands do what the README says."""

import os
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
    for target in ("setup:", "course:", "test:", "lab:", "app:", "gpu-check:", "clean:"):
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


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args, cwd=REPO_ROOT, env=None) -> str:
    """`make` with the course's Makefile; -n prints recipes without running them."""
    return subprocess.run(["make", "-s", "-f", str(REPO_ROOT / "Makefile"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True).stdout


@needs_make
@pytest.mark.parametrize("uid, root", [("0", True), ("1000", False)])
def test_make_lab_allows_root_only_for_root(tmp_path, uid, root):
    # Jupyter refuses root unless told (--allow-root); a fake `id` plays the user.
    fake_id = tmp_path / "id"
    fake_id.write_text(f"#!/bin/sh\necho {uid}\n")
    fake_id.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    lab = [line for line in _make("-n", "lab", env=env).splitlines() if " lab " in line]
    assert len(lab) == 1 and lab[0].startswith(str(REPO_ROOT / ".venv" / "bin" / "jupyter")), lab
    assert ("--allow-root" in lab[0]) == root, lab[0]


@needs_make
def test_no_recipe_forces_a_matplotlib_backend_on_the_kernels_it_starts():
    # A non-interactive backend (MPLBACKEND=Agg) hides every figure in JupyterLab, papermill and nbval.
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = _make("--eval", 'probe-backend: ; @echo "MPLBACKEND=[$$MPLBACKEND]"', "probe-backend", env=env)
    assert out.strip() == "MPLBACKEND=[]"


@needs_make
def test_make_course_runs_the_numbered_notebooks_in_order_and_not_the_solutions(tmp_path):
    names = ["10_gpt2.ipynb", "09b_lstm_regularisation.ipynb", "01_data_prep.ipynb", "09_lstm.ipynb",
             "scratch.ipynb", "solutions/02_bigram.ipynb"]
    for name in names:
        (tmp_path / "notebooks" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "notebooks" / name).write_text("{}")
    out = _make("--eval", "probe-notebooks: ; @echo $(NOTEBOOKS)", "probe-notebooks", cwd=tmp_path)
    assert out.split() == ["notebooks/01_data_prep.ipynb", "notebooks/09_lstm.ipynb",
                           "notebooks/09b_lstm_regularisation.ipynb", "notebooks/10_gpt2.ipynb"]


@needs_make
def test_make_gpu_check_runs_the_checker_in_the_venv():
    assert f"{REPO_ROOT / '.venv' / 'bin' / 'python'} -m course_lib.gpu_check" in _make("-n", "gpu-check")


def test_ci_runs_make_test():
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_notebooks_are_committed_clean_with_a_parameters_cell():
    import json

    notebooks = sorted(Path(REPO_ROOT / "notebooks").glob("*.ipynb"))
    notebooks += sorted(Path(REPO_ROOT / "notebooks" / "solutions").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name
        assert "parameters" in code[0].get("metadata", {}).get("tags", []), path.name
        assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name} should open with prose"


def test_every_course_notebook_has_the_anatomy_students_rely_on():
    """DESIGN.md's anatomy: run times and prerequisites up front, at most about 35 cells,
    exercises with at least one grader, a link to the next notebook, and a solutions notebook."""
    import json
    import re

    notebooks = sorted(Path(REPO_ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))
    assert len(notebooks) >= 12
    for path in notebooks:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = ["".join(c["source"]) for c in cells]
        assert len(cells) <= 35, f"{path.name} has {len(cells)} cells"
        assert "**Prerequisites:**" in text[0] or path.name.startswith("01"), path.name
        assert re.search(r"\*\*Run time:\*\* smoke ~\d+ s", text[0]), f"{path.name}: no measured run time"
        assert "**Next:**" in text[-1], f"{path.name} does not end with a link to the next notebook"
        assert any("Exercise" in t for t in text), f"{path.name} has no exercises"
        assert any(re.search(r"^grade_\w+\(", t, re.M) for t in text), f"{path.name}: no graded exercise"
        assert (path.parent / "solutions" / f"{path.stem}_solutions.ipynb").exists(), f"{path.name}: no solutions"
