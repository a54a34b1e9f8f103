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


class FolderError(OSError):
    """A folder setting (output_dir, COURSE_OUTPUT_DIR, COURSE_CACHE_DIR) names a place we cannot
    write to. The message names the setting, the problem and the fix."""


def _writable_folder(chosen, setting: str, fix: str) -> Path:
    """Create `chosen` if needed and check we can write into it; explain any problem in terms of
    the setting that chose it (a bare 'FileExistsError: [Errno 17]' names neither)."""
    if not isinstance(chosen, (str, os.PathLike)):
        raise FolderError(f"{setting} must be a folder path (a string), got {chosen!r}. Fix: {fix}")
    problem = None
    try:
        path = Path(chosen).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        problem = "is a file, not a folder"
    except NotADirectoryError:
        problem = "cannot be created: part of the path is a file, not a folder"
    except PermissionError:
        problem = "cannot be created: permission denied"
    except (OSError, ValueError, RuntimeError) as err:  # read-only disk, bad name, a link loop, ...
        problem = f"cannot be created ({getattr(err, 'strerror', None) or err})"
    else:
        if not os.access(path, os.W_OK | os.X_OK):
            problem = "is not writable (no write permission, or a read-only disk)"
    if problem:
        raise FolderError(f"{setting} = {str(chosen)!r} {problem}. Fix: {fix}")
    return path


def output_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder for milestone files, results.json, figures and checkpoints.

    Priority: the COURSE_OUTPUT_DIR environment variable, then `override` (the notebook
    parameter), then `<repo>/outputs`. The environment wins so that nbval, which cannot
    inject parameters, can still redirect every write into a temporary folder.
    Raises FolderError, naming the setting and the fix, when the folder is not usable.
    """
    if os.environ.get("COURSE_OUTPUT_DIR"):
        return _writable_folder(os.environ["COURSE_OUTPUT_DIR"], "COURSE_OUTPUT_DIR (environment variable)",
                                "set COURSE_OUTPUT_DIR to a folder you can write to, or unset it "
                                "(it wins over the notebook's output_dir parameter).")
    if override:
        return _writable_folder(override, "output_dir",
                                "set output_dir (the notebook's parameters cell; papermill: -p output_dir "
                                "PATH) to a folder you can write to, or to None for <repo>/outputs.")
    return _writable_folder(REPO_ROOT / "outputs", "The default output folder",
                            "make the repository's outputs/ folder writable, or set COURSE_OUTPUT_DIR "
                            "(or the notebook's output_dir parameter) to a folder you can write to.")


def cache_dir() -> Path:
    """Git-ignored folder for downloads (COURSE_CACHE_DIR overrides it)."""
    if os.environ.get("COURSE_CACHE_DIR"):
        return _writable_folder(os.environ["COURSE_CACHE_DIR"], "COURSE_CACHE_DIR (environment variable)",
                                "set COURSE_CACHE_DIR to a folder you can write to, or unset it.")
    return _writable_folder(DATA_DIR / ".cache", "The download cache folder",
                            "make the repository's data/ folder writable, or set COURSE_CACHE_DIR "
                            "to a folder you can write to.")
