"""Shared fixtures. Tests may read ../shared (reference data); package code never does."""

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        raise RuntimeError(f"reference data folder {SHARED} is missing (expected beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def atlas():
    import osnmf

    return osnmf.Atlas.default()


NO_BROWSER = "no Chromium: run .ci/install-browser"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium binary for the report checks.

    Without one the browser tests skip with one reason (a fresh machine runs the README's test
    line green); ``OSNMF_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes a missing browser a failure,
    so CI can never skip them.
    """
    from browser_check import BrowserError, chromium_path

    try:
        return chromium_path()
    except BrowserError as exc:
        if os.environ.get("OSNMF_REQUIRE_BROWSER") == "1":
            pytest.fail(f"OSNMF_REQUIRE_BROWSER=1 but {exc}", pytrace=False)
        pytest.skip(NO_BROWSER)
