"""Headless Chromium for the two browser tests (the web app's and JupyterLab's).

Needs Debian's `chromium` and `chromium-driver` and the PyPI package `selenium`. Without them a
test is skipped, except with CI=true, where it fails: CI must install them so the tests run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IN_CI = os.environ.get("CI") == "true"


def require(ok: bool, reason: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"{reason} -- CI=true, and CI must install it so that this test runs.")
        pytest.skip(reason)


def start_chromium(root: Path, window_size: str, *extra_flags: str):
    """A headless Chromium driven by selenium, writing only under `root` (a temporary folder)."""
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    require(webdriver is not None, "selenium is not installed (pip install selenium)")
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    require(CHROMEDRIVER.exists(), f"{CHROMEDRIVER} is missing (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={root / 'profile'}",
                 f"--window-size={window_size}", *extra_flags):
        options.add_argument(flag)
    # Chromium also writes outside its profile (crash-report settings, dconf): point HOME and the
    # XDG folders into `root` too. An explicit driver path: selenium never runs Selenium Manager.
    home = root / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache"), "XDG_RUNTIME_DIR": str(home / "run")}
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER), env=env)
    return webdriver.Chrome(options=options, service=service)
