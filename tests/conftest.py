"""Shared fixtures. Every test runs with outputs and caches redirected into a temporary folder,
so nothing a test does can write into the repository."""

import os

# Tests never touch the network: the Hugging Face libraries read these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.tokenizers import CharTokenizer  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("COURSE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    # Only what a test trains itself: the shipped reference models would show up in every listing.
    monkeypatch.setenv("COURSE_REFERENCE_MODELS", "none")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    torch.manual_seed(0)
    # The tests' models are tiny: one thread is faster than two fighting over a 2-core CI machine
    # (token-by-token generation measured 13x slower with 2 threads on a busy machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_text():
    # Long enough for the corpus minimum; varied enough to have a real vocabulary.
    line = "WREN: Why does the tide come twice a day, Odo?\nODO: Moon pulls. Twice.\n"
    return "".join(f"{i}. {line}" for i in range(40))


@pytest.fixture
def tokenizer(small_text):
    return CharTokenizer.from_text(small_text)
