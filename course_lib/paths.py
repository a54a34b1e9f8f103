"""Where things live: the repository, the bundled data, the outputs folder, the download cache.

Every location can be moved with an environment variable so that tests and nbval runs write
into a temporary folder and never into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

# course_lib/ sits directly under the repository root.
REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
CORPUS_DIR = DATA_DIR / "corpus"
TASKS_DIR = DATA_DIR / "tasks"


def output_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder for milestone files, results.json, figures and checkpoints.

    Priority: the COURSE_OUTPUT_DIR environment variable, then `override` (the notebook
    parameter), then `<repo>/outputs`. The environment wins so that nbval, which cannot
    inject parameters, can still redirect every write into a temporary folder.
    """
    chosen = os.environ.get("COURSE_OUTPUT_DIR") or override or (REPO_ROOT / "outputs")
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Git-ignored folder for downloads (COURSE_CACHE_DIR overrides it)."""
    chosen = os.environ.get("COURSE_CACHE_DIR") or (DATA_DIR / ".cache")
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
