"""A headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium,
one per test module. Without them the browser tests skip with the reason, unless
``IMAGEJOBS_REQUIRE_BROWSER=1`` (set by CI), which turns the skip into a failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("IMAGEJOBS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("IMAGEJOBS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
REQUIRE_BROWSER = os.environ.get("IMAGEJOBS_REQUIRE_BROWSER") == "1"
ROOT = Path(__file__).resolve().parents[2]
LAPTOP = (1280, 860)


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.access(path, os.X_OK) or shutil.which(path)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for all the tests of a module (starting one costs ~1 s)."""
    reason = _missing()
    if reason:
        if REQUIRE_BROWSER:
            pytest.fail(reason + " and IMAGEJOBS_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--lang=en-US",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``docs/console`` with IMAGEJOBS_SCREENSHOTS=1 (to refresh the README's pictures),
    else a temporary folder."""
    if os.environ.get("IMAGEJOBS_SCREENSHOTS") == "1":
        path = ROOT / "docs" / "console"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")
